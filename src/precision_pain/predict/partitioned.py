"""Predict on a Dask engine: the local chunk loop's core functions, mapped over partitions.

:func:`precision_pain.predict.recommend.predict_chunks` validates, prepares and recommends
one chunk after another in this process. :func:`predict_partitions` runs the same two core
functions (:func:`~precision_pain.data.prepare.prepare_cohort`, then
:func:`~precision_pain.predict.recommend.recommend`) on a cluster, one partition
(``predict.chunk_size`` rows) per task, and yields the results in input order to the same
writer (:func:`precision_pain.predict.outputs.write_predictions`): the four files have the
same content in the same order, and are published together only when every partition has
succeeded. Each worker loads the model bundle once (:func:`precision_pain.engine.worker_bundle`:
the manifest's SHA-256 pinned, skops allowlist) and keeps it for every later partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd

from precision_pain.engine import numbered, worker_bundle
from precision_pain.io import failpoint
from precision_pain.predict.recommend import (PredictOptions, Recommendations,
                                              _check_unique_patients, _shifted, recommend)


def predict_partitions(chunks: Iterable[pd.DataFrame], bundle_source: Any, source: str,
                       options: PredictOptions, engine: Any) -> Iterator[Recommendations]:
    """Recommendations per partition, in input order; the first bad partition's error is
    raised (row numbers from the file start), and a patient repeated across partitions too."""
    seen: set[str] = set()
    for offset, result in engine.imap(predict_partition, numbered(chunks), bundle_source,
                                      source, options, desc="predict", unit="partition"):
        ids = result.features["patient_id"].tolist()
        _check_unique_patients(ids, seen, offset, source)
        seen.update(ids)
        yield result


def predict_partition(item: tuple[int, pd.DataFrame], bundle_source: Any, source: str,
                      options: PredictOptions) -> tuple[int, Recommendations]:
    """Validate, prepare and recommend one partition (a Dask task)."""
    from precision_pain.data.contract import ContractError
    from precision_pain.data.prepare import prepare_cohort

    offset, raw = item
    failpoint("predict.partition")
    try:
        prepared = prepare_cohort(raw, source, None, require_outcomes=False)
    except ContractError as exc:
        raise _shifted(exc, offset) from None
    return offset, recommend(prepared, worker_bundle(bundle_source), options)
