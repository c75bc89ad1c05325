"""The app over the session's halvard index (see tests/conftest.py), with anonymous access on (as
``everyone``), the API keys of tests/server_auth.py and no rate limit."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from server_auth import server_settings

from enclave.server.app import create_app


@pytest.fixture()
def client(halvard_settings, halvard_pipeline):
    with TestClient(create_app(server_settings(halvard_settings), pipeline=halvard_pipeline)) as test_client:
        yield test_client
