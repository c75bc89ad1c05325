"""Keeps a running server on the live index generation while ``enclave reindex`` switches it."""

from __future__ import annotations

import logging
import threading

from fastapi import FastAPI

from enclave.flows.answer_pipeline import AnswerPipeline
from enclave.flows.index_location import generations, open_index
from enclave.flows.index_manifest import settings_for_index
from enclave.indexes.edge_index import EdgeIndex
from enclave.indexes.index_backend import IndexUnavailable
from enclave.indexes.remote_index import IndexOwner
from enclave.indexes.sync_ledger import SyncLedger
from enclave.settings import Settings

logger = logging.getLogger(__name__)


class IndexFollower:
    """Moves ``app.state.pipeline`` to the live generation when a re-index switches it.

    Usage::

        app.state.pipeline = AnswerPipeline.from_settings(settings)
        follower = IndexFollower(app, settings, index_url="http://127.0.0.1:8000")
        follower.start()        # in the app's lifespan: it now owns app.state.pipeline
        ...
        follower.stop()         # closes the pipeline in use and any it has not closed yet

    A thread asks every ``interval`` seconds which generation is live (a file read on Edge, one alias
    lookup on a server). When it changed, the thread opens the new generation, builds an
    [AnswerPipeline][enclave.flows.AnswerPipeline] with the embedder and BM25 settings of that
    generation's manifest (so a re-index to a new embedder needs no restart), loads the model, and only
    then swaps it in: requests keep using the old pipeline until that moment, and no request waits for
    the load. With an embedded index the owner record moves to the new folder (``enclave ingest`` then
    writes through this process into the new generation), and the old pipeline and its shard are closed
    ``linger`` seconds later, so answers already retrieving finish and ``enclave reindex`` can drop the
    old folder. A generation that cannot be opened yet (IndexUnavailable) is tried again next tick.
    """

    def __init__(self, app: FastAPI, settings: Settings, index_url: str | None = None, interval: float = 1.0,
                 linger: float = 2.0) -> None:
        self.app = app
        self.settings = settings
        self.index_url = index_url
        self.interval = interval
        self.linger = linger
        self._generations = generations(settings)
        self.generation = app.state.index_generation = self._generations.live()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self._retiring: list[tuple[AnswerPipeline, object]] = []
        # what to close, pipeline and (for the ones built here over an index opened here) its index
        self._opened: list[tuple[AnswerPipeline, object]] = [(app.state.pipeline, None)]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="index-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following; close the pipelines and indexes this follower opened (the current one included)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for timer in self._closers:
            timer.cancel()
        with self._lock:
            left, self._retiring, self._opened = self._retiring + self._opened, [], []
        for pipeline, index in left:
            _close(pipeline, index)

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                live = self._generations.live()
                if live != self.generation:
                    self._move_to(live)
            except IndexUnavailable as exc:  # not openable yet (e.g. still held): the next tick tries again
                logger.info("live index generation not opened yet: %s", exc)
            except Exception:  # noqa: BLE001 - the follower must outlive one bad tick; the old pipeline keeps serving
                logger.exception("could not move to the live index generation")

    def _move_to(self, generation: str) -> None:
        index = open_index(self.settings)
        try:
            adopted = settings_for_index(self.settings, SyncLedger(index).manifest())
            pipeline = AnswerPipeline.from_settings(adopted, index=index)
            _ = pipeline.retriever.embedder.model  # load the model before the swap, not in a request
        except BaseException:
            index.close()
            raise
        state = self.app.state
        old_owner, old_index, old_pipeline = state.index_owner, state.owned_index, state.pipeline
        if self.index_url and isinstance(index, EdgeIndex):
            state.owned_index = index
            state.index_owner = IndexOwner.claim(index.path, self.index_url)
        state.pipeline = pipeline
        self.generation = state.index_generation = generation
        logger.warning("now answering from index generation %s", generation)
        if old_owner is not None and isinstance(old_index, EdgeIndex):
            old_owner.release(old_index.path)
        with self._lock:
            retired = [pair for pair in self._opened if pair[0] is old_pipeline]
            self._opened = [pair for pair in self._opened if pair[0] is not old_pipeline] + [(pipeline, index)]
            self._retiring += retired
        for pair in retired:
            timer = threading.Timer(self.linger, self._retire, (pair,))
            timer.daemon = True
            timer.start()
            self._closers.append(timer)

    def _retire(self, pair: tuple[AnswerPipeline, object]) -> None:
        with self._lock:
            if pair not in self._retiring:
                return  # stop() closed it already
            self._retiring.remove(pair)
        _close(*pair)

def _close(pipeline: AnswerPipeline, index: object) -> None:
    pipeline.close()
    if index is not None:
        index.close()
