"""Progress bars a person sees on a terminal, and that stay quiet in CI logs and notebooks.

Bars are on when stderr is a terminal and ``CI`` is unset; ``PRECISION_PAIN_PROGRESS=1``
(or ``0``) forces them on (or off). They write to stderr, so piped output stays clean.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    """True on an interactive terminal outside CI (PRECISION_PAIN_PROGRESS=1/0 forces it)."""
    forced = os.environ.get("PRECISION_PAIN_PROGRESS")
    if forced is not None:
        return forced.strip().lower() not in {"0", "false", "no", "off", ""}
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress_bar(total: int | None, desc: str, unit: str = "it") -> Any:
    """A tqdm bar (a context manager) that is disabled when progress is not wanted."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress_enabled(),
                dynamic_ncols=True, leave=False, file=sys.stderr)


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it"
          ) -> Iterator[T]:
    """Yield ``items`` while a bar counts them (e.g. chunks of a large cohort, bootstraps)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(total, desc, unit) as bar:
        for item in items:
            yield item
            bar.update()
