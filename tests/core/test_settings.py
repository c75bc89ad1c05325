"""enclave.settings: defaults, YAML loading, ENCLAVE_* environment overrides and validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from enclave.settings import DEFAULT_EMBEDDER, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray enclave.yaml from the working directory and no ENCLAVE_* variables from the caller."""
    monkeypatch.chdir(tmp_path)
    import os

    for name in list(os.environ):
        if name.startswith("ENCLAVE_"):
            monkeypatch.delenv(name)


def _write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


HANDBOOK_YAML = """\
data_dir: state
sources:
  - name: handbook
    path: docs/handbook
    exclude: ["**/drafts/**"]
    groups: [staff, hr]
    classification: confidential
index:
  collection: handbook_v1
retrieval:
  top_k: 8
"""


def test_defaults_without_a_config_file() -> None:
    settings = load_settings()
    assert isinstance(settings, Settings)
    assert settings.data_dir == Path(".enclave")
    assert settings.sources == []
    assert settings.index.backend == "edge"
    assert settings.index.collection == "enclave"
    assert settings.index.url is None
    assert settings.embedder.model == DEFAULT_EMBEDDER
    assert settings.embedder.device == "cpu"
    assert settings.chunker.chunk_tokens is None
    assert settings.chunker.overlap_tokens == 32
    assert settings.retrieval.top_k == 5
    assert settings.ingest.max_file_bytes == 50 * 1024 * 1024
    assert settings.server.port == 8000
    assert [g.name for g in settings.generators] == ["ollama", "extractive"]
    assert [g.name for g in settings.route_generators()] == ["ollama", "extractive"]


def test_yaml_file_is_loaded(tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "custom.yaml", HANDBOOK_YAML)
    settings = load_settings(config)
    assert settings.data_dir == Path("state")
    assert settings.index.collection == "handbook_v1"
    assert settings.retrieval.top_k == 8
    [source] = settings.sources
    assert source.name == "handbook"
    assert source.kind == "filesystem"
    assert source.path == Path("docs/handbook")
    assert source.include == ["**/*"]
    assert source.exclude == ["**/drafts/**"]
    assert source.groups == ["staff", "hr"]
    assert source.classification == "confidential"
    assert settings.source("handbook") is source
    with pytest.raises(KeyError, match="handbook"):
        settings.source("nope")


def test_enclave_yaml_in_working_directory_is_found(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "enclave.yaml", HANDBOOK_YAML)
    assert [s.name for s in load_settings().sources] == ["handbook"]


def test_enclave_config_variable_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write_yaml(tmp_path / "elsewhere.yaml", "retrieval:\n  top_k: 11\n")
    monkeypatch.setenv("ENCLAVE_CONFIG", str(config))
    assert load_settings().retrieval.top_k == 11


def test_environment_overrides_yaml_with_nested_delimiter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _write_yaml(tmp_path / "enclave.yaml", HANDBOOK_YAML)
    monkeypatch.setenv("ENCLAVE_INDEX__BACKEND", "server")
    monkeypatch.setenv("ENCLAVE_INDEX__URL", "http://qdrant.internal:6333")
    monkeypatch.setenv("ENCLAVE_RETRIEVAL__TOP_K", "3")
    monkeypatch.setenv("ENCLAVE_DATA_DIR", "/var/lib/enclave")
    settings = load_settings(config)
    assert settings.index.backend == "server"
    assert settings.index.url == "http://qdrant.internal:6333"
    # a nested override replaces one field, the YAML's siblings stay
    assert settings.index.collection == "handbook_v1"
    assert settings.retrieval.top_k == 3
    assert settings.data_dir == Path("/var/lib/enclave")
    assert [s.name for s in settings.sources] == ["handbook"]


def test_keyword_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_DATA_DIR", "from-env")
    assert load_settings(data_dir="from-kwargs").data_dir == Path("from-kwargs")


def test_invalid_backend_names_the_field(tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "enclave.yaml", "index:\n  backend: cassandra\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert "index.backend" in str(info.value)
    assert str(config) in str(info.value)


def test_invalid_backend_from_environment_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_INDEX__BACKEND", "cassandra")
    with pytest.raises(SettingsError, match=r"index\.backend"):
        load_settings()


def test_invalid_source_classification_names_the_list_index(tmp_path: Path) -> None:
    config = _write_yaml(
        tmp_path / "enclave.yaml",
        "sources:\n  - name: ok\n    path: a\n  - name: bad\n    path: b\n    classification: secret\n",
    )
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    message = str(info.value)
    assert "sources.1.classification" in message
    assert "sources.0" not in message


def test_first_source_invalid_classification(tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "enclave.yaml", "sources:\n  - name: s\n    path: a\n    classification: top\n")
    with pytest.raises(SettingsError, match=r"sources\.0\.classification"):
        load_settings(config)


def test_several_errors_are_all_named(tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "enclave.yaml", "retrieval:\n  top_k: 0\nserver:\n  port: 70000\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert "retrieval.top_k" in str(info.value)
    assert "server.port" in str(info.value)


def test_unknown_top_level_key_is_rejected(tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "enclave.yaml", "indx:\n  backend: edge\n")
    with pytest.raises(SettingsError, match="indx"):
        load_settings(config)


def test_server_backend_without_url_names_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_INDEX__BACKEND", "server")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "  index: " in message  # the field path of the error is the index section
    assert "index.url" in message


def test_duplicate_source_names_fail(tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "enclave.yaml", "sources:\n  - {name: a, path: x}\n  - {name: a, path: y}\n")
    with pytest.raises(SettingsError, match="duplicate source names: a"):
        load_settings(config)


def test_route_naming_unknown_generator_fails(tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "enclave.yaml", "route: [extractive, gpt5]\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    assert "gpt5" in str(info.value)
    assert "route" in str(info.value)


def test_route_orders_generators(tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "enclave.yaml", "route: [extractive, ollama]\n")
    assert [g.name for g in load_settings(config).route_generators()] == ["extractive", "ollama"]


def test_ollama_generator_without_model_fails(tmp_path: Path) -> None:
    config = _write_yaml(tmp_path / "enclave.yaml", "generators:\n  - {name: local, kind: ollama}\n")
    with pytest.raises(SettingsError, match=r"generators\.0"):
        load_settings(config)


def test_missing_config_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_settings(tmp_path / "nope.yaml")


def test_missing_file_named_by_enclave_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(FileNotFoundError):
        load_settings()


def test_retrieval_and_bm25_settings_are_validated(tmp_path: Path) -> None:
    settings = Settings()
    assert (settings.retrieval.mode, settings.retrieval.rrf_k, settings.bm25.language) == ("hybrid", 60, "english")
    config = _write_yaml(tmp_path / "enclave.yaml", "retrieval:\n  mode: fuzzy\nbm25:\n  language: klingon\n  b: 2\n")
    with pytest.raises(SettingsError) as error:
        load_settings(config)
    message = str(error.value)
    assert "retrieval.mode" in message and "bm25.language" in message and "bm25.b" in message
