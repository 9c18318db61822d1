"""The engine setting and the partitioned prepare core (no cluster needed)."""

from __future__ import annotations

import pandas as pd
import pytest

from precision_pain.config import EngineParams, ParamsError, load_params
from precision_pain.data.contract import ContractError
from precision_pain.data.prepare import prepare_cohort, prepare_partitions
from precision_pain.engine import LOCAL, EngineError, numbered, open_engine

ROOT = pytest.importorskip("pathlib").Path(__file__).resolve().parents[1]


def _chunks(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i:i + size].reset_index(drop=True) for i in range(0, len(frame), size)]


def test_default_engine_is_local(params):
    assert params.engine.type == "local"
    with open_engine(params.engine) as engine:
        assert engine is LOCAL


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
