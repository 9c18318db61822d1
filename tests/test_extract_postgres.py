"""The same extract from a real PostgreSQL server equals the DuckDB one (slow).

Starts Debian's PostgreSQL (`apt-get install -y postgresql`, done by .ci/run) with initdb
and pg_ctl in a temporary folder on a free loopback port, as the unprivileged `postgres`
user when the tests run as root (PostgreSQL refuses root), loads the synthetic CDM into a
`cdm` schema with COPY, and stops the server in a finally block. Installs nothing; skips
with instructions when the binaries are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from servers import free_port
from omop_world import STUDY, make_world

pytestmark = pytest.mark.slow


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway server; yields its connection string (trust auth on 127.0.0.1)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed: apt-get install -y postgresql")
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else os.environ.get("USER", "postgres")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = Path(tempfile.mkdtemp(prefix="pp-pg-"))
    if as_root:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", free_port()
    run = lambda *args: subprocess.run([*prefix, *args], check=True,
                                       capture_output=True, text=True)
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
        try:
            yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _load(dsn: str, tables: dict[str, pd.DataFrame], schema: str) -> None:
    import psycopg

    from precision_pain.extract.omop.database import _pg_columns, copy_frame

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
        for name, frame in tables.items():
            con.execute(f"CREATE TABLE {schema}.{name} ({_pg_columns(frame)})")
            copy_frame(con, f"{schema}.{name}", frame)


def test_postgresql_extract_equals_duckdb(tmp_path, monkeypatch):
    from precision_pain.extract.omop.database import open_database
    from precision_pain.extract.omop.extract import extract_cohort
    from precision_pain.extract.omop.study import load_study
    from precision_pain.extract.pharmcat.calls import read_genotypes

    world = make_world(tmp_path / "world", n=800, seed=3)
    study, genotypes = load_study(STUDY), read_genotypes(world.folder / "pharmcat")
    duck = open_database("duckdb", world.folder / "cdm.duckdb", None, None, None)
    try:
        want = extract_cohort(duck, study, genotypes)
    finally:
        duck.close()
    with postgres_server() as dsn:
        _load(dsn, world.tables, "cdm")
        monkeypatch.setenv("PP_TEST_OMOP_DSN", dsn)
        pg = open_database("postgresql", None, "PP_TEST_OMOP_DSN", "cdm", None)
        try:
            got = extract_cohort(pg, study, genotypes)
        finally:
            pg.close()
    assert len(got.cohort) == len(world.cohort)
    pd.testing.assert_frame_equal(got.cohort, want.cohort)
    pd.testing.assert_frame_equal(got.attrition, want.attrition)
    pd.testing.assert_frame_equal(got.key, want.key)
