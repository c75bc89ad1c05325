"""The result of an evaluation run, and its three renderings: a Markdown table, JSON and a PNG plot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from enclave.indexes.retrieval_metrics import METRICS


@dataclass
class ModeResult:
    """One retrieval mode's scores. ``metrics``: name → mean over judged queries, in [0, 1];
    latencies per query (embedding the question plus the Qdrant query) in milliseconds;
    ``ndcg_by_query``: nDCG@10 of each judged query, to find the ones that fail."""

    mode: str
    metrics: dict[str, float]
    latency_p50_ms: float
    latency_p95_ms: float
    queries: int
    ndcg_by_query: dict[str, float] = field(default_factory=dict)


#: The answer metrics shown in the Markdown table and the plot (all in [0, 1]); see
#: [score_answers][enclave.flows.answer_metrics.score_answers] for each one's definition.
ANSWER_QUALITY = ("exact_match", "token_f1", "contains", "citation_precision", "citation_recall",
                  "abstention_precision", "abstention_recall", "wrongly_refused")


@dataclass
class AnswerResult:
    """One generator's (or the whole route's) answer quality: ``generator`` is ``route`` or a generator
    name; ``metrics`` from [score_answers][enclave.flows.answer_metrics.score_answers];
    ``answers``: each question's judged answer (qid, answered, scores, text), to find the ones that fail."""

    generator: str
    questions: int
    answerable: int
    unanswerable: int
    metrics: dict[str, float]
    answers: list[dict] = field(default_factory=list)


@dataclass
class EvaluationReport:
    """What ``enclave eval`` prints and writes.

    Usage::

        report.table_rows()        # [("hybrid", {"ndcg@10": 0.71, ...}, 14.2, 21.0), ...]
        report.write(Path("out"))  # out/evaluation.json, out/evaluation.md, out/evaluation.png
    """

    dataset: str
    kind: str  # "beir" or "qa"
    documents: int
    chunks: int
    queries: int
    judged_queries: int
    ingest_seconds: float
    chunks_embedded: int
    seconds: float
    results: list[ModeResult] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # the retrieval and BM25 settings in force
    answer_results: list[AnswerResult] = field(default_factory=list)

    def metric_names(self) -> list[str]:
        names = list(self.results[0].metrics) if self.results else list(METRICS)
        return names

    def to_markdown(self) -> str:
        """A Markdown table: one row per mode, one column per metric, then latency p50/p95 (ms)."""
        names = self.metric_names()
        lines = [
            f"# Retrieval evaluation: {self.dataset}",
            "",
            (f"{self.documents} documents, {self.chunks} chunks; {self.judged_queries} judged queries of "
             f"{self.queries}. Ingest {self.ingest_seconds:.1f} s ({self.chunks_embedded} chunks embedded); "
             f"whole run {self.seconds:.1f} s."),
            "",
            "| mode | " + " | ".join(names) + " | p50 ms | p95 ms |",
            "|---|" + "---:|" * (len(names) + 2),
        ]
        for result in self.results:
            cells = [f"{result.metrics[name]:.4f}" for name in names]
            lines.append(f"| {result.mode} | " + " | ".join(cells) +
                         f" | {result.latency_p50_ms:.1f} | {result.latency_p95_ms:.1f} |")
        if self.settings:
            lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items())]
        if self.answer_results:
            lines += ["", *self.answers_markdown()]
        return "\n".join(lines) + "\n"

    def answers_markdown(self) -> list[str]:
        """The answer evaluation as Markdown lines: one row per generator, quality then time, tokens, cost."""
        first = self.answer_results[0]
        lines = [
            f"## Answers: {first.questions} questions ({first.answerable} answerable, {first.unanswerable} not)",
            "",
            "| generator | " + " | ".join(ANSWER_QUALITY) + " | failed | TTFT p50 s | TTFT p95 s | total p50 s "
            "| total p95 s | tokens in | tokens out | $ / answer |",
            "|---|" + "---:|" * (len(ANSWER_QUALITY) + 8),
        ]
        for result in self.answer_results:
            m = result.metrics
            cells = [f"{m[name]:.3f}" for name in ANSWER_QUALITY]
            lines.append(f"| {result.generator} | " + " | ".join(cells) + f" | {m['failed']:.3f} | "
                         f"{m['first_token_p50_s']:.2f} | {m['first_token_p95_s']:.2f} | {m['total_p50_s']:.2f} | "
                         f"{m['total_p95_s']:.2f} | {m['tokens_in']:.0f} | {m['tokens_out']:.0f} | {m['cost_usd']:.6f} |")
        return lines

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def plot(self, path: Path) -> None:
        """A grouped bar chart (PNG): metrics on the x axis, one bar per mode, latency in the legend; with
        an answer evaluation, a second chart below it: answer metrics, one bar per generator."""
        import matplotlib

        matplotlib.use("Agg")  # no display: files only
        import matplotlib.pyplot as plt

        names = self.metric_names()
        width = 0.8 / max(len(self.results), 1)
        rows = 2 if self.answer_results else 1
        figure, panes = plt.subplots(rows, 1, figsize=(max(6, 1.3 * max(len(names), 8) + 2), 4.5 * rows), squeeze=False)
        axes = panes[0][0]
        for number, result in enumerate(self.results):
            xs = [i + (number - (len(self.results) - 1) / 2) * width for i in range(len(names))]
            bars = axes.bar(xs, [result.metrics[n] for n in names], width,
                            label=f"{result.mode} (p50 {result.latency_p50_ms:.0f} ms, p95 {result.latency_p95_ms:.0f} ms)")
            axes.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        axes.set_xticks(range(len(names)), names)
        axes.set_ylim(0, 1.08)
        axes.set_ylabel("score")
        axes.set_title(f"{self.dataset}: {self.judged_queries} queries, {self.documents} documents")
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=max(len(self.results), 1), fontsize=8, frameon=False)
        if self.answer_results:
            axes = panes[1][0]
            width = 0.8 / len(self.answer_results)
            for number, result in enumerate(self.answer_results):
                xs = [i + (number - (len(self.answer_results) - 1) / 2) * width for i in range(len(ANSWER_QUALITY))]
                m = result.metrics
                bars = axes.bar(xs, [m[n] for n in ANSWER_QUALITY], width,
                                label=f"{result.generator} (TTFT p50 {m['first_token_p50_s']:.1f} s)")
                axes.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
            axes.set_xticks(range(len(ANSWER_QUALITY)), [n.replace("_", "\n") for n in ANSWER_QUALITY], fontsize=8)
            axes.set_ylim(0, 1.08)
            axes.set_ylabel("share")
            first = self.answer_results[0]
            axes.set_title(f"answers: {first.answerable} answerable, {first.unanswerable} unanswerable questions")
            axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(self.answer_results), fontsize=8,
                        frameon=False)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)

    def write(self, folder: Path) -> dict[str, Path]:
        """Write ``evaluation.json``, ``evaluation.md`` and ``evaluation.png`` into ``folder`` (created);
        returns them by kind."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"json": folder / "evaluation.json", "markdown": folder / "evaluation.md", "plot": folder / "evaluation.png"}
        paths["json"].write_text(self.to_json(), encoding="utf-8")
        paths["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        self.plot(paths["plot"])
        return paths
