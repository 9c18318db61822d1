"""The one table reader: whole file or chunks, one set of file errors, no tracebacks."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd
import pytest

from precision_pain.data.contract import (
    ContractError,
    TableNotFoundError,
    iter_table,
    read_pipeline_table,
    read_table,
)

FRAME = pd.DataFrame({"patient_id": [f"P{i}" for i in range(7)], "age": range(40, 47),
                      "bmi": [22.5, 30.0, 18.25, 27.0, 31.5, 24.0, 26.0]})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunks_add_up_to_the_whole_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    FRAME.to_csv(path, index=False) if suffix == ".csv" else FRAME.to_parquet(path, index=False)
    whole = read_table(path)
    chunks = list(iter_table(path, 3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


def test_csv_cells_are_text_unless_typed(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    FRAME.to_csv(path, index=False)
    assert read_table(path)["age"].tolist()[0] == "40"
    pd.testing.assert_frame_equal(read_table(path, typed=True), FRAME)


def test_pipeline_tables_may_be_empty_and_say_run_dvc_repro(tmp_path: Path) -> None:
    path = tmp_path / "truth.parquet"
    FRAME.head(0).to_parquet(path, index=False)
    assert read_pipeline_table(path).columns.tolist() == FRAME.columns.tolist()
    with pytest.raises(ContractError, match="no data rows"):
        read_table(path)
    with pytest.raises(TableNotFoundError, match=r"(?s)nowhere\.parquet.*not found.*dvc repro"):
        read_pipeline_table(tmp_path / "nowhere.parquet")


def test_missing_file_is_also_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="check the path"):
        read_table(tmp_path / "nowhere.csv")


def _loop(tmp_path: Path) -> Path:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _dangling(tmp_path: Path) -> Path:
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "gone.csv")
    return link


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "dir.csv").mkdir()
    return tmp_path / "dir.csv"


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "pipe.csv")
    return tmp_path / "pipe.csv"


def _huge_field(tmp_path: Path) -> Path:
    path = tmp_path / "huge.csv"
    path.write_text("x" * (csv.field_size_limit() + 10) + "\n1\n")
    return path


def _open_quote(tmp_path: Path) -> Path:
    path = tmp_path / "quote.csv"
    path.write_text('"patient_id,age\n' + "P1,40\n" * 30_000)
    return path


@pytest.mark.parametrize("make, words", [
    (_loop, ["a.csv", "symbolic link loop", "Fix: point the link at the real file"]),
    (_dangling, ["link.csv", "symbolic link to a file that does not exist"]),
    (_directory, ["dir.csv", "is a directory", "Fix:"]),
    (_fifo, ["pipe.csv", "not a regular file", "Fix:"]),
    (_huge_field, ["huge.csv", f"longer than {csv.field_size_limit():,} characters",
                   "Fix: check that this is the cohort CSV"]),
    (_open_quote, ["quote.csv", "Fix: check that this is the cohort CSV"]),
])
def test_unreadable_files_get_a_message_with_the_file_and_fix(tmp_path: Path, make, words
                                                              ) -> None:
    path = make(tmp_path)
    for read in (read_table, lambda p: list(iter_table(p, 2))):
        with pytest.raises(ContractError) as info:
            read(path)
        for word in words:
            assert word in str(info.value)


@pytest.mark.parametrize("name, words", [
    ("x" * 300 + ".csv", ["cannot be read (File name too long)"]),
    ("a\0b.csv", ["contains a NUL character"]),
])
def test_impossible_paths_get_a_message(tmp_path: Path, name: str, words: list[str]) -> None:
    with pytest.raises(ContractError) as info:
        read_table(tmp_path / name)
    assert all(w in str(info.value) for w in words)


def test_error_in_a_later_chunk_names_the_file_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    lines = FRAME.to_csv(index=False).splitlines()
    lines[6] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    chunks = iter_table(path, 2)
    with pytest.raises(ContractError, match="file line 7 has 4 fields but the header has 3"):
        list(chunks)
