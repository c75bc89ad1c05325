"""The fault matrix: how long the route takes to answer when its first generator fails, per fault.

Each fault of ``tests/llms/test_fallback_faults.py`` (the same table) is set on a stand-in server on
127.0.0.1 (Ollama, OpenAI-compatible, Anthropic) driven through the real client, in front of the extractive
generator; the route (a ``FallbackRouter``) answers ``--rounds`` times and the median seconds to the
finished answer are printed beside the reason the route recorded and whether a Restart was streamed.
First-token limit 0.5 s, total 5 s, connect 1 s. Reference: the same route with a healthy server.
Nothing is asserted.

Run::

    .venv/bin/python bench/fallback_faults.py [--rounds 3]
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path

import enclave  # noqa: F401 - first: with tests/ on sys.path, tests/enclave/ would shadow it as a namespace package

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fault table's stand-in servers (tests/standins)


def _faults_module():
    spec = importlib.util.spec_from_file_location("fallback_faults", REPO / "tests" / "llms" / "test_fallback_faults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    from enclave.contracts import GenerationRequest
    from enclave.llms import ExtractiveGenerator
    from enclave.llms.fallback_router import FallbackRouter, Finished, Restart
    from enclave.prompts import answer_messages

    faults = _faults_module()

    class Passage:
        title, section = "HX-400 Pump Manual", "Overview"
        text = "The HX-400 is a centrifugal pump rated for 400 litres per minute. It is made of stainless steel."

    question = "What is the HX-400 rated for?"
    request = GenerationRequest(question, [Passage()], answer_messages(question, [Passage()]))
    print(f"{'generator':<8} {'fault':<32} {'answered by':<12} {'median s':>8}  restart  reason")
    for kind in faults.KINDS:
        cases = {"none (healthy)": ({}, "", False), **faults.faults_of(kind)}
        for name, (knobs, _, _) in cases.items():
            times, last = [], None
            for _ in range(rounds):
                with faults._stand_in(kind) as server:
                    for knob, value in knobs.items():
                        setattr(server, knob, value)
                    router = FallbackRouter([faults._generator(kind, server), ExtractiveGenerator()])
                    started = time.perf_counter()
                    events = list(router.stream(request))
                    times.append(time.perf_counter() - started)
                    last = events
            generation = next(e for e in last if isinstance(e, Finished)).generation
            restart = "yes" if any(isinstance(e, Restart) for e in last) else "no"
            reason = generation.attempts[0].error if generation.generator != kind else ""
            print(f"{kind:<8} {name:<32} {generation.generator:<12} {statistics.median(times):8.3f}  {restart:<7}  "
                  f"{reason[:70]}", flush=True)


if __name__ == "__main__":
    main()
