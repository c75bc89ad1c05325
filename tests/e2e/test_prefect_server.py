"""Scheduled ingestion for real: a Prefect server, the repository's prefect.yaml deployed, a process worker.

The module fixture uses the session's ``prefect server start`` (tests/conftest.py: its own PREFECT_HOME
and SQLite database in a temporary folder, the UI and the scheduler service off so no cron run joins
in), creates the work pool
``enclave-process``, runs ``prefect --no-prompt deploy --name ingest-halvard`` from the repository
root, triggers a run through the Prefect API and lets ``prefect worker start --run-once`` execute it
with ``ENCLAVE_DATA_DIR`` pointing at a temporary folder. The tests read what the run left: its
state, its ``ingest-report`` artifact, the embedded index and its ledger.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect_server import prefect_command, server_environment, stop_process_group

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SOURCE = "halvard"
DEPLOYMENT = f"ingest-{SOURCE}"
WORK_POOL = "enclave-process"
RUN_TIMEOUT = 300.0  # seconds for the flow run to finish once triggered


@dataclass
class ScheduledRun:
    deployment: Any  # prefect DeploymentResponse
    flow_run: Any  # prefect FlowRun, in its final state
    artifacts: list[Any]  # the run's artifacts with key ingest-report
    points: int  # chunk points of the source in the index
    ledger: dict[str, Any]  # source id -> LedgerEntry
    worker_log: str
    prefect_yaml_before: bytes
    prefect_yaml_after: bytes


def _tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else "(no output)"


def _environment(home: Path, api_url: str) -> dict[str, str]:
    """The subprocesses' environment: the server's (private home, no scheduler service, so the
    deployment's hourly cron adds no runs beside the one this test triggers), pointed at its API."""
    env = {k: v for k, v in server_environment(home).items() if not k.startswith("ENCLAVE_")}
    env.update({
        "PREFECT_API_URL": api_url,
        "PREFECT_LOGGING_LEVEL": "INFO",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OLLAMA_HOST": "127.0.0.1:9",  # nothing listens there
    })
    return env


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Run ``args`` from the repository root in its own process group; terminate, then kill, the group."""
    with open(log, "wb") as out:
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            stop_process_group(process)


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        prefect_command() + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"prefect {' '.join(args)} exited with {done.returncode} ({_versions()}):\n{output[-6000:]}")
    return output


def _versions() -> str:
    """The versions a Prefect server's request validation depends on, for failure messages."""
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ("prefect", "fastapi", "pydantic"))


@pytest.fixture(scope="module")
def scheduled_run(tmp_path_factory, prefect_api) -> ScheduledRun:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from enclave.indexes import ChunkStore, EdgeIndex, SyncLedger

    root = tmp_path_factory.mktemp("prefect-server")
    home, data_dir = root / "prefect-home", root / "data"
    home.mkdir()
    prefect_yaml = REPO / "prefect.yaml"
    yaml_before = prefect_yaml.read_bytes()
    worker_log = root / "worker.log"

    api_url = prefect_api  # the session's real `prefect server start` (tests/conftest.py), scheduler off
    env = _environment(home, api_url)
    with ExitStack() as stack:

        _cli(["work-pool", "create", WORK_POOL, "--type", "process"], env)
        _cli(["--no-prompt", "deploy", "--name", DEPLOYMENT], env, timeout=180)
        yaml_after = prefect_yaml.read_bytes()

        with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"ingest/{DEPLOYMENT}")
            triggered = client.create_flow_run_from_deployment(deployment.id)

            worker_env = {**env, "ENCLAVE_DATA_DIR": str(data_dir)}
            worker = stack.enter_context(_process(
                prefect_command() + ["worker", "start", "--pool", WORK_POOL, "--run-once", "--limit", "1"],
                worker_env, worker_log,
            ))
            flow_run = _wait_for_final_state(client, triggered.id, worker, worker_log)
            worker.wait(timeout=60)  # --run-once: it leaves once the run is over, releasing the index

            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["ingest-report"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]),
            ))

    index = EdgeIndex(data_dir / "index" / "enclave", 384)
    try:
        points, ledger = ChunkStore(index).count(source=SOURCE), SyncLedger(index).entries(SOURCE)
    finally:
        index.close()
    return ScheduledRun(deployment, flow_run, artifacts, points, ledger, _tail(worker_log), yaml_before, yaml_after)


def _wait_for_final_state(client: Any, flow_run_id: UUID, worker: subprocess.Popen, log: Path) -> Any:
    """Poll the flow run until it is final; fail with the worker's output if it did not complete."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        flow_run = client.read_flow_run(flow_run_id)
        state = flow_run.state
        if state is not None and state.is_final():
            if not state.is_completed():
                raise AssertionError(f"flow run ended {state.type.value} ({state.message}):\n{_tail(log)}")
            return flow_run
        if worker.poll() is not None:
            # the worker may exit just after the final state is written: look once more before failing
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_completed():
                return flow_run
            raise AssertionError(
                f"the worker exited ({worker.returncode}) with the flow run {flow_run.state and flow_run.state.type.value}:\n"
                f"{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"flow run still {state and state.type.value} after {RUN_TIMEOUT} s:\n{_tail(log)}")
        time.sleep(1)


def _rows(artifact: Any) -> list[dict[str, Any]]:
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    if isinstance(data, dict):  # a table given as columns: {"source": [...], "indexed": [...]}
        keys = list(data)
        return [dict(zip(keys, values)) for values in zip(*data.values())]
    return data


def _files(folder: Path) -> set[str]:
    return {
        f"{SOURCE}:{p.relative_to(folder).as_posix()}"
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def test_prefect_yaml_deploys_the_source_with_its_schedule(scheduled_run):
    deployment = scheduled_run.deployment
    assert deployment.entrypoint == "enclave.flows.ingest_flow.ingest"
    assert deployment.parameters == {"source": SOURCE, "config_file": "examples/enclave.yaml"}
    assert deployment.work_pool_name == WORK_POOL
    assert [(s.schedule.cron, s.schedule.timezone) for s in deployment.schedules] == [("0 * * * *", "UTC")]
    # no pull step in prefect.yaml: `prefect deploy` records the directory it ran from, and leaves the file alone
    assert deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO.resolve())}}
    ]
    assert scheduled_run.prefect_yaml_after == scheduled_run.prefect_yaml_before


def test_the_triggered_run_completes_on_the_worker(scheduled_run):
    flow_run = scheduled_run.flow_run
    assert flow_run.state.is_completed(), scheduled_run.worker_log
    assert flow_run.deployment_id == scheduled_run.deployment.id
    assert flow_run.parameters == {"source": SOURCE, "config_file": "examples/enclave.yaml"}


def test_the_run_publishes_its_ingest_report(scheduled_run):
    [artifact] = scheduled_run.artifacts
    assert artifact.type == "table"
    [row] = [r for r in _rows(artifact) if r["source"] == SOURCE]
    indexed = [e for e in scheduled_run.ledger.values() if e.status == "indexed"]
    assert row["indexed"] == len(indexed) > 0
    assert row["failed"] == 0, artifact.description
    assert row["updated"] == row["deleted"] == row["unchanged"] == 0  # a fresh index
    assert row["chunks_embedded"] == scheduled_run.points


def test_the_index_holds_every_indexed_file(scheduled_run, examples):
    ledger = scheduled_run.ledger
    assert scheduled_run.points > 0
    assert set(ledger) == _files(examples)  # an entry per file: indexed, or skipped with its reason
    assert not [e for e in ledger.values() if e.status == "failed"]
    assert sum(e.chunks for e in ledger.values()) == scheduled_run.points
    assert all(e.chunks > 0 for e in ledger.values() if e.status == "indexed")
