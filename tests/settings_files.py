"""Settings for the flows under test: a flow takes only JSON-able parameters, so tests write their
``Settings`` to a file and pass its path, as an operator's deployment does."""

from __future__ import annotations

from pathlib import Path

from enclave.settings import Settings


def write_settings(settings: Settings, folder: Path | str, name: str = "enclave.yaml") -> str:
    """``settings`` written as YAML to ``<folder>/<name>`` (``Settings.write_yaml``); returns the path."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return str(settings.write_yaml(Path(folder) / name))
