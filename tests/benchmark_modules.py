"""What tests of the benchmark scripts share: loading a script from benchmarks/ as a module,
and the check every synthetic generator's truth must pass."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from precision_pain.registry import TREATMENTS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(script: str, name: str | None = None) -> ModuleType:
    """benchmarks/<script>.py as the module ``name`` (default: the script's), registered in
    sys.modules (dataclasses look their module up there); benchmarks/ is on sys.path while it
    loads, since the scripts import one another."""
    spec = importlib.util.spec_from_file_location(name or script, BENCHMARKS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def assert_truth_covers_eligible(prepared: pd.DataFrame, aligned: pd.DataFrame,
                                 simulated: tuple[str, ...] | list[str]) -> None:
    """Each patient has one truth row per simulated treatment eligible for their condition,
    and no other eligible row; its probabilities lie strictly inside (0, 1)."""
    eligible = aligned[aligned["eligible"]]
    for condition, rows in prepared.groupby("condition"):
        wanted = {t for t in simulated if TREATMENTS[t].eligible(condition)}
        got = eligible[eligible["patient_id"].isin(rows["patient_id"])]
        assert set(got["treatment"]) == wanted, condition
        assert len(got) == len(rows) * len(wanted)
    for column in ("p_response", "p_adverse_event"):
        assert np.all((eligible[column] > 0) & (eligible[column] < 1)), column
