"""predict's Venn-Abers interval of P(response): out-of-fold calibration against validation.

Each ranked row of ``precision-pain predict`` carries ``p_response_low`` / ``_high``, an
inductive Venn-Abers interval from a per-treatment table of held-out scores
(docs/predictions.md, "Confidence"). The default learner's models are refitted on train +
validation, so the validation split is no longer held out for them. Since 2026-12-04 its
tables come from the out-of-fold scores of every train and validation episode, which the
cross-fitted stack already computes (``pain_companion_folds``); before, from the validation
split scored by the train-only models the refit started from. This script measures both in
one run, on the same extract and models: for each generator (the project's simulator or one
of ``learning_curve.GENERATORS``: the independent ``alt``, ``blind`` and ``shift``) and
seed it trains the bundles ``precision-pain train`` writes (``deploy_refit.train_both``)
twice, the second time with the tables of the validation split (the earlier behaviour,
restored by patching ``PooledFit.calibration_set``: same models, same seeds; ``--sources``
trains with one of them only), and scores

- the evaluated bundle on the extract's test split, and
- the deployed bundle (refitted on every split) on ``--unseen`` new patients,

with, per bundle and source: calibration patients; the median interval width; the share of
(patient, eligible treatment) rows that predict flags ``low_confidence`` because
P(response) lies more than ``predict.calibration_tolerance`` outside the interval, or the
interval is wider than ``predict.max_interval_width``; over deciles of P(response) for the
treatment received, the mean absolute gap between the observed response rate and the
interval's merged probability p1 / (1 - p0 + p1) (Vovk & Petej 2014), and the model's own
P(response); and the mean absolute error of the merged probability and of the model's
against the true P(response) over every eligible treatment. On the rows flagged for lying
outside the interval, the same two errors and how often the merged probability is the
closer one (what the flag claims: the model is off there, the held-out patients' rate
nearer), against the model's error on the rows not flagged, and the flagged rows per arm.

    uv run python benchmarks/response_interval.py --generators simulator blind alt shift \\
        --seeds 20261202 --n 20000 --sources out_of_fold
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_refit import UNSEEN_SEED_OFFSET, train_both  # noqa: E402
from learning_curve import cohort  # noqa: E402

from precision_pain.config import load_params  # noqa: E402
from precision_pain.evaluate import policy as pol  # noqa: E402
from precision_pain.evaluate.core import score_test  # noqa: E402
from precision_pain.models import pooled  # noqa: E402
from precision_pain.predict.confidence import response_interval  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def validation_tables() -> Iterator[None]:
    """Train as before 2026-12-04: Venn-Abers tables from the validation split."""
    original = pooled.PooledFit.calibration_set
    pooled.PooledFit.calibration_set = lambda self, treatment: None
    try:
        yield
    finally:
        pooled.PooledFit.calibration_set = original


def interval_figures(bundle, patients: pd.DataFrame, truth: pd.DataFrame, params
                     ) -> dict[str, Any]:
    """The interval's figures for ``bundle`` on ``patients`` (module docstring)."""
    scores = score_test(patients, bundle)
    tables = bundle.metadata["response_calibration"]
    p, eligible = scores.p_response, scores.eligible
    low, high = np.full(p.shape, np.nan), np.full(p.shape, np.nan)
    for j, name in enumerate(scores.treatments):
        low[:, j], high[:, j] = response_interval(tables.get(name), p[:, j])
    merged = high / (1 - low + high)
    outside = np.maximum(low - p, p - high) > params.predict.calibration_tolerance
    wide = high - low > params.predict.max_interval_width
    received = np.flatnonzero(scores.treated >= 0)
    got = scores.treated[received]
    deciles = pd.DataFrame({"decile": pd.qcut(p[received, got], 10, labels=False,
                                              duplicates="drop"),
                            "model": p[received, got], "merged": merged[received, got],
                            "observed": patients["response"].to_numpy(float)[received]}
                           ).groupby("decile").mean()
    true = pol.wide(truth, "p_response", scores.patient_ids, scores.treatments)
    flagged = outside & eligible
    rest = ~outside & eligible
    model_error, merged_error = np.abs(p - true), np.abs(merged - true)
    return {
        "calibration patients": sum(int(t["n"]) for t in tables.values()),
        "median width": float(np.median((high - low)[eligible])),
        "% outside by > tolerance": 100 * float(outside[eligible].mean()),
        "% wider than max": 100 * float(wide[eligible].mean()),
        "decile gap, merged": float((deciles["merged"] - deciles["observed"]).abs().mean()),
        "decile gap, model": float((deciles["model"] - deciles["observed"]).abs().mean()),
        "MAE vs truth, merged": float(merged_error[eligible].mean()),
        "MAE vs truth, model": float(model_error[eligible].mean()),
        # where the outside flag is raised: is the model worse there, the interval better?
        "flagged: MAE vs truth, model": _mean(model_error[flagged]),
        "flagged: MAE vs truth, merged": _mean(merged_error[flagged]),
        "flagged: % merged closer": 100 * _mean(merged_error[flagged] < model_error[flagged]),
        "not flagged: MAE vs truth, model": _mean(model_error[rest]),
        "flagged arms": ", ".join(f"{name} {count}" for name, count in
                                  zip(scores.treatments, flagged.sum(axis=0)) if count),
    }


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


SOURCES = ("validation", "out_of_fold")


def run_one(generator: str, seed: int, n: int, n_unseen: int, params,
            sources: tuple[str, ...] = SOURCES) -> list[dict[str, Any]]:
    """Each source on one extract: evaluated bundle on its test split, deployed on new
    patients."""
    extract, truth = cohort(generator, n, seed, params)
    unseen, unseen_truth = cohort(generator, n_unseen, seed + UNSEEN_SEED_OFFSET, params)
    rows = []
    for source in sources:
        if source == "validation":
            with validation_tables():
                parts, evaluated, deployed = train_both(extract, params)
        else:
            parts, evaluated, deployed = train_both(extract, params)
        recorded = evaluated.metadata.get("response_calibration_source", "validation")
        test_truth = truth[truth["patient_id"].isin(parts["test"]["patient_id"])]
        for bundle_name, bundle, patients, t in (
                ("evaluated, test split", evaluated, parts["test"], test_truth),
                ("deployed, unseen", deployed, unseen, unseen_truth)):
            rows.append({"generator": generator, "seed": seed, "n": n, "bundle": bundle_name,
                         "tables": recorded,
                         **interval_figures(bundle, patients, t, params)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generators", nargs="+", default=["simulator", "blind", "alt"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[20261202])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--unseen", type=int, default=10_000)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES),
                        help="which calibration tables to train with (default: both)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    params = load_params(args.params)
    rows = [row for g in args.generators for s in args.seeds
            for row in run_one(g, s, args.n, args.unseen, params, tuple(args.sources))]
    table = pd.DataFrame(rows).sort_values(["generator", "seed", "bundle", "tables"],
                                           kind="stable")
    print(table.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
