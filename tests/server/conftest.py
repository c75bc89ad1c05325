"""The app over the session's halvard index (see tests/conftest.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.app import create_app


@pytest.fixture()
def client(halvard_settings, halvard_pipeline):
    with TestClient(create_app(halvard_settings, pipeline=halvard_pipeline)) as test_client:
        yield test_client
