"""What measurements left empty cost the recommendations, measured on unseen patients.

An EHR extract often lacks eGFR, BMI or a questionnaire score; the contract lets those cells
be empty (docs/data-contract.md) and the models read them as missing. For each generator
(the project's simulator, the independent ``benchmarks/alt_cohort.py`` or ``blind``,
``benchmarks/blind_cohort.py``) and seed, this
script draws an extract of ``--n`` patients and ``--unseen`` new patients from the same
process, and runs the pipeline's own code (prepare -> split -> ``train_bundle`` ->
``refit_on_all``, as ``precision-pain train`` does) twice, side by side in one run: on the
complete extract, and on the same extract with each measurement in ``--rates`` left empty
for that share of patients, completely at random or, with ``--mechanism mar``, following
recorded features as in EHRs (``mask_measurements``; the new patients lose theirs the same
way). Each deployed bundle's recommendations for its new patients are scored
against their ground truth at harm weights 0, 0.5 and 1 (the share of the oracle's gain over
the best single treatment captured); the truth knows every true value.

Then, for the bundle trained on the complete extract, each measurement in turn is emptied
for every new patient: how far its P(response) and P(adverse event) move from their values
at the true measurement, when scored as the bundle does (at the training median, since the
models never saw that measurement missing) and when left missing for the trees' arbitrary
default branches (the bundle without its ``feature_imputation``).

    uv run python benchmarks/missing_measurements.py --seeds 20261202
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_refit import UNSEEN_SEED_OFFSET, shares, train_both  # noqa: E402
from learning_curve import cohort  # noqa: E402

from precision_pain.config import load_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RATES = {"egfr": 0.3, "pcs": 0.4, "ort_score": 0.4, "bmi": 0.2, "phq9": 0.2,
                 "gad7": 0.2}


def moved(bundle, unseen: pd.DataFrame, column: str) -> str:
    """Mean |change| of each outcome's prediction when ``column`` is emptied for everyone:
    filled at the training median (the bundle as shipped) / left missing."""
    from dataclasses import replace

    from precision_pain.data.features import build_features

    bare = replace(bundle, metadata={k: v for k, v in bundle.metadata.items()
                                     if k != "feature_imputation"})
    X = build_features(unseen)
    empty = X.assign(**{column: np.nan})
    parts = []
    for outcome in ("response", "adverse_event"):
        true = bundle.scores(X, outcome)
        filled = np.abs(bundle.scores(empty, outcome) - true).mean()
        left = np.abs(bare.scores(empty, outcome) - true).mean()
        parts.append(f"P({outcome.replace('_', ' ')}) {filled:.4f} / {left:.4f}")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generators", nargs="+", default=["simulator", "alt"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[20261202])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--unseen", type=int, default=10_000)
    parser.add_argument("--n-bootstrap", type=int, default=50)
    parser.add_argument("--rates", nargs="+", default=[f"{k}={v}" for k, v in
                                                         DEFAULT_RATES.items()],
                        help="column=share pairs (default: %(default)s)")
    parser.add_argument("--mechanism", choices=["mcar", "mar"], default="mcar",
                        help="who goes unrecorded (simulate.missing_measurement_mechanism)")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    params = load_params(args.params)
    rates = {k: float(v) for k, v in (pair.split("=") for pair in args.rates)}
    print(f"measurements left empty ({args.mechanism}): {rates}; share of the oracle's gain "
          "captured at harm weights 0 / 0.5 / 1 (95 % bootstrap interval)", flush=True)
    for generator in args.generators:
        for seed in args.seeds:
            for label, masked in (("complete", {}), ("measurements missing", rates)):
                extract, _ = cohort(generator, args.n, seed, params, masked, args.mechanism)
                unseen, truth = cohort(generator, args.unseen, seed + UNSEEN_SEED_OFFSET,
                                       params, masked, args.mechanism)
                bundle = train_both(extract, params)[2]  # the deployed bundle
                got = shares(bundle, unseen, truth, params, args.n_bootstrap)
                cells = " / ".join(f"{100 * v['share']:.1f} % ({100 * v['low']:.1f}-"
                                   f"{100 * v['high']:.1f})" for v in got.values())
                print(f"{generator} {seed} {label}: {cells}", flush=True)
                if not masked:
                    for column in rates:
                        print(f"  {column} emptied for every new patient, mean |change| at "
                              f"the training median / left missing: "
                              f"{moved(bundle, unseen, column)}", flush=True)


if __name__ == "__main__":
    main()
