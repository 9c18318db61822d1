"""Where the stages compute: this process (``local``) or a Dask cluster (``dask``).

The pipeline's cores take an *engine* and call only two of its methods:

- ``engine.map(fn, items, *shared)``: ``[fn(item, *shared) for item in items]``, in order;
- ``engine.imap(fn, items, *shared)``: the same as a stream (a partition's result is handed
  on while later partitions compute, so memory stays bounded by the partitions in flight).

:class:`LocalEngine` runs them in this process (the pooled learner's independent boosters
on threads, ``engine.local_threads``; the results are those of a sequential loop). A
:class:`DaskEngine` runs each call of ``fn`` as one Dask task: ``shared`` arguments (the
training splits, a model bundle) are sent to every worker once (``Client.scatter``), items
one partition at a time, and at most ``partitions_in_flight`` tasks per worker thread are
outstanding. The functions mapped are the same core functions the local engine calls; the
client (the process ``dvc repro`` starts) reads inputs, writes every output and so keeps
them all-or-nothing (:mod:`precision_pain.io`). Only aggregates cross the network back for
training and evaluation; predict's rows come back to the one writer.

A worker that dies mid-task (killed, out of memory) is replaced by Dask and its task re-run
on another worker; a task whose workers die ``distributed.scheduler.allowed-failures``
times (3 by default) fails the run with :class:`EngineError`, and nothing is written.

Results are the same on both engines: every random choice is seeded from params.yaml and
each task is a deterministic function of its inputs (tests/test_dask_engine.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from precision_pain.config import EngineParams
from precision_pain.progress import progress_bar, track

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class EngineError(RuntimeError):
    """The cluster could not run a task; the message says which and what to do."""


class LocalEngine:
    """Every task in this process (the default). Tasks run one after another, except in a
    ``map(..., threads=True)``: tasks whose work is native code that releases the GIL and
    runs on one thread of its own (the pooled learner's boosters, each fitted with
    ``nthread`` 1) then run on up to ``max_threads`` threads at once. Each task is the same
    deterministic function of its inputs either way, so the results are identical."""

    name = "local"
    workers = 1

    def __init__(self, max_threads: int | None = None):
        self.max_threads = max(1, max_threads or os.cpu_count() or 1)

    def map(self, fn: Callable[..., R], items: Iterable[T], *shared: Any, desc: str = "tasks",
            unit: str = "task", threads: bool = False) -> list[R]:
        """``[fn(item, *shared) for item in items]``; with ``threads``, concurrently."""
        items = list(items)
        n_threads = min(len(items), self.max_threads) if threads else 1
        if n_threads <= 1:
            return list(self.imap(fn, items, *shared, desc=desc, unit=unit))
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_threads) as pool, progress_bar(len(items), desc, unit) as bar:
            futures = [pool.submit(fn, item, *shared) for item in items]
            results = []
            for future in futures:
                results.append(future.result())
                bar.update()
        return results

    def imap(self, fn: Callable[..., R], items: Iterable[T], *shared: Any, desc: str = "tasks",
             unit: str = "task") -> Iterator[R]:
        """``fn(item, *shared)`` for each item, lazily, in order."""
        for item in track(items, desc, unit=unit):
            yield fn(item, *shared)

    def distributes(self, n_rows: int) -> bool:
        """Whether a training set of ``n_rows`` is spread over workers (never, here)."""
        return False

    def train_booster(self, params: dict[str, Any], X: Any, y: Any, rounds: int,
                      feature_names: Sequence[str]) -> Any:
        """An xgboost booster trained in this process."""
        return train_booster_local(params, X, y, rounds, feature_names)


LOCAL = LocalEngine()


def train_booster_local(params: dict[str, Any], X: Any, y: Any, rounds: int,
                        feature_names: Sequence[str]) -> Any:
    """``xgboost.train`` on one in-memory matrix."""
    import xgboost as xgb

    matrix = xgb.DMatrix(X, label=y, feature_names=list(feature_names))
    return xgb.train(params, matrix, num_boost_round=int(rounds))


class DaskEngine:
    """Tasks on a Dask cluster through ``client``; ``settings`` bound the work in flight."""

    name = "dask"

    def __init__(self, client: Any, settings: EngineParams):
        self.client, self.settings = client, settings

    @property
    def workers(self) -> int:
        """Worker threads in the cluster now."""
        return max(1, sum(self.client.nthreads().values()))

    def map(self, fn: Callable[..., R], items: Iterable[T], *shared: Any, desc: str = "tasks",
            unit: str = "task", threads: bool = False) -> list[R]:
        """``[fn(item, *shared) for item in items]``, every item a task, all in flight at once
        (``threads`` is the local engine's; here every task runs on a worker anyway).

        ``shared`` is sent once to every worker (a copy on each, so it survives a worker's
        death); each task carries its own item, so a task can be re-run elsewhere."""
        refs = [self.client.scatter(s, broadcast=True, hash=False) for s in shared]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
            futures = [self.client.submit(fn, item, *refs, pure=False, key=_key(fn, i))
                       for i, item in enumerate(items)]
        with progress_bar(len(futures), desc, unit) as bar:
            return [self._result(f, i, desc, bar) for i, f in enumerate(futures)]

    def imap(self, fn: Callable[..., R], items: Iterable[T], *shared: Any, desc: str = "tasks",
             unit: str = "task") -> Iterator[R]:
        """``fn(item, *shared)`` per item as a stream, in order, at most
        ``partitions_in_flight`` tasks per worker thread ahead.

        Each task carries its partition and the shared arguments itself (not scattered data,
        which dies with the worker holding it), so the scheduler can re-run a task whose
        worker died on any other worker."""
        window: deque[Any] = deque()
        done = 0
        try:
            with progress_bar(None, desc, unit) as bar, warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
                for i, item in enumerate(items):
                    window.append(self.client.submit(fn, item, *shared, pure=False,
                                                     key=_key(fn, i)))
                    while len(window) >= self.settings.partitions_in_flight * self.workers:
                        yield self._result(window.popleft(), done, desc, bar)
                        done += 1
                while window:
                    yield self._result(window.popleft(), done, desc, bar)
                    done += 1
        finally:
            for future in window:  # an error or an abandoned stream: stop what is left
                future.cancel()

    def _result(self, future: Any, index: int, desc: str, bar: Any) -> Any:
        from distributed.scheduler import KilledWorker

        try:
            result = future.result()
        except KilledWorker as exc:
            raise EngineError(
                f"{desc}: partition {index + 1} failed: every Dask worker that ran it died "
                f"(killed, or out of memory), as many times as the scheduler allows "
                f"(distributed.scheduler.allowed-failures): {exc}. Nothing was written. Fix: "
                "give workers more memory (engine.memory_limit, or your cluster's worker "
                "settings), use smaller partitions (engine.partition_rows, "
                "predict.chunk_size), or read the workers' logs") from None
        bar.update()
        return result

    def distributes(self, n_rows: int) -> bool:
        """Whether a training set of ``n_rows`` trains with xgboost.dask over every worker
        (more rows than ``engine.distributed_training_rows``)."""
        limit = self.settings.distributed_training_rows
        return limit is not None and n_rows > limit

    def train_booster(self, params: dict[str, Any], X: Any, y: Any, rounds: int,
                      feature_names: Sequence[str]) -> Any:
        """A booster trained with xgboost.dask over every worker above
        ``distributed_training_rows`` training rows; below, in this process."""
        if not self.distributes(len(X)):
            return train_booster_local(params, X, y, rounds, feature_names)
        return train_booster_dask(self.client, params, X, y, rounds, feature_names,
                                  self.workers)


def train_booster_dask(client: Any, params: dict[str, Any], X: Any, y: Any, rounds: int,
                       feature_names: Sequence[str], partitions: int) -> Any:
    """``xgboost.dask.train``: the rows split into ``partitions`` pieces over the workers,
    histograms merged across them every round (xgboost's own collective)."""
    import dask.array as da
    import numpy as np
    from xgboost import dask as dxgb

    X, y = np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.float32)
    rows = -(-len(X) // partitions)
    log.info("training on %d rows with xgboost.dask over %d workers", len(X), partitions)
    dtrain = dxgb.DaskDMatrix(client, da.from_array(X, chunks=(rows, X.shape[1])),
                                  da.from_array(y, chunks=rows), feature_names=list(feature_names))
    return dxgb.train(client, params, dtrain, num_boost_round=int(rounds),
                          verbose_eval=False)["booster"]


def numbered(chunks: Iterable[Any]) -> Iterator[tuple[int, Any]]:
    """``(offset, chunk)`` pairs: each partition with the number of rows before it, so that
    a partition's errors name rows counted from the start of the file."""
    offset = 0
    for chunk in chunks:
        yield offset, chunk
        offset += len(chunk)


def _key(fn: Callable[..., Any], index: int) -> str:
    """A task name the dashboard shows: the function and the partition."""
    import uuid

    return f"{getattr(fn, '__name__', 'task')}-{index}-{uuid.uuid4().hex[:8]}"


@contextmanager
def open_engine(settings: EngineParams) -> Iterator[LocalEngine | DaskEngine]:
    """The engine params.yaml asks for; a LocalCluster it starts is stopped on the way out."""
    if settings.type == "local":
        yield LocalEngine(settings.local_threads)
        return
    with _client(settings) as client:
        link = client.dashboard_link if _has_dashboard(client) else None
        log.info("Dask engine: %s with %d workers (%d threads)%s", client.scheduler.address,
                 len(client.nthreads()), sum(client.nthreads().values()),
                 f"; dashboard {link}" if link else "")
        yield DaskEngine(client, settings)


@contextmanager
def _client(settings: EngineParams) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if settings.scheduler is None:
        with LocalCluster(n_workers=settings.n_workers,
                          threads_per_worker=settings.threads_per_worker,
                          processes=True, host="127.0.0.1",
                          memory_limit=settings.memory_limit,
                          dashboard_address=settings.dashboard_address,
                          silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(settings.scheduler, timeout=settings.connect_timeout)
    except OSError as exc:
        raise EngineError(
            f"engine.scheduler = {settings.scheduler}: no Dask scheduler answers there ({exc}). "
            "Fix: start one (`dask scheduler`, then `dask worker <address>`) or set "
            "engine.scheduler to null for a LocalCluster") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=settings.connect_timeout)
        except TimeoutError:
            raise EngineError(
                f"engine.scheduler = {settings.scheduler}: no worker joined within "
                f"{settings.connect_timeout:g} s (engine.connect_timeout). Fix: start workers "
                f"with `dask worker {settings.scheduler}`") from None
        yield client


def _has_dashboard(client: Any) -> bool:
    try:
        return bool(client.dashboard_link)
    except Exception:  # no bokeh or no dashboard service: the link is not available
        return False


# ----------------------------------------------------------------------- model bundles

@dataclass(frozen=True)
class BundleFiles:
    """A saved bundle's files as bytes, shipped to workers that may not share a disk."""

    sha256: str
    files: dict[str, bytes]

    @classmethod
    def read(cls, directory: str | Path, sha256: str) -> BundleFiles:
        """Every file of a bundle folder (already verified by the client against ``sha256``)."""
        directory = Path(directory)
        files = {p.relative_to(directory).as_posix(): p.read_bytes()
                 for p in sorted(directory.rglob("*")) if p.is_file()}
        return cls(sha256, files)


_loaded: dict[str, Any] = {}
_loading = threading.Lock()


def worker_bundle(source: Any) -> Any:
    """The bundle a task uses: ``source`` itself, or :class:`BundleFiles` loaded once per
    worker process through the same verified path as everywhere (manifest SHA-256 pinned,
    skops allowlist)."""
    if not isinstance(source, BundleFiles):
        return source
    with _loading:
        if source.sha256 not in _loaded:
            _loaded[source.sha256] = _load_files(source)
        return _loaded[source.sha256]


def _load_files(source: BundleFiles) -> Any:
    from precision_pain.models.bundle import load_bundle

    folder = Path(tempfile.mkdtemp(prefix="precision-pain-bundle-"))
    try:
        for relative, data in source.files.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        bundle = load_bundle(folder, expected_sha256=source.sha256)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log.info("worker %d loaded model bundle %s", os.getpid(), source.sha256[:12])
    return bundle
