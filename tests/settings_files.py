"""Settings for the flows under test: a flow takes only JSON-able parameters, so tests write their
``Settings`` to a file and pass its path, as an operator's deployment does."""

from __future__ import annotations

from pathlib import Path

import yaml

from enclave.settings import Settings


def write_settings(settings: Settings, folder: Path | str, name: str = "enclave.yaml") -> str:
    """``settings`` (the fields that were set) written as YAML to ``<folder>/<name>``; returns the path."""
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = settings.model_dump(mode="json", exclude_unset=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)
