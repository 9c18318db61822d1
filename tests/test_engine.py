"""The engine setting and the partitioned prepare core (no cluster needed)."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from precision_pain.config import EngineParams, ParamsError, load_params
from precision_pain.data.contract import ContractError
from precision_pain.data.prepare import prepare_cohort, prepare_partitions
from precision_pain.engine import LOCAL, EngineError, LocalEngine, numbered, open_engine

ROOT = pytest.importorskip("pathlib").Path(__file__).resolve().parents[1]


def _chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i:i + size].reset_index(drop=True) for i in range(0, len(frame), size)]


def test_default_engine_is_local(params):
    assert params.engine.type == "local"
    with open_engine(params.engine) as engine:
        assert isinstance(engine, LocalEngine) and engine.name == LOCAL.name
        assert engine.max_threads == (params.engine.local_threads or os.cpu_count())


def test_threaded_local_map_keeps_order_and_errors():
    def slow_square(x: int, offset: int) -> int:
        time.sleep(0.01 * max(0, 5 - x))  # later items finish first
        if x == 99:
            raise ValueError("task 99 failed")
        return x * x + offset

    engine = LocalEngine(max_threads=3)
    assert engine.map(slow_square, range(5), 1, threads=True) == [1, 2, 5, 10, 17]
    assert engine.map(slow_square, range(5), 1) == [1, 2, 5, 10, 17]
    with pytest.raises(ValueError, match="task 99"):
        engine.map(slow_square, [1, 99, 2], 0, threads=True)


def test_pooled_boosters_fitted_on_threads_are_the_sequential_ones(small_synthetic):
    """Each booster is single-threaded and seeded, so fitting the candidates concurrently
    gives byte-identical models (same params, same numbers on any core count)."""
    from precision_pain.data.prepare import prepare_cohort
    from precision_pain.models.pooled import Candidate, fit_candidates

    episodes = prepare_cohort(small_synthetic.cohort.iloc[:1500], "c", 0.3)
    treatments = sorted(episodes["treatment"].astype(str).unique())
    settings = {"max_depth": 3, "learning_rate": 0.1}
    candidates = [Candidate("response", 30, 1, settings), Candidate("adverse_event", 20, 2,
                                                                     settings),
                  Candidate("response", 25, 3, {**settings, "max_depth": 2})]
    one = fit_candidates(candidates, episodes, treatments, LocalEngine(max_threads=1))
    three = fit_candidates(candidates, episodes, treatments, LocalEngine(max_threads=3))
    for a, b in zip(one, three):
        assert a.booster_.save_raw("ubj") == b.booster_.save_raw("ubj")


def test_unknown_engine_is_refused_with_its_key(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("  type: local\n", "  type: spark\n", 1)
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=r"engine\.type"):
        load_params(tmp_path / "params.yaml")


def test_a_scheduler_nobody_runs_is_a_clear_error():
    from servers import free_port

    settings = EngineParams(type="dask", scheduler=f"tcp://127.0.0.1:{free_port()}",
                            connect_timeout=2)
    with pytest.raises(EngineError, match="no Dask scheduler answers there.*dask scheduler"):
        with open_engine(settings):
            pass


def test_numbered_partitions_carry_their_offsets():
    parts = [pd.DataFrame({"a": range(n)}) for n in (3, 2, 4)]
    assert [offset for offset, _ in numbered(parts)] == [0, 3, 5]


def test_partitioned_prepare_is_the_whole_table_prepare(small_synthetic):
    cohort = small_synthetic.cohort.iloc[:900].reset_index(drop=True)
    whole = prepare_cohort(cohort, "cohort.csv", 0.3)
    parts = prepare_partitions(_chunks(cohort, 250), "cohort.csv", 0.3, LOCAL)
    pd.testing.assert_frame_equal(parts, whole.reset_index(drop=True))


def test_partitioned_prepare_reports_every_partition_problem_at_once(small_synthetic):
    """Bad cells in two partitions: one problem per column, rows counted from the file
    start, the same report as the whole table's."""
    cohort = small_synthetic.cohort.iloc[:900].reset_index(drop=True).astype(
        {"pain_baseline": object, "age": object})
    cohort.loc[[10, 700], "pain_baseline"] = "eleven"
    cohort.loc[[260, 899], "age"] = -4
    with pytest.raises(ContractError) as whole:
        prepare_cohort(cohort, "cohort.csv", 0.3)
    with pytest.raises(ContractError) as parts:
        prepare_partitions(_chunks(cohort, 250), "cohort.csv", 0.3, LOCAL)
    assert str(parts.value) == str(whole.value)
    rows = {p.column: p.rows for p in parts.value.problems}
    assert rows == {"pain_baseline": [11, 701], "age": [261, 900]}
