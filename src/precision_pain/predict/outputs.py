"""Prediction output, streamed: four files written chunk by chunk.

The input is read in chunks by the contract's one reader
(:func:`precision_pain.data.contract.iter_table`), so memory does not grow with the
cohort. ``write_predictions`` writes, beside ``OUT`` (CSV or Parquet by suffix):

- ``OUT``: the ranked table (columns in docs/predictions.md);
- ``<stem>.shap.<ext>``: SHAP values of the explained rows;
- ``<stem>.json``: the same rows as JSON records, for programs, plus a summary;
- ``<stem>.html``: the report (:mod:`precision_pain.predict.report_html`).

The four files are written under temporary names and published together
(:func:`precision_pain.io.file_set`) only when every chunk has succeeded: bad input (found
in any chunk) leaves no output at all, and no reader ever sees files of two runs side by side.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from precision_pain import RESEARCH_NOTICE
from precision_pain.io import failpoint, file_set, table_format
from precision_pain.predict.recommend import OUTPUT_COLUMNS, Recommendations
from precision_pain.predict.report_html import (
    add_summaries,
    patient_sections,
    render_report,
    summarize,
    with_plans,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- output

def output_paths(out: str | Path, plans: bool = False) -> dict[str, Path]:
    """The four files one prediction run writes; with ``plans`` (a bundle with the plan
    learner), three more: ``<stem>.plans.<ext>``, ``<stem>.plans.shap.<ext>`` and
    ``<stem>.plans.json``."""
    out = Path(out)
    paths = {"table": out, "shap": out.with_name(f"{out.stem}.shap{out.suffix}"),
             "json": out.with_name(f"{out.stem}.json"),
             "html": out.with_name(f"{out.stem}.html")}
    if plans:
        paths |= {"plans": out.with_name(f"{out.stem}.plans{out.suffix}"),
                  "plans_shap": out.with_name(f"{out.stem}.plans.shap{out.suffix}"),
                  "plans_json": out.with_name(f"{out.stem}.plans.json")}
    return paths


@dataclass(frozen=True)
class PredictionSummary:
    """What a run wrote."""

    paths: Mapping[str, Path]
    n_patients: int
    n_rows: int
    n_report_sections: int


class _TableSink:
    """Appends chunks to one CSV or Parquet file."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt
        self._writer: Any = None
        self._handle: TextIO | None = None

    def write(self, frame: pd.DataFrame) -> None:
        """Append one chunk."""
        if self.fmt == "csv":
            first = self._handle is None
            if first:
                self._handle = open(self.path, "w", encoding="utf-8", newline="")
            frame.to_csv(self._handle, header=first, index=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._writer = pq.ParquetWriter(self.path, table.schema)
        else:
            table = pa.Table.from_pandas(frame, schema=self._writer.schema, preserve_index=False)
        self._writer.write_table(table)

    def close(self) -> None:
        """Flush and close the file (safe to call twice)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _JsonSink:
    """Streams ``{"notice", "meta", "columns", "rows": [[...], ...], "summary"}``.

    Each row is a list of values in ``columns`` order (one row per patient and
    treatment, as in the table): compact, and ``pd.DataFrame(doc["rows"],
    columns=doc["columns"])`` restores the table.
    """

    slice_rows = 100_000  # rows serialized at a time, to bound the size of one string

    def __init__(self, path: Path, meta: Mapping[str, Any],
                 columns: Sequence[str] = OUTPUT_COLUMNS):
        self._handle = open(path, "w", encoding="utf-8")
        head = {"notice": RESEARCH_NOTICE, "meta": dict(meta), "columns": list(columns)}
        self._handle.write(json.dumps(head, default=str)[:-1] + ', "rows": [')
        self._first = True

    def write(self, frame: pd.DataFrame) -> None:
        """Append one chunk's rows."""
        for start in range(0, len(frame), self.slice_rows):
            part = frame.iloc[start:start + self.slice_rows]
            self._handle.write("" if self._first else ",")
            # force_ascii=False: the file is UTF-8, and not escaping saves ~9 % of the writer's CPU
            self._handle.write(part.to_json(orient="values", double_precision=6,
                                            force_ascii=False)[1:-1])
            self._first = False

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Close the list, add the summary, close the file."""
        self._handle.write('], "summary": ' + json.dumps(summary, default=int) + "}\n")
        self._handle.close()

    def close(self) -> None:
        """Close the file (no-op after finish)."""
        self._handle.close()


class _Outputs:
    """The four outputs of a run, written chunk by chunk into their temporary files."""

    def __init__(self, tmp: Mapping[str, Path], fmt: str, meta: Mapping[str, Any],
                 max_patients: int):
        self.tmp, self.meta, self.max_patients = tmp, meta, max_patients
        self.table, self.shap = _TableSink(tmp["table"], fmt), _TableSink(tmp["shap"], fmt)
        self.json = _JsonSink(tmp["json"], meta)
        self.plans = _PlanSinks(tmp, fmt, meta) if "plans" in tmp else None
        self.summary: pd.DataFrame | None = None
        self.sections: list[Any] = []
        self.n_patients = self.n_rows = 0

    def add(self, result: Recommendations) -> None:
        """Append one chunk to every file and to the report's summary and sections."""
        self.table.write(result.table)
        self.shap.write(result.shap)
        self.json.write(result.table)
        self.summary = add_summaries(self.summary, summarize(result.table))
        sections = patient_sections(result.table, result.shap, result.features,
                                    self.max_patients - len(self.sections))
        if self.plans is not None:
            self.plans.write(result.plans)
            sections = with_plans(sections, result.plans.table)
        self.sections += sections
        self.n_patients += len(result.features)
        self.n_rows += len(result.table)
        log.info("predicted %d patients so far", self.n_patients)
        failpoint("write.chunk")

    def finish(self) -> None:
        """Close the tables, end the JSON with the summary, write the HTML report."""
        self.table.close()
        self.shap.close()
        self.json.finish(_json_summary(self.summary, self.n_patients))
        if self.plans is not None:
            self.plans.finish(self.n_patients)
        html = render_report(self.summary, self.sections, self.n_patients, self.meta)
        self.tmp["html"].write_text(html, encoding="utf-8")

    def close(self) -> None:
        """Close every open file (safe to call twice)."""
        for sink in (self.table, self.shap, self.json):
            sink.close()
        if self.plans is not None:
            self.plans.close()


class _PlanSinks:
    """The plan files of a run with the plan learner: table, SHAP and JSON."""

    def __init__(self, tmp: Mapping[str, Path], fmt: str, meta: Mapping[str, Any]):
        from precision_pain.predict.plans import PLAN_COLUMNS

        self.table, self.shap = _TableSink(tmp["plans"], fmt), _TableSink(tmp["plans_shap"], fmt)
        self.json = _JsonSink(tmp["plans_json"], meta, PLAN_COLUMNS)
        self.n_rows = 0

    def write(self, plans: Any) -> None:
        """Append one chunk's listed plans and their SHAP values."""
        if plans is None:
            raise ValueError("the bundle has the plan learner but a chunk came without plans")
        self.table.write(plans.table)
        self.shap.write(plans.shap)
        self.json.write(plans.table)
        self.n_rows += len(plans.table)

    def finish(self, n_patients: int) -> None:
        """Close the tables and end the JSON with its counts."""
        self.table.close()
        self.shap.close()
        self.json.finish({"n_patients": n_patients, "n_rows": self.n_rows})

    def close(self) -> None:
        """Close every open file (safe to call twice)."""
        for sink in (self.table, self.shap, self.json):
            sink.close()


def write_predictions(results: Iterable[Recommendations], out: str | Path,
                      meta: Mapping[str, Any], max_patients: int, plans: bool = False
                      ) -> PredictionSummary:
    """Write table, SHAP, JSON and HTML from a stream of chunk results, all or nothing;
    with ``plans``, the plan files too (:func:`output_paths`)."""
    paths = output_paths(out, plans)
    fmt = table_format(paths["table"])
    results = iter(results)
    result = next(results)  # the first chunk is validated before any file or folder exists
    with ExitStack() as stack:
        tmp = dict(zip(paths, stack.enter_context(file_set(list(paths.values())))))
        outputs = _Outputs(tmp, fmt, meta, max_patients)
        stack.callback(outputs.close)
        while result is not None:
            outputs.add(result)
            result = None  # free this chunk before the next one is computed
            result = next(results, None)
        outputs.finish()
    return PredictionSummary(paths, outputs.n_patients, outputs.n_rows, len(outputs.sections))


def _json_summary(summary: pd.DataFrame | None, n_patients: int) -> dict[str, Any]:
    per_treatment = {} if summary is None else {
        name: {k: int(v) for k, v in row.items()} for name, row in summary.iterrows()}
    return {"n_patients": n_patients, "per_treatment": per_treatment}

