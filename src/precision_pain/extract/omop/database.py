"""Connections to an OMOP CDM database: DuckDB (embedded default) or PostgreSQL.

One small interface for both, so the extract's SQL runs unchanged on either:
``query`` returns a DataFrame, ``execute`` runs a statement, ``load_temp`` uploads a small
frame as a session-temporary table (concept sets), ``table`` gives the qualified name of a
CDM or vocabulary table and ``columns`` its column names (None when it does not exist).

- DuckDB: a ``.duckdb`` file, attached read-only, or a folder of CDM tables as Parquet or
  CSV (one file per table, named after it: ``person.parquet``, ``concept.csv``), read in
  place through views. The source is never written to.
- PostgreSQL: the connection string is read from an environment variable (named in
  params.yaml, never the value) and libpq's own variables (PGHOST, PGUSER, PGPASSWORD,
  PGDATABASE, ~/.pgpass) fill in the rest. Neither is ever logged.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

log = logging.getLogger(__name__)

VOCABULARY_TABLES = frozenset({"concept", "concept_ancestor", "drug_strength"})


class Database(Protocol):
    """What the extract needs from a database connection."""

    name: str

    def query(self, sql: str) -> pd.DataFrame: ...
    def execute(self, sql: str) -> None: ...
    def load_temp(self, name: str, frame: pd.DataFrame) -> None: ...
    def table(self, name: str) -> str: ...
    def columns(self, name: str) -> list[str] | None: ...
    def close(self) -> None: ...


class DatabaseError(ValueError):
    """A database that cannot be opened; the message names it and the fix."""


class DuckDatabase:
    """A DuckDB connection onto a .duckdb file or a folder of CDM tables."""

    def __init__(self, source: str | Path, cdm_schema: str = "main",
                 vocabulary_schema: str | None = None) -> None:
        import duckdb

        self.source = Path(source)
        self.name = f"DuckDB {self.source}"
        if not self.source.exists():
            raise DatabaseError(f"{self.source}: no such DuckDB file or folder of CDM tables; "
                                "fix extract.sources.<name>.database in params.yaml")
        self._con = duckdb.connect()
        if self.source.is_dir():
            self._prefix = {"cdm": "", "vocab": ""}
            self._views_from_folder()
        else:
            self._con.execute(f"ATTACH '{_quote(str(self.source))}' AS cdm (READ_ONLY)")
            self._prefix = {"cdm": f"cdm.{cdm_schema}.",
                            "vocab": f"cdm.{vocabulary_schema or cdm_schema}."}

    def _views_from_folder(self) -> None:
        readers = {".parquet": "read_parquet", ".pq": "read_parquet", ".csv": "read_csv_auto"}
        for path in sorted(self.source.iterdir()):
            reader = readers.get(path.suffix.lower())
            if reader:
                source = f"{reader}('{_quote(str(path))}')"
                names = [d[0] for d in self._con.execute(
                    f"SELECT * FROM {source} LIMIT 0").description]
                # CDM *_date columns are DATE (a CSV or pandas Parquet may hold timestamps)
                dates = [f'CAST("{n}" AS DATE) AS "{n}"' for n in names
                         if n.lower().endswith("_date")]
                replace = f" REPLACE ({', '.join(dates)})" if dates else ""
                self._con.execute(f'CREATE VIEW "{path.stem.lower()}" AS '
                                  f"SELECT *{replace} FROM {source}")

    def query(self, sql: str) -> pd.DataFrame:
        """Run a query and return its rows."""
        return self._con.execute(sql).df()

    def execute(self, sql: str) -> None:
        """Run a statement."""
        self._con.execute(sql)

    def load_temp(self, name: str, frame: pd.DataFrame) -> None:
        """Upload a small frame as a temporary table."""
        self._con.register(f"_{name}_src", frame)
        self._con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _{name}_src")
        self._con.unregister(f"_{name}_src")

    def table(self, name: str) -> str:
        """Qualified name of a CDM or vocabulary table."""
        return self._prefix["vocab" if name in VOCABULARY_TABLES else "cdm"] + name

    def columns(self, name: str) -> list[str] | None:
        """Column names of a table (lower case), or None when it does not exist."""
        import duckdb

        try:
            rel = self._con.execute(f"SELECT * FROM {self.table(name)} LIMIT 0")
        except duckdb.Error:
            return None
        return [d[0].lower() for d in rel.description]

    def close(self) -> None:
        """Close the connection."""
        self._con.close()


class PostgresDatabase:
    """A PostgreSQL connection; the connection string comes from the environment."""

    def __init__(self, dsn_env: str, cdm_schema: str = "public",
                 vocabulary_schema: str | None = None) -> None:
        import psycopg

        self.name = f"PostgreSQL (connection from ${dsn_env})"
        conninfo = os.environ.get(dsn_env)
        if conninfo is None:
            raise DatabaseError(f"environment variable {dsn_env} is not set; export it with "
                                "the server's connection string (postgresql://user@host/db; "
                                "the password in PGPASSWORD or ~/.pgpass)")
        try:
            self._con = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            # libpq's message names host and port, never the password
            raise DatabaseError(f"{self.name}: cannot connect: {exc}".strip()) from None
        self._schemas = {"cdm": cdm_schema, "vocab": vocabulary_schema or cdm_schema}

    def query(self, sql: str) -> pd.DataFrame:
        """Run a query and return its rows."""
        with self._con.cursor() as cur:
            cur.execute(sql)
            names = [d.name for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=names)

    def execute(self, sql: str) -> None:
        """Run a statement."""
        with self._con.cursor() as cur:
            cur.execute(sql)

    def load_temp(self, name: str, frame: pd.DataFrame) -> None:
        """Upload a small frame as a temporary table (COPY)."""
        self.execute(f"DROP TABLE IF EXISTS {name}")
        self.execute(f"CREATE TEMP TABLE {name} ({_pg_columns(frame)})")
        copy_frame(self._con, name, frame)

    def table(self, name: str) -> str:
        """Qualified name of a CDM or vocabulary table."""
        return f"{self._schemas['vocab' if name in VOCABULARY_TABLES else 'cdm']}.{name}"

    def columns(self, name: str) -> list[str] | None:
        """Column names of a table (lower case), or None when it does not exist."""
        schema, table = self.table(name).split(".")
        rows = self.query("SELECT column_name FROM information_schema.columns WHERE "
                          f"table_schema = '{_quote(schema)}' AND table_name = '{_quote(table)}'")
        return [c.lower() for c in rows["column_name"]] if len(rows) else None

    def close(self) -> None:
        """Close the connection."""
        self._con.close()


_PG_TYPES = {"i": "BIGINT", "u": "BIGINT", "f": "DOUBLE PRECISION", "b": "BOOLEAN",
             "M": "DATE"}


def _pg_columns(frame: pd.DataFrame) -> str:
    return ", ".join(f"{c} {_PG_TYPES.get(frame[c].dtype.kind, 'TEXT')}" for c in frame.columns)


def copy_frame(con: Any, table: str, frame: pd.DataFrame) -> None:
    """Stream a frame into a PostgreSQL table with COPY (CSV; empty cells are NULL)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, date_format="%Y-%m-%d")
    buffer.seek(0)
    with con.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN "
                                      "WITH (FORMAT csv)") as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)


def _quote(text: str) -> str:
    return text.replace("'", "''")


def open_database(engine: str, database: str | Path | None, dsn_env: str | None,
                  cdm_schema: str | None, vocabulary_schema: str | None) -> Database:
    """Open a DuckDB file/folder or a PostgreSQL server (connection string from the environment)."""
    if engine == "duckdb":
        if database is None:
            raise DatabaseError("engine duckdb needs `database`: a .duckdb file or a folder of "
                                "CDM tables")
        db: Database = DuckDatabase(database, cdm_schema or "main", vocabulary_schema)
    elif engine == "postgresql":
        if not dsn_env:
            raise DatabaseError("engine postgresql needs `dsn_env`: the name of the environment "
                                "variable that holds the connection string")
        db = PostgresDatabase(dsn_env, cdm_schema or "public", vocabulary_schema)
    else:
        raise DatabaseError(f"unknown engine {engine!r}; valid: duckdb, postgresql")
    log.info("opened %s", db.name)
    return db
