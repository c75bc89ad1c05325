"""prefect.yaml declares one schedulable deployment per configured source, matching the code and the config."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import Flow, load_flow_from_entrypoint

from enclave.settings import SettingsError, SourceSettings, load_settings

REPO = Path(__file__).resolve().parents[2]
CONFIG = "examples/enclave.yaml"
WORK_POOL = "enclave-process"


@pytest.fixture
def spec(monkeypatch) -> dict:
    monkeypatch.chdir(REPO)  # entrypoints and config paths are relative to the repository root
    return yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))


def test_one_deployment_per_configured_source(spec):
    settings = load_settings(CONFIG)
    assert settings.sources, f"{CONFIG} configures no source"
    names = [d["name"] for d in spec["deployments"]]
    assert len(names) == len(set(names)), f"duplicate deployment names in prefect.yaml: {names}"
    assert sorted(names) == sorted(f"ingest-{s.name}" for s in settings.sources)

    by_name = {d["name"]: d for d in spec["deployments"]}
    for source in settings.sources:
        deployment = by_name[f"ingest-{source.name}"]
        assert deployment["entrypoint"] == "enclave.flows.ingest_flow.ingest"
        assert deployment["parameters"] == {"source": source.name, "config_file": CONFIG}
        assert deployment["work_pool"]["name"] == WORK_POOL
        schedules = deployment.get("schedules") or []
        if source.schedule is None:
            assert schedules == [], f"source {source.name} has no schedule, but its deployment does"
        else:
            assert [(s["cron"], s.get("timezone", "UTC")) for s in schedules] == [(source.schedule, source.timezone)]
        assert source.path.is_dir()


def test_deployments_bind_to_the_flow_with_valid_schedules(spec):
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        assert isinstance(flow, Flow) and flow.name == "ingest"
        inspect.signature(flow.fn).bind(**deployment["parameters"])  # raises if a parameter is unknown
        for schedule in deployment.get("schedules") or []:
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises if invalid


def test_the_halvard_example_is_scheduled_hourly():
    source = load_settings(REPO / CONFIG).source("halvard")
    assert (source.schedule, source.timezone) == ("0 * * * *", "UTC")


def test_a_source_schedule_defaults_to_none_in_utc():
    source = SourceSettings(name="docs", path=Path("."))
    assert (source.schedule, source.timezone) == (None, "UTC")


@pytest.mark.parametrize(
    ("field", "value"),
    [("schedule", "0 * * *"), ("schedule", "61 * * * *"), ("schedule", "every hour"), ("timezone", "Mars/Olympus")],
)
def test_an_invalid_schedule_names_the_field(field, value):
    with pytest.raises(SettingsError) as caught:
        load_settings(sources=[{"name": "docs", "path": ".", "schedule": "0 * * * *", field: value}])
    assert f"sources.0.{field}" in str(caught.value) and value in str(caught.value)
