"""PII redaction before an external call: PERSON precision/recall on the labelled set, and the time
names add to one external call.

Run: ``.venv/bin/python bench/pii_redaction.py [--calls 50]``. About a minute on 2 cores.

- **Quality**: PERSON on tests/llms/data/person_sentences.jsonl (133 sentences of enterprise prose:
  Scandinavian, English and other names; places, products, companies and streets named after people
  as traps). A span counts when the redactor's PERSON span is exactly the labelled one (a possessive
  "'s" outside it). Precision, recall and F1, and the misses and false alarms, printed.
- **Time**: one external call redacts the question and the passages sent (here 1 question + 5
  chunks of about 120 words of Halvard's documents, the default top_k). Interleaved, in one process,
  after a warm-up each: [PiiRedactor][enclave.llms.pii_redactor.PiiRedactor] with the default
  entities (PERSON by spaCy + the patterns) against the patterns alone. Median and p95 ms per call,
  and the difference: the time names add. The first use's load (spaCy pipeline) is printed apart.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from enclave.llms.pii_redactor import DEFAULT_ENTITIES, PiiRedactor

ROOT = Path(__file__).resolve().parents[1]


def quality() -> None:
    labelled = (ROOT / "tests/llms/data/person_sentences.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in labelled.splitlines() if line.strip()]
    person_only = PiiRedactor(entities=["PERSON"])
    hits = predicted = gold = 0
    misses, alarms = [], []
    for row in rows:
        found = {row["text"][r.start:r.end] for r in person_only.find(row["text"])}
        wanted = set(row["persons"])
        hits += len(found & wanted)
        predicted += len(found)
        gold += len(wanted)
        misses += sorted(wanted - found)
        alarms += sorted(found - wanted)
    precision, recall = hits / predicted, hits / gold
    print(f"PERSON on {len(rows)} sentences ({gold} names): precision {precision:.3f}, recall {recall:.3f}, "
          f"F1 {2 * precision * recall / (precision + recall):.3f}")
    print(f"  missed ({len(misses)}): {', '.join(misses)}")
    print(f"  false alarms ({len(alarms)}): {', '.join(alarms)}")


def passages() -> list[str]:
    words = " ".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples/halvard").rglob("*.md"))).split()
    return [" ".join(words[i * 120:(i + 1) * 120]) for i in range(5)]


def timing(calls: int) -> None:
    texts = ["Who approves travel for Kari Nordmann in the Bergen office?", *passages()]
    started = time.perf_counter()
    names = PiiRedactor()
    names.redact("warm up")
    loaded = time.perf_counter() - started
    patterns = PiiRedactor(entities=[e for e in DEFAULT_ENTITIES if e != "PERSON"])
    patterns.redact("warm up")
    spent: dict[str, list[float]] = {"with PERSON": [], "patterns only": []}
    for _ in range(calls):
        for label, redactor in (("with PERSON", names), ("patterns only", patterns)):
            began = time.perf_counter()
            redactor.redact_many(texts)
            spent[label].append((time.perf_counter() - began) * 1000)
    print(f"first use with PERSON (presidio + spaCy pipeline load): {loaded:.2f} s")
    for label, values in spent.items():
        values.sort()
        print(f"  {label:14s} per call (question + 5 chunks): median {statistics.median(values):.1f} ms, "
              f"p95 {values[int(0.95 * (len(values) - 1))]:.1f} ms")
    added = statistics.median(spent["with PERSON"]) - statistics.median(spent["patterns only"])
    print(f"  names add {added:.1f} ms per external call (median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    timing(args.calls)  # first: it times the pipeline's first load
    quality()


if __name__ == "__main__":
    main()
