"""examples/compose_flow.py, the README's flow of one's own, run for real against the session's Prefect
server: once (a sync and cited answers), and served as a deployment with its cron schedule, whose run
the served process executes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect_server import stop_process_group
from settings_files import write_settings

from enclave.settings import GeneratorSettings, Settings, SourceSettings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "compose_flow.py"

pytestmark = pytest.mark.slow


@pytest.fixture
def config(tmp_path, examples) -> str:
    settings = Settings(data_dir=tmp_path / "data",
                        sources=[SourceSettings(name="halvard", path=examples, groups=["everyone"])],
                        generators=[GeneratorSettings(name="extractive", kind="extractive")])
    return write_settings(settings, tmp_path)


def _environment(prefect_api: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENCLAVE_", "PREFECT_"))}
    env.update({"PREFECT_API_URL": prefect_api, "HF_HUB_OFFLINE": "1", "PREFECT_LOGGING_LEVEL": "INFO"})
    return env


def test_the_example_syncs_and_answers_with_citations(config, prefect_api, tmp_path):
    run = subprocess.run([sys.executable, str(EXAMPLE), "--config", config], cwd=tmp_path, env=_environment(prefect_api),
                         capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "halvard: {'indexed': 14}" in output
    assert "Q: How many days of paid leave do employees earn each month?" in output
    assert "cites employee-handbook.md" in output and "cites it-security-policy.md" in output

    again = subprocess.run([sys.executable, str(EXAMPLE), "--config", config], cwd=tmp_path,
                           env=_environment(prefect_api), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "halvard: {'unchanged': 14}, 0 chunks embedded" in again.stdout + again.stderr


def test_served_it_is_a_scheduled_deployment_whose_run_the_process_executes(config, prefect_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        served = subprocess.Popen([sys.executable, str(EXAMPLE), "--config", config, "--serve", "--cron", "0 7 * * 1-5"],
                                  cwd=tmp_path, env=_environment(prefect_api), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        with temporary_settings(updates={PREFECT_API_URL: prefect_api}), get_client(sync_client=True) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    deployment = client.read_deployment_by_name("handbook-digest/handbook-digest")
                    break
                except Exception:  # not registered yet (ObjectNotFound), or the process is still starting
                    assert served.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
                    time.sleep(1)
            assert [s.schedule.cron for s in deployment.schedules] == ["0 7 * * 1-5"]
            assert deployment.parameters == {"config_file": config, "source": "halvard"}

            triggered = client.create_flow_run_from_deployment(deployment.id)
            while True:
                flow_run = client.read_flow_run(triggered.id)
                if flow_run.state and flow_run.state.is_final():
                    break
                assert served.poll() is None and time.monotonic() < deadline + 300, log.read_text()[-4000:]
                time.sleep(1)
            assert flow_run.state.is_completed(), (flow_run.state, log.read_text()[-4000:])
    finally:
        stop_process_group(served)
    assert "cites employee-handbook.md" in log.read_text()
