"""File output that is never half-written, and sets of files published all at once.

One file: written under a temporary name beside it and renamed into place on success.

A set of files (predict's four outputs, a cohort and its ground truth): every file is
written under a temporary name first. Publishing then (1) records the pairs in a journal
beside the first file, (2) deletes every old file of the set, (3) renames the new files into
place, and (4) deletes the journal, with SIGTERM and SIGINT held back for those few system
calls. A reader therefore sees the old set, part of the old set, part of the new set or
the new set, never a mix of two runs. A run killed while publishing (SIGKILL, power loss)
leaves the journal; the next writer of the same files finishes the publication first.

Temporary names carry the writer's process id (``.<name>.<pid>.<random>.tmp``): a later
run removes those whose process is gone, and SIGTERM (turned into an exception by the CLI)
removes a run's own. Fault points for tests: ``PRECISION_PAIN_FAILPOINT=<point>:<n>[:TERM]``
kills the process with SIGKILL (or sends it SIGTERM) the n-th time it reaches ``<point>``
(``publish.journal``, ``publish.unlink``, ``publish.rename``, ``write.chunk``; in a Dask
worker, ``predict.partition``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: publishing files needs no pandas import
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
_FAILPOINT_ENV = "PRECISION_PAIN_FAILPOINT"
_failpoint_hits: dict[str, int] = {}


class OutputError(OSError):
    """An output that cannot be written; the message names it and the fix."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    with file_set([path]) as (tmp,):
        yield tmp


@contextmanager
def file_set(paths: Sequence[str | Path]) -> Iterator[list[Path]]:
    """Yield one temporary path per output; publish them together only on success.

    Fails at once, before any work, when an output cannot be written.
    """
    finals = [Path(p) for p in paths]
    for final in finals:
        recover(final)
    tmps: list[Path] = []
    try:
        for final in finals:
            tmps.append(_new_temp(final))
        yield tmps
        _publish(list(zip(tmps, finals)))
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


def check_writable(paths: Sequence[str | Path]) -> None:
    """Refuse, before any work starts, outputs that cannot be created; leaves nothing behind."""
    for final in map(Path, paths):
        created = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
        try:
            _new_temp(final).unlink()
        finally:
            for folder in created:  # innermost first
                try:
                    folder.rmdir()
                except OSError:
                    pass


def _new_temp(final: Path) -> Path:
    """An empty temporary file beside ``final`` (folders created); errors name ``final``."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp",
                                    dir=final.parent)
    except OSError as exc:
        raise OutputError(
            f"{final}: cannot write here ({exc.strerror or exc}); choose a folder you can "
            "write to (--out)") from None
    os.close(fd)
    return Path(name)


def _publish(pairs: list[tuple[Path, Path]]) -> None:
    """Journal, delete the old files, rename the new ones, drop the journal."""
    journal = _journal(pairs[0][1])
    for tmp, _ in pairs:
        tmp.chmod(0o666 & ~_umask())  # mkstemp creates 0600; give a plain open()'s mode
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        if len(pairs) > 1:
            _write_journal(journal, pairs)
            failpoint("publish.journal")
        _commit(pairs)
        journal.unlink(missing_ok=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _commit(pairs: list[tuple[Path, Path]]) -> None:
    if len(pairs) > 1:
        for tmp, final in pairs:
            if tmp.exists():
                final.unlink(missing_ok=True)
                failpoint("publish.unlink")
    for tmp, final in pairs:
        if tmp.exists():
            os.replace(tmp, final)
            failpoint("publish.rename")


def _journal(first: Path) -> Path:
    return first.with_name(f".{first.name}.publish.json")


def _write_journal(journal: Path, pairs: list[tuple[Path, Path]]) -> None:
    data = json.dumps([[str(t), str(f)] for t, f in pairs])
    tmp = journal.with_name(f"{journal.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, journal)


def recover(final: str | Path) -> None:
    """Finish a publication a killed run left behind; remove temporaries of dead runs."""
    final = Path(final)
    journal = _journal(final)
    if journal.exists():
        try:
            pairs = [(Path(t), Path(f)) for t, f in json.loads(journal.read_text("utf-8"))]
        except (OSError, ValueError):
            pairs = []
        _commit(pairs)
        journal.unlink(missing_ok=True)
    if final.parent.is_dir():
        for stale in final.parent.glob(f".{glob_escape(final.name)}.*.tmp"):
            if _alive(stale.name[len(final.name) + 2:].split(".", 1)[0]):
                continue
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _alive(pid_text: str) -> bool:
    """Whether a process id (from a temporary name) is running; unknown names count as alive."""
    if not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def failpoint(point: str) -> None:
    """Kill this process at ``point`` when the environment asks to (fault-injection tests)."""
    wanted = os.environ.get(_FAILPOINT_ENV)
    if not wanted or not wanted.startswith(point + ":"):
        return
    count, _, how = wanted[len(point) + 1:].partition(":")
    _failpoint_hits[point] = _failpoint_hits.get(point, 0) + 1
    if _failpoint_hits[point] == int(count):
        os.kill(os.getpid(), signal.SIGTERM if how == "TERM" else signal.SIGKILL)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; swap it in for ``path`` only on success."""
    path = Path(path)
    recover(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                    dir=path.parent))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror or exc}); choose a "
                          "folder you can write to") from None
    try:
        yield tmp
        tmp.chmod(0o777 & ~_umask())  # mkdtemp creates 0700
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``md5`` is the hash DVC records)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def table_format(path: str | Path) -> str:
    """'csv' or 'parquet' from the file suffix; anything else is an error."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: unsupported table format {suffix!r}; use .csv or .parquet")
    return "csv" if suffix == ".csv" else "parquet"


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame as CSV or Parquet (by suffix), atomically."""
    write_tables({Path(path): frame})
    return Path(path)


def write_tables(frames: dict[Path, pd.DataFrame]) -> None:
    """Write several frames (CSV or Parquet by suffix) and publish them as one set."""
    formats = [table_format(path) for path in frames]
    with file_set(list(frames)) as tmps:
        for frame, tmp, fmt in zip(frames.values(), tmps, formats):
            if fmt == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)


def write_json(data: Any, path: str | Path) -> Path:
    """Write indented, key-sorted JSON atomically (stable bytes for DVC)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return Path(path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
