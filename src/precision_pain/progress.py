"""Progress bars a person sees on a terminal, and that stay quiet in CI logs."""

from __future__ import annotations

import os
import sys
from typing import Any


def progress_enabled() -> bool:
    """True on an interactive terminal outside CI (PRECISION_PAIN_PROGRESS=1/0 forces it)."""
    forced = os.environ.get("PRECISION_PAIN_PROGRESS")
    if forced is not None:
        return forced not in {"0", "false", "no", ""}
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress_bar(total: int | None, desc: str, unit: str = "it") -> Any:
    """A tqdm bar (a context manager) that is disabled when progress is not wanted."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress_enabled(),
                dynamic_ncols=True, leave=False)
