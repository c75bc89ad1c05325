"""A flow of your own, composed from Enclave's: sync a source, then answer a standing list of questions.

Run it once (a Prefect flow run in this process; without PREFECT_API_URL, Prefect starts a temporary API)::

    .venv/bin/python examples/compose_flow.py --config examples/enclave.yaml

Or serve it on a schedule: a deployment with a cron schedule, whose runs this process executes until
you stop it (with PREFECT_API_URL pointing at `prefect server start`, the runs show in its UI)::

    .venv/bin/python examples/compose_flow.py --config examples/enclave.yaml --serve --cron "0 7 * * 1-5"

``ingest_source`` and ``answer`` are Enclave's own flows; called inside this one they run as its
subflows, so the Prefect UI shows the sync, the answers and their task runs under one flow run.
"""

from __future__ import annotations

import argparse

from prefect import flow

from enclave import answer, ingest_source

QUESTIONS = [
    "How many days of paid leave do employees earn each month?",
    "What is the minimum length for a password?",
]


@flow(name="handbook-digest", log_prints=True)
def handbook_digest(config_file: str, source: str = "halvard", questions: list[str] | None = None,
                    groups: list[str] | None = None) -> list[str]:
    """Sync ``source`` (only new and changed documents are embedded), then answer ``questions`` as a
    member of ``groups``; prints and returns each answer with the titles it cites."""
    report = ingest_source(source, config_file=config_file)
    print(f"{source}: {report.counts()}, {report.chunks_embedded} chunks embedded")
    digest = []
    for reply in answer(questions or QUESTIONS, groups=groups or ["everyone"], config_file=config_file):
        cited = ", ".join(sorted({c.title for c in reply.citations})) or "no document"
        digest.append(f"Q: {reply.question}\nA: {reply.text}\n   (cites {cited}; answered by {reply.generator})")
    print("\n\n".join(digest))
    return digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the settings file the flows read (enclave.yaml)")
    parser.add_argument("--source", default="halvard", help="the configured source to sync (default halvard)")
    parser.add_argument("--serve", action="store_true", help="serve the flow as a scheduled deployment")
    parser.add_argument("--cron", default="0 7 * * 1-5", help="its schedule with --serve (default weekdays 07:00)")
    options = parser.parse_args()
    parameters = {"config_file": options.config, "source": options.source}
    if options.serve:
        handbook_digest.serve(name="handbook-digest", cron=options.cron, parameters=parameters)
    else:
        handbook_digest(**parameters)


if __name__ == "__main__":
    main()
