"""Who may call: API keys, a trusted proxy's headers, anonymous only when enabled (401/403); the rate
limit (429) and the request limits (413/422); `enclave keys create`."""

from __future__ import annotations

import json

import pytest
import yaml
from fastapi.testclient import TestClient
from server_auth import KEYS, bearer, server_settings
from typer.testing import CliRunner

from enclave.cli import app as cli
from enclave.server.app import create_app
from enclave.server.authentication import Authenticator, AuthError, api_key_hash
from enclave.server.rate_limit import RateLimiter
from enclave.settings import ApiKeySettings, AuthSettings, LimitSettings

CANARY = "CANARY-BOARD-7731"
ASK = {"question": "What do the board minutes say about the paid leave accrual?", "top_k": 10}


@pytest.fixture()
def make_client(halvard_settings, halvard_pipeline):
    """A client of the app over the halvard index with the given auth settings (and limits)."""
    clients = []

    def make(limits: LimitSettings | None = None, client_host: str = "testclient", **auth) -> TestClient:
        settings = server_settings(halvard_settings, limits=limits, **{"anonymous": False, **auth})
        client = TestClient(create_app(settings, pipeline=halvard_pipeline), client=(client_host, 50000))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_without_credentials_every_v1_route_is_401_unless_anonymous_is_enabled(make_client):
    client = make_client()
    for method, path, body in (("GET", "/v1/models", None), ("POST", "/v1/ask", ASK),
                               ("POST", "/v1/retrieve", {"query": "leave"}),
                               ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "leave"}]})):
        response = client.request(method, path, json=body)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer" and "API key" in response.json()["detail"]
    assert client.get("/healthz").status_code == 200  # probes and the page need no key
    assert client.get("/").status_code == 200
    anonymous = make_client(anonymous=True).post("/v1/ask", json=ASK)
    assert anonymous.status_code == 200 and CANARY not in anonymous.text


def test_a_key_names_the_principal_and_its_groups(make_client, halvard_settings):
    client = make_client()
    as_ola = client.post("/v1/ask", json=ASK, headers=bearer("ola"))
    as_bente = client.post("/v1/ask", json=ASK, headers={"X-API-Key": KEYS["bente"][0]})
    assert as_ola.status_code == as_bente.status_code == 200
    assert CANARY not in as_ola.text  # ola: everyone
    assert any(CANARY in c["text"] for c in as_bente.json()["citations"])  # bente: everyone, board
    # the principal the key names is who asked, in the usage log
    records = [json.loads(line) for line in (halvard_settings.data_dir / "usage.jsonl").read_text().splitlines()]
    assert [r["principal"] for r in records[-2:]] == ["ola", "bente"]


@pytest.mark.parametrize("headers, detail", [
    ({"Authorization": "Bearer enc-not-a-key"}, "invalid API key"),
    ({"X-API-Key": "enc-not-a-key"}, "invalid API key"),
    ({"Authorization": "Basic b2xhOnNlY3JldA=="}, "must be 'Bearer <API key>'"),
    ({"Authorization": "Bearer "}, "must be 'Bearer <API key>'"),
    ({"Authorization": f"Bearer {KEYS['ola'][0]}x"}, "invalid API key"),
])
def test_a_bad_key_is_401_even_with_anonymous_access_on(make_client, headers, detail):
    response = make_client(anonymous=True).post("/v1/ask", json=ASK, headers=headers)
    assert response.status_code == 401 and detail in response.json()["detail"]


def test_proxy_headers_count_only_when_enabled_and_from_a_trusted_proxy(make_client):
    board = {"X-Forwarded-User": "kari", "X-Forwarded-Groups": "everyone, board"}
    trusted = make_client(trusted_headers=True, trusted_proxies=["10.0.0.2"], client_host="10.0.0.2")
    response = trusted.post("/v1/ask", json=ASK, headers=board)
    assert response.status_code == 200 and any(CANARY in c["text"] for c in response.json()["citations"])
    # no groups: no access
    no_groups = trusted.post("/v1/ask", json=ASK, headers={"X-Forwarded-User": "kari"})
    assert no_groups.status_code == 403 and "no group" in no_groups.json()["detail"]
    # the same headers from elsewhere: refused, not believed
    untrusted = make_client(trusted_headers=True, trusted_proxies=["10.0.0.2"], client_host="10.0.0.66")
    refused = untrusted.post("/v1/ask", json=ASK, headers=board)
    assert refused.status_code == 403 and "not a trusted proxy" in refused.json()["detail"]
    # headers off: ignored, so the caller is anonymous (401 here; with anonymous on, only everyone's documents)
    assert make_client(client_host="10.0.0.2").post("/v1/ask", json=ASK, headers=board).status_code == 401
    anonymous = make_client(anonymous=True, client_host="10.0.0.2").post("/v1/ask", json=ASK, headers=board)
    assert anonymous.status_code == 200 and CANARY not in anonymous.text


def test_a_principal_without_groups_is_403():
    authenticator = Authenticator(AuthSettings(api_keys=[ApiKeySettings(principal="x", groups=[], sha256=api_key_hash("k"))]))
    with pytest.raises(AuthError) as refused:
        authenticator.authenticate({"authorization": "Bearer k"}, "127.0.0.1")
    assert refused.value.status == 403


def test_the_rate_limit_is_per_key_with_retry_after(make_client):
    client = make_client(limits=LimitSettings(requests_per_minute=1, burst=2))
    body = {"query": "paid leave"}
    assert [client.post("/v1/retrieve", json=body, headers=bearer("ola")).status_code for _ in range(2)] == [200, 200]
    limited = client.post("/v1/retrieve", json=body, headers=bearer("ola"))
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
    assert "rate limit" in limited.json()["detail"]
    assert client.post("/v1/retrieve", json=body, headers=bearer("bente")).status_code == 200  # another key


def test_rate_limiter_refills_at_the_configured_rate():
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert [limiter.acquire("a"), limiter.acquire("a")] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(1.0)  # one a second
    now[0] = 0.5
    assert limiter.acquire("a") == pytest.approx(0.5)
    now[0] = 1.0
    assert limiter.acquire("a") == 0.0 and limiter.acquire("b") == 0.0


def test_request_limits_are_413_and_422_with_the_limit_named(make_client):
    limits = LimitSettings(max_body_bytes=4096, max_messages=3, max_question_chars=200, max_tokens=100,
                           requests_per_minute=None)
    client = make_client(limits=limits, anonymous=True)
    big = client.post("/v1/ask", json={"question": "x" * 5000})
    assert big.status_code == 413 and "max_body_bytes" in big.json()["detail"]
    chunked = client.post("/v1/ask", content=iter([b'{"question": "', b"y" * 5000, b'"}']),
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    long = client.post("/v1/ask", json={"question": "z" * 300})
    assert long.status_code == 422 and "max_question_chars" in long.json()["detail"]
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}] * 2
    too_many = client.post("/v1/chat/completions", json={"messages": messages})
    assert too_many.status_code == 422 and "max_messages" in too_many.json()["detail"]
    history = client.post("/v1/ask", json={"question": "and?", "history": messages})
    assert history.status_code == 422 and "max_messages" in history.json()["detail"]
    tokens = client.post("/v1/chat/completions", json={"messages": messages[:1], "max_tokens": 1000})
    assert tokens.status_code == 422 and "max_tokens" in tokens.json()["detail"]
    assert client.post("/v1/chat/completions", json={"messages": messages[:1], "max_tokens": 50}).status_code == 200


def test_keys_create_prints_a_key_whose_hash_is_the_entry():
    result = CliRunner().invoke(cli, ["keys", "create", "--principal", "ola", "--group", "everyone", "-g", "hr"])
    assert result.exit_code == 0, result.output
    key = next(line.strip() for line in result.output.splitlines() if line.strip().startswith("enc-"))
    [entry] = yaml.safe_load(result.output.split("enclave.yaml:")[1])
    assert entry == {"principal": "ola", "groups": ["everyone", "hr"], "sha256": api_key_hash(key)}
    assert key not in result.output.split("enclave.yaml:")[1]  # only the hash goes into the file
    authenticator = Authenticator(AuthSettings(api_keys=[ApiKeySettings(**entry)]))
    assert authenticator.authenticate({"authorization": f"Bearer {key}"}, None).groups == ("everyone", "hr")
