"""prefect.yaml declares a schedulable deployment of the ingest flow that matches the code."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import Flow, load_flow_from_entrypoint

from enclave.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_ingest_deployment_is_scheduled_and_binds_to_the_flow(monkeypatch):
    monkeypatch.chdir(REPO)
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    [deployment] = [d for d in spec["deployments"] if d["name"] == "ingest-halvard"]

    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert isinstance(flow, Flow) and flow.name == "ingest"
    inspect.signature(flow.fn).bind(**deployment["parameters"])  # raises if a parameter is unknown

    [schedule] = deployment["schedules"]
    CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises if the cron is invalid
    assert deployment["work_pool"]["name"]

    settings = load_settings(deployment["parameters"]["config_file"])
    assert settings.source(deployment["parameters"]["source"]).path.is_dir()
