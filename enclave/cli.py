"""The ``enclave`` command: ingest, ask, serve.

Usage::

    enclave ingest ./docs                 # a folder, as an ad-hoc source
    enclave ingest --source handbook      # a source from enclave.yaml
    enclave status                        # per source: documents, chunks, last run, failures by reason
    enclave status --failures             # every failed and skipped file with its reason
    enclave reindex                       # rebuild with new embedder/chunk/BM25 settings, no downtime
    enclave backup /backups/enclave.tar   # chunks, ledger and run log at one point in time, while serving
    enclave restore /backups/enclave.tar  # as a new generation, switched to atomically (--force to replace)
    enclave ask "How many leave days do I get?"
    enclave serve --port 8000
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from enclave.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:  # the flows load only with the commands that run them
    from enclave.flows.evaluation_report import EvaluationReport
    from enclave.flows.progress import ProgressEvent

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Enclave: private RAG over your documents.")
console = Console()
err = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", "-c", help="Settings file (default: $ENCLAVE_CONFIG or ./enclave.yaml).")


def _config_file(config: Path | None) -> str | None:
    """``--config`` as a flow parameter (a flow run loads its settings from the file itself)."""
    return str(config) if config is not None else None


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except (SettingsError, FileNotFoundError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # without PREFECT_API_URL a run starts a temporary API server; on a busy machine that takes > 20 s
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in ("httpx", "sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _ProgressReporter:
    """A progress bar on a terminal (documents done of total, chunks embedded, chunks/s, elapsed, ETA);
    otherwise a log line every 10 % of documents or 30 s. Called with the flows' ProgressEvents."""

    def __init__(self) -> None:
        self.interactive = console.is_terminal
        self.total = 0
        self.done = 0
        self.chunks = 0
        self._last_logged = -1
        self._logged_at = self._started = time.monotonic()
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[chunks]} chunks, {task.fields[rate]:.1f}/s"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not self.interactive,
        )
        self.task = self.bar.add_task("documents", total=None, chunks=0, rate=0.0)

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "planned":
            self.total += event.amount
        elif event.kind == "documents":
            self.done += event.amount
        elif event.kind == "chunks":
            self.chunks += event.amount
        rate = self.chunks / max(time.monotonic() - self._started, 1e-9)
        self.bar.update(self.task, total=self.total or None, completed=self.done, chunks=self.chunks, rate=rate)
        if not self.interactive and self.total:
            decile = self.done * 10 // self.total
            if decile != self._last_logged or time.monotonic() - self._logged_at >= 30:
                self._last_logged, self._logged_at = decile, time.monotonic()
                print(f"ingest: {self.done}/{self.total} documents, {self.chunks} chunks embedded ({rate:.1f}/s)", flush=True)


@app.command()
def ingest(
    path: Path | None = typer.Argument(None, help="A folder to ingest as an ad-hoc source."),
    source: str | None = typer.Option(None, "--source", "-s", help="A configured source's name."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Parse files that failed before again, even if unchanged."),
    task_runner: str | None = typer.Option(None, "--task-runner", help="threads (default) or dask: where fetch/parse/embed run."),
    config: Path | None = ConfigOption,
) -> None:
    """Sync documents into the index: new and changed ones are embedded, unchanged ones cost nothing,
    removed ones are deleted. Exits 1 if any document is failed (including earlier failures of files
    that have not changed since, which are not retried without --retry-failed) or a source could not be
    listed (nothing of it is deleted), 2 on a usage error."""
    _quiet_libraries()
    settings = _settings(config)
    if task_runner is not None:
        if task_runner not in ("threads", "dask"):
            err.print(f"[red]--task-runner must be threads or dask, not {task_runner!r}[/red]")
            raise typer.Exit(2)
        settings.ingest.task_runner = task_runner
    from enclave.contracts import SourceUnavailable
    from enclave.flows.ingest_flow import ingest_with_runner
    from enclave.flows.progress import reporting_progress
    from enclave.indexes.index_backend import IndexUnavailable

    reporter = _ProgressReporter()
    try:
        ingest_flow = ingest_with_runner(settings)
        with reporter.bar, reporting_progress(reporter):
            reports = ingest_flow(source=source, path=str(path) if path else None, config_file=_config_file(config),
                                  retry_failed=retry_failed)
    except SourceUnavailable as exc:  # nothing of that source was deleted; try again when it is back
        from rich.markup import escape

        err.print(f"[red]{escape(str(exc))}[/red]; nothing of it was deleted", soft_wrap=True)
        raise typer.Exit(1) from None
    except (KeyError, FileNotFoundError, IndexUnavailable, ImportError, SettingsError) as exc:
        err.print(f"[red]{exc.args[0] if exc.args else exc}[/red]")
        raise typer.Exit(2) from None
    failed = 0
    for report in reports:
        counts = report.counts()
        failed += counts.get("failed", 0)
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        console.print(f"[bold]{report.source}[/bold]: {summary}; {report.chunks_embedded} chunks embedded "
                      f"in {report.seconds:.1f} s", soft_wrap=True)
        problems = sorted(report.problems(), key=lambda o: (o.status, o.reason, o.doc_id))
        if problems and console.is_terminal:
            table = Table("status", "reason", "document", "detail", title=f"{len(problems)} not indexed")
            for o in problems:
                table.add_row(o.status, o.reason, o.doc_id.split(":", 1)[-1], (o.detail or "")[:120])
            console.print(table)
        for o in problems if not console.is_terminal else []:  # logs: one whole line per document
            print(f"{o.status}: {o.reason}: {o.doc_id.split(':', 1)[-1]}" + (f" ({o.detail[:200]})" if o.detail else ""))
        if report.reasons():
            console.print("by reason: " + ", ".join(f"{n} {r}" for r, n in sorted(report.reasons().items())), markup=False)
    raise typer.Exit(1 if failed else 0)


@app.command()
def reindex(
    grace: float = typer.Option(30.0, "--grace", min=0,
                                help="Seconds readers get to leave the old generation before it is dropped."),
    allow_dropping: bool = typer.Option(False, "--allow-dropping",
                                        help="Re-index even if the live index holds sources the settings no longer name."),
    drop_stale: bool = typer.Option(False, "--drop-stale", help="Only delete old generations no process holds any more."),
    config: Path | None = ConfigOption,
) -> None:
    """Rebuild the index with the current settings (embedder, chunk size, BM25) beside the live one, then
    switch to it atomically: `enclave serve` keeps answering throughout and follows the switch. Exits 1 if
    a source could not be listed (the live index is untouched), 2 on a usage or settings error."""
    _quiet_libraries()
    settings = _settings(config)
    from rich.markup import escape

    from enclave.contracts import SourceUnavailable
    from enclave.flows.progress import reporting_progress
    from enclave.flows.reindex_flow import ReindexRefused, drop_stale_generations
    from enclave.flows.reindex_flow import reindex as reindex_flow
    from enclave.indexes.index_backend import IndexUnavailable

    if drop_stale:
        dropped = drop_stale_generations(settings)
        console.print(f"dropped {len(dropped)} old generation(s)" + (": " + ", ".join(dropped) if dropped else ""))
        return
    if not settings.sources:
        err.print("[red]no sources configured: a re-index rebuilds the sources enclave.yaml names[/red]")
        raise typer.Exit(2)
    reporter = _ProgressReporter()
    try:
        with reporter.bar, reporting_progress(reporter):
            report = reindex_flow(config_file=_config_file(config), grace=grace, allow_dropping=allow_dropping)
    except SourceUnavailable as exc:
        err.print(f"[red]{escape(str(exc))}[/red]; the live index is unchanged", soft_wrap=True)
        raise typer.Exit(1) from None
    except (ReindexRefused, IndexUnavailable, SettingsError) as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    for source in report.reports:
        summary = ", ".join(f"{n} {status}" for status, n in sorted(source.counts().items()))
        console.print(f"[bold]{source.source}[/bold]: {summary}; {source.chunks_embedded} chunks embedded", soft_wrap=True)
    console.print(f"live: {report.live} (was {report.previous or 'none'}), {report.seconds:.1f} s; old generation "
                  + ("dropped" if report.dropped else "still open in another process: `enclave reindex --drop-stale` later"),
                  markup=False)


@app.command()
def backup(
    path: Path = typer.Argument(..., help="The backup file to write (never overwritten)."),
    config: Path | None = ConfigOption,
) -> None:
    """Write a backup of the index to PATH, one file: its chunks with their vectors, its ledger and its run
    log, read at one point in time while `enclave serve` answers and an ingest writes (its writes wait
    for the read). Loads no model. Exits 2 if there is no index, PATH exists, or the index cannot be read."""
    _quiet_libraries()
    settings = _settings(config)
    from rich.markup import escape

    from enclave.flows.backup_flow import backup_index
    from enclave.indexes.index_backend import IndexUnavailable
    from enclave.indexes.index_backup import BackupError

    try:
        report = backup_index(settings, path)
    except (BackupError, IndexUnavailable, OSError) as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    m = report.manifest
    documents = ", ".join(f"{n} {status}" for status, n in m.documents.items()) or "none"
    console.print(f"backup: {escape(str(report.path))}: {m.points['chunks']} chunks, {sum(m.documents.values())} "
                  f"documents ({documents}), {m.points['runs']} runs; {_size(report.bytes)} in "
                  f"{report.seconds:.1f} s", soft_wrap=True)
    console.print(f"index {m.collection} ({m.backend}, generation {m.generation}, dimension {m.dimension}); "
                  f"consistency: {m.consistency}" + (f", {len(m.pending)} document(s) kept as pending" if m.pending else ""),
                  soft_wrap=True, markup=False)


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.0f} KiB"


@app.command()
def restore(
    path: Path = typer.Argument(..., help="A backup file written by `enclave backup`."),
    force: bool = typer.Option(False, "--force", help="Replace an index that is not empty."),
    grace: float = typer.Option(30.0, "--grace", min=0,
                                help="Seconds readers get to leave the replaced generation before it is dropped."),
    config: Path | None = ConfigOption,
) -> None:
    """Restore the index from a backup: every member's checksum is checked, the backup is loaded into a new
    generation and readers switch to it atomically (`enclave serve` follows without a restart). Refuses an
    index that is not empty unless --force. Exits 1 if the backup is damaged or does not fit the settings
    (another embedder), 2 if refused or on a settings error; the live index is then unchanged."""
    _quiet_libraries()
    settings = _settings(config)
    from rich.markup import escape

    from enclave.flows.backup_flow import restore_index
    from enclave.indexes.index_backend import IndexUnavailable
    from enclave.indexes.index_backup import BackupCorrupt, BackupError, BackupIncompatible

    try:
        report = restore_index(settings, path, force=force, grace=grace)
    except (BackupCorrupt, BackupIncompatible) as exc:
        err.print(f"[red]{escape(str(exc))}[/red]; the index is unchanged", soft_wrap=True)
        raise typer.Exit(1) from None
    except (BackupError, IndexUnavailable, OSError) as exc:
        err.print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(2) from None
    m = report.manifest
    console.print(f"restored {escape(str(report.path))} (written {m.created_at} from {m.backend} generation "
                  f"{m.generation}): {m.points['chunks']} chunks, {sum(m.documents.values())} documents, "
                  f"{m.points['runs']} runs in {report.seconds:.1f} s", soft_wrap=True)
    console.print(f"live: {report.live} (was {report.previous or 'none'})" + (
        "" if report.previous is None else "; old generation " + (
            "dropped" if report.dropped else "still open in another process: `enclave reindex --drop-stale` later")),
        soft_wrap=True, markup=False)
    if m.pending:
        console.print(f"{len(m.pending)} document(s) were being written when the backup was taken: the next "
                      "`enclave ingest` redoes them", soft_wrap=True, markup=False)
    if report.outdated:
        said = ", ".join(f"{name} {stored!r} (settings {wanted!r})" for name, (stored, wanted) in report.outdated.items())
        console.print(f"[yellow]the backup was built with other chunker or BM25 settings: {escape(said)}; "
                      "`enclave ingest` asks for `enclave reindex` until they agree[/yellow]", soft_wrap=True)


@app.command()
def status(
    failures: bool = typer.Option(False, "--failures", help="List every failed and skipped file with its reason, "
                                  "and indexed ones with a note on what was not read."),
    source: str | None = typer.Option(None, "--source", "-s", help="Only this source."),
    config: Path | None = ConfigOption,
) -> None:
    """Per source: documents by status, chunks in the index, the last run, failures and skips by reason.
    Loads no model. Exits 2 if there is no index yet."""
    _quiet_libraries()
    settings = _settings(config)
    from enclave.contracts import DocumentStatus
    from enclave.flows.index_location import generations, open_index
    from enclave.indexes.index_backend import IndexUnavailable
    from enclave.indexes.sync_ledger import SyncLedger

    try:
        index = open_index(settings)
    except IndexUnavailable as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        ledger = SyncLedger(index)
        summaries = ledger.summary([s.name for s in settings.sources], only=source)
        embedder = (ledger.manifest() or {}).get("embedder", {}).get("model", "not recorded")
        generation = generations(settings).live()
    finally:
        index.close()
    rows = []
    for s in summaries:
        last = s.last_run
        last_run = "never" if last is None else (
            f"{last.finished_at} ({last.seconds:.0f} s: " + ", ".join(f"{n} {k}" for k, n in sorted(last.counts.items())) + ")")
        reasons = ", ".join(f"{n} {r}" for r, n in s.failures_by_reason().items()) or "-"
        skips = ", ".join(f"{n} {r}" for r, n in s.skips_by_reason().items()) or "-"
        counts = [s.by_status.get(status, 0) for status in
                  (DocumentStatus.INDEXED, DocumentStatus.SKIPPED, DocumentStatus.FAILED, DocumentStatus.PENDING)]
        rows.append((s.source, s.documents, *counts, s.chunks, last_run, reasons, skips))
    listed = [(kind, e) for kind in ("failed", "skipped", "noted")
              for e in sorted((e for s in summaries for e in getattr(s, kind)), key=lambda e: (e.source, e.reason, e.doc_id))]
    if console.is_terminal:
        table = Table("source", "documents", "indexed", "skipped", "failed", "pending", "chunks", "last run",
                      "failures by reason", "skips by reason", title=f"index {settings.index.collection} "
                      f"({settings.index.backend}, generation {generation}, embedder {embedder})")
        for row in rows:
            table.add_row(*map(str, row))
        console.print(table)
    else:  # logs and scripts: one whole line per source
        print(f"index {settings.index.collection} ({settings.index.backend}): generation {generation}, embedder {embedder}")
        for name, docs, indexed, skipped, failed, pending, chunks, last_run, reasons, skips in rows:
            print(f"{name}: {docs} documents ({indexed} indexed, {skipped} skipped, {failed} failed, {pending} pending), "
                  f"{chunks} chunks; last run: {last_run}; failures by reason: {reasons}; skips by reason: {skips}")
    if failures and console.is_terminal:
        detail = Table("", "source", "document", "reason", "detail", "since",
                       title=", ".join(f"{sum(k == kind for k, _ in listed)} {kind}" for kind in ("failed", "skipped", "noted")))
        for kind, e in listed:
            detail.add_row(kind, e.source, e.doc_id.split(":", 1)[-1], e.reason, (e.detail or "")[:200], e.updated_at)
        console.print(detail)
    elif failures:
        for kind, e in listed:
            said = f" ({e.detail[:200]})" if e.detail else ""
            print(f"{kind}: {e.source}: {e.doc_id.split(':', 1)[-1]}: {e.reason or '-'}{said}")


@app.command("eval")
def evaluate(
    dataset: Path = typer.Argument(
        ..., help="A BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/) or a QA file (.yaml/.json/.jsonl)."),
    modes: str = typer.Option("dense,sparse,hybrid", "--modes", help="Retrieval modes to compare, comma-separated."),
    documents: Path | None = typer.Option(None, "--documents", help="For a QA file: the folder of documents it asks about."),
    split: str = typer.Option("test", "--split", help="For a BEIR dataset: the qrels split (qrels/<split>.tsv)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where to write the report (default: <data_dir>/eval/<name>)."),
    answers: bool = typer.Option(
        False, "--answers", help="Also answer the questions and score the answers (a SQuAD or QA file)."),
    generators: str | None = typer.Option(
        None, "--generators", help="With --answers: 'route' and/or generator names, comma-separated "
        "(default: the route, then each of its generators alone)."),
    questions: int | None = typer.Option(
        None, "--questions", min=1, help="With --answers: answer a fixed sample of this many questions."),
    config: Path | None = ConfigOption,
) -> None:
    """Measure retrieval on a dataset: ingest it into a collection of its own (eval-<name>; a re-run
    embeds nothing), run every query in each mode and print nDCG@10, recall@10/100, MRR@10, hit@k
    and latency p50/p95. With --answers, also answer each question through the whole answer path, per
    generator, and print exact match, token F1, citation precision/recall, abstention precision/recall
    and time to first token. Writes evaluation.json, .md and .png, and a Prefect artifact. Exits 2 on
    a bad dataset or option."""
    _quiet_libraries()
    settings = _settings(config)
    from enclave.connectors.beir import DatasetError
    from enclave.flows.evaluate_flow import ROUTE, load_dataset
    from enclave.flows.evaluate_flow import evaluate as evaluate_flow
    from enclave.flows.progress import reporting_progress
    from enclave.indexes.chunk_store import MODES
    from enclave.indexes.index_backend import IndexUnavailable

    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MODES]
    if unknown or not chosen:
        err.print(f"[red]--modes: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODES)}[/red]")
        raise typer.Exit(2)
    reporter = _ProgressReporter()
    try:
        data = load_dataset(dataset, documents, split)  # a bad dataset fails here, before Prefect and the model start
        if answers and not data.golds:
            raise DatasetError(f"{dataset}: --answers needs gold answers (a SQuAD or QA file); a BEIR dataset has none")
        choices = [ROUTE, *(g.name for g in settings.route_generators())]
        labels = [g.strip() for g in generators.split(",") if g.strip()] if generators else None
        if labels is not None and (not labels or set(labels) - set(choices)):
            raise DatasetError(f"--generators: choose from {', '.join(choices)}")
        with reporter.bar, reporting_progress(reporter):
            report = evaluate_flow(str(dataset), modes=chosen, documents=str(documents) if documents else None,
                                   split=split, output_dir=str(output) if output else None,
                                   config_file=_config_file(config), answers=answers, generators=labels,
                                   max_questions=questions)
    except (DatasetError, IndexUnavailable, FileNotFoundError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    names = report.metric_names()
    if console.is_terminal:
        table = Table("mode", *names, "p50 ms", "p95 ms",
                      title=f"{report.dataset}: {report.judged_queries} queries, {report.documents} documents, "
                            f"{report.chunks} chunks")
        for result in report.results:
            table.add_row(result.mode, *(f"{result.metrics[n]:.4f}" for n in names),
                          f"{result.latency_p50_ms:.1f}", f"{result.latency_p95_ms:.1f}")
        console.print(table)
        if report.answer_results:
            console.print(_answer_table(report))
    else:  # logs: the Markdown table, whole lines however narrow the log
        print(report.to_markdown(), flush=True)
    console.print(f"ingest {report.ingest_seconds:.1f} s ({report.chunks_embedded} chunks embedded); "
                  f"whole evaluation {report.seconds:.1f} s", soft_wrap=True)
    folder = Path(output) if output else Path(settings.data_dir) / "eval" / report.dataset
    console.print(f"report: {folder / 'evaluation.json'}, {folder / 'evaluation.md'}, {folder / 'evaluation.png'}",
                  soft_wrap=True, markup=False)


def _answer_table(report: EvaluationReport) -> Table:
    from enclave.flows.evaluation_report import ANSWER_QUALITY

    first = report.answer_results[0]
    table = Table("generator", *(n.replace("_", " ") for n in ANSWER_QUALITY), "TTFT p50 s", "total p50 s",
                  "tokens in/out", "$ / answer",
                  title=f"answers: {first.answerable} answerable, {first.unanswerable} unanswerable questions")
    for result in report.answer_results:
        m = result.metrics
        table.add_row(result.generator, *(f"{m[n]:.3f}" for n in ANSWER_QUALITY), f"{m['first_token_p50_s']:.2f}",
                      f"{m['total_p50_s']:.2f}", f"{m['tokens_in']:.0f}/{m['tokens_out']:.0f}", f"{m['cost_usd']:.6f}")
    return table


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question."),
    group: list[str] = typer.Option(
        None, "--group", "-g", help="Ask as a member of these groups (default: server.auth.anonymous_groups)."),
    config: Path | None = ConfigOption,
) -> None:
    """Answer a question from the index, with citations."""
    _quiet_libraries()
    settings = _settings(config)
    from enclave.flows.answer_pipeline import AnswerPipeline
    from enclave.indexes.index_backend import IndexUnavailable
    from enclave.llms.fallback_router import AllGeneratorsFailed

    try:
        pipeline = AnswerPipeline.from_settings(settings)
    except IndexUnavailable as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        answer = pipeline.ask(question, group or settings.server.auth.anonymous_groups, principal=_principal())
    except AllGeneratorsFailed as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        pipeline.close()
    console.print(answer.text, markup=False, soft_wrap=True)
    if not answer.answered:
        console.print(f"\n[yellow]answered: no[/yellow] ({answer.abstention})", soft_wrap=True)
    if answer.citations:
        console.print("\n[bold]Sources[/bold]")
        for c in answer.citations:
            where = f" — {c.section}" if c.section else ""
            console.print(f"  [{c.number}] {c.title}{where}  ({c.uri})", markup=False, soft_wrap=True)
    route = " → ".join(a.generator + (f" (failed: {a.error})" if a.error else "") for a in answer.attempts)
    console.print(f"\n[dim]route: {route}; model: {answer.model}; tokens in/out: {answer.tokens_in}/{answer.tokens_out}; "
                  f"cost: ${answer.cost:.6f}; {answer.seconds:.2f} s[/dim]", soft_wrap=True)


def _since(value: str | None):  # -> datetime | None
    """``--since``: an ISO 8601 date or datetime (UTC if no zone), or ``7d`` / ``12h`` ago."""
    from datetime import UTC, datetime, timedelta

    if not value:
        return None
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        err.print(f"[red]--since {value!r}: give an ISO 8601 date (2026-11-01), a datetime, or 7d / 12h[/red]")
        raise typer.Exit(2) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def audit(
    since: str | None = typer.Option(None, "--since", help="From this date/datetime, or 7d / 12h ago."),
    principal: str | None = typer.Option(None, "--principal", help="Only calls made for this principal."),
    generator: str | None = typer.Option(None, "--generator", help="Only calls to this generator."),
    outcome: str | None = typer.Option(None, "--outcome", help="sent, failed or refused."),
    config: Path | None = ConfigOption,
) -> None:
    """List the audit records of external calls: who asked, which generator, which chunks left and
    which were withheld, redactions, tokens and cost. Refused calls sent nothing."""
    settings = _settings(config)
    from enclave.llms.audit_log import AuditLog

    filters = {k: v for k, v in {"principal": principal, "generator": generator, "outcome": outcome}.items() if v}
    records = list(AuditLog(settings.audit_path).records(since=_since(since), **filters))
    if console.is_terminal:
        table = Table("time", "principal", "generator", "model", "outcome", "sent", "withheld", "redactions",
                      "tokens in/out", "cost $", title=f"{len(records)} external calls")
        for r in records:
            table.add_row(r.time, r.principal, r.generator, r.model, r.outcome, str(len(r.chunks_sent)),
                          str(len(r.chunks_withheld)), ", ".join(f"{k} {n}" for k, n in sorted(r.redactions.items())),
                          f"{r.tokens_in}/{r.tokens_out}", f"{r.cost:.6f}")
        console.print(table)
    else:  # logs and pipes: one JSON object per line, every field
        import json
        from dataclasses import asdict

        for r in records:
            print(json.dumps(asdict(r), sort_keys=True))


@app.command()
def costs(
    since: str | None = typer.Option(None, "--since", help="From this date/datetime, or 7d / 12h ago."),
    compare_with: str | None = typer.Option(None, "--compare-with", help="An external model to price all tokens on."),
    config: Path | None = ConfigOption,
) -> None:
    """Spend by generator (answers, tokens, seconds, dollars) and what the same tokens would have cost
    on an external model (--compare-with, default costs.compare_with)."""
    settings = _settings(config)
    from collections import defaultdict

    from enclave.llms.cost_table import CostTable, TokenPrice
    from enclave.llms.usage_log import UsageLog

    prices = CostTable({m: TokenPrice(p.input, p.output) for m, p in settings.costs.models.items()})
    model = compare_with or settings.costs.compare_with
    if model and model not in prices.models:
        err.print(f"[red]--compare-with {model!r} has no price in costs.models "
                  f"(priced: {', '.join(sorted(prices.models)) or 'none'})[/red]")
        raise typer.Exit(2)
    rows: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0, 0.0])
    for r in UsageLog(settings.usage_path).records(since=_since(since)):
        row = rows[r.generator]
        row[0] += 1
        row[1] += r.tokens_in
        row[2] += r.tokens_out
        row[3] += r.seconds
        row[4] += r.cost
        row[5] += prices.tokens_cost(model, r.tokens_in, r.tokens_out) if model else 0.0
    header = ["generator", "answers", "tokens in", "tokens out", "seconds", "cost $"] + ([f"on {model} $"] if model else [])
    lines = [[name, f"{a:.0f}", f"{i:.0f}", f"{o:.0f}", f"{sec:.1f}", f"{c:.6f}"] + ([f"{alt:.6f}"] if model else [])
             for name, (a, i, o, sec, c, alt) in sorted(rows.items())]
    totals = [sum(v[k] for v in rows.values()) for k in range(6)]
    lines.append(["total", f"{totals[0]:.0f}", f"{totals[1]:.0f}", f"{totals[2]:.0f}", f"{totals[3]:.1f}",
                  f"{totals[4]:.6f}"] + ([f"{totals[5]:.6f}"] if model else []))
    if console.is_terminal:
        table = Table(*header, title="spend by generator")
        for line in lines:
            table.add_row(*line)
        console.print(table)
    else:
        print("\t".join(header))
        for line in lines:
            print("\t".join(line))


def _principal() -> str:
    """Who runs the CLI, for the audit and usage logs: ``$ENCLAVE_PRINCIPAL`` or the login name."""
    import getpass

    return os.environ.get("ENCLAVE_PRINCIPAL") or getpass.getuser()


keys_app = typer.Typer(no_args_is_help=True, help="API keys for the chat endpoint (server.auth.api_keys).")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    principal: str = typer.Option(..., "--principal", "-p", help="Who the key is for (audit and usage logs)."),
    group: list[str] = typer.Option(..., "--group", "-g", help="A group whose documents the key may see (repeat)."),
) -> None:
    """Print a new API key, once, and the server.auth.api_keys entry to paste into enclave.yaml: only
    the key's SHA-256 is stored, so a lost key cannot be recovered, only replaced."""
    import yaml

    from enclave.server.authentication import api_key_hash, new_api_key

    key = new_api_key()
    entry = {"principal": principal, "groups": list(dict.fromkeys(group)), "sha256": api_key_hash(key)}
    typer.echo(f"API key for {principal} (shown once; send it as 'Authorization: Bearer <key>'):\n\n  {key}\n")
    typer.echo("Add this entry under server.auth.api_keys in enclave.yaml:\n")
    typer.echo(yaml.safe_dump([entry], sort_keys=False, default_flow_style=None).rstrip())


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Bind address (default: server.host)."),
    port: int | None = typer.Option(None, help="Port (default: server.port)."),
    workers: int = typer.Option(1, min=1, help="Worker processes (as uvicorn --workers), each with its own model, rate "
                                "limits and circuit breakers; more than 1 needs index.backend server."),
    config: Path | None = ConfigOption,
) -> None:
    """Start the chat endpoint (OpenAI-compatible /v1/chat/completions, /v1/ask). With the embedded
    index, this process owns it: `enclave ingest` and scheduled runs write through it meanwhile."""
    _quiet_libraries()
    settings = _settings(config)
    if workers > 1 and settings.index.backend != "server":
        err.print("[red]--workers needs index.backend server (a Qdrant server): an embedded index belongs to one "
                  "process[/red]")
        raise typer.Exit(2)
    import uvicorn

    from enclave.flows.index_location import open_index
    from enclave.flows.index_manifest import check_manifest
    from enclave.indexes.index_backend import IndexMissing, IndexUnavailable
    from enclave.server.app import create_app

    try:  # refuse an index built with another embedder before the model loads
        index = open_index(settings)
        try:
            check_manifest(index, settings, answering=True)
        finally:
            index.close()
    except IndexMissing:
        pass  # the first ingest (through this server) creates it
    except IndexUnavailable as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    host, port = host or settings.server.host, port or settings.server.port
    if workers > 1:  # each worker process loads the same settings file (uvicorn starts them afresh)
        if config is not None:
            os.environ["ENCLAVE_CONFIG"] = str(config.resolve())
        uvicorn.run("enclave.server.app:app_from_config", factory=True, workers=workers, host=host, port=port)
        return
    # other processes here (enclave ingest, scheduled flow runs) reach the embedded index through this one
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    uvicorn.run(create_app(settings, index_url=f"http://{local}:{port}"), host=host, port=port)


@app.command()
def mcp(config: Path | None = ConfigOption) -> None:
    """Serve MCP (Model Context Protocol) on stdin/stdout, for desktop agents (Claude Desktop, IDEs).
    It runs as the API key in ENCLAVE_API_KEY, or as server.mcp.principal with server.mcp.groups, and
    sees only those groups' documents. Logs go to stderr; stdout carries the protocol alone."""
    _quiet_libraries()
    settings = _settings(config)
    from enclave.server.authentication import AuthError
    from enclave.server.mcp_server import McpUnavailable, run_stdio, stdio_principal

    try:
        principal = stdio_principal(settings)
    except (McpUnavailable, AuthError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    err.print(f"enclave mcp: serving on stdio as {principal.name} (groups: {', '.join(principal.groups)})")
    run_stdio(settings, principal)


def main() -> None:  # pragma: no cover - console script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
