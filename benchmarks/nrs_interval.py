"""Coverage of predict's prediction interval of the change in pain, on patients it never saw.

A bundle trained with ``prepare.outcome: nrs_change`` gives each ranked row a split-conformal
interval of the patient's own change in NRS pain (``expected_nrs_change_low`` / ``_high``,
docs/predictions.md). For each generator (the project's simulator, the independent
``benchmarks/alt_cohort.py`` or ``blind``, ``benchmarks/blind_cohort.py``) and seed this
script draws an extract of ``--n`` patients and ``--unseen`` new ones from the same
process, runs the pipeline's code on the extract (split -> ``train_bundle`` ->
``refit_on_all``) and runs ``recommend`` on the evaluated bundle's test split and on the new
patients with the deployed bundle, at each ``--levels``.
It prints the share of patients whose observed change under the treatment they received
lies inside that treatment's interval (overall, the range over treatments, and per band of
baseline pain severity) and the median width in NRS points (overall and per band), side by
side for the shipped intervals (a conformal table per severity band) and for one table per
treatment over every band (the bundle's ``by_baseline`` tables removed), in the same run.

    uv run python benchmarks/nrs_interval.py --generators simulator alt --seeds 20261202
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
from deploy_refit import train_both  # noqa: E402
from learning_curve import cohort  # noqa: E402

from precision_pain.config import load_params  # noqa: E402
from precision_pain.models.profile import SEVERITY_BANDS, severity_band  # noqa: E402
from precision_pain.outcome import outcome_from_params  # noqa: E402
from precision_pain.predict.recommend import options_from_params, recommend  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UNSEEN_SEED_OFFSET = 500
OUTCOMES = ["pain_followup", "response", "adverse_event"]


def coverage(bundle, frame, options, level: float) -> str:
    """One line: coverage of the observed change at ``level`` and the median width."""
    frame = frame[frame["treatment"].isin(bundle.treatments)].reset_index(drop=True)
    settings = replace(options, confidence=replace(options.confidence,
                                                   nrs_interval_level=level))
    table = recommend(frame.drop(columns=OUTCOMES, errors="ignore"), bundle, settings).table
    got = table.merge(frame[["patient_id", "treatment", "pain_baseline", "pain_followup"]],
                      on=["patient_id", "treatment"])
    change = got["pain_followup"] - got["pain_baseline"]
    low, high = got["expected_nrs_change_low"], got["expected_nrs_change_high"]
    inside = (low <= change) & (change <= high)
    per = inside.groupby(got["treatment"]).mean()
    width = high - low
    band = pd.Series(severity_band(got["pain_baseline"]), index=got.index)
    bands = "; ".join(
        f"{name.split(' ')[0]} {inside[band == k].mean():.3f} / {width[band == k].median():.2f}"
        f" (n {int((band == k).sum()):,})" for k, name in enumerate(SEVERITY_BANDS)
        if (band == k).any())
    return (f"level {level:.2f}: coverage {inside.mean():.3f} (per treatment {per.min():.3f}-"
            f"{per.max():.3f}), median width {width.median():.2f} NRS points, "
            f"{len(got):,} patients; by baseline band, coverage / median width: {bands}")


def without_bands(bundle):
    """The bundle with one conformal table per treatment (its severity-band tables removed)."""
    tables = {t: {k: v for k, v in table.items() if k != "by_baseline"}
              for t, table in bundle.metadata["nrs_change_conformal"].items()}
    return replace(bundle, metadata={**bundle.metadata, "nrs_change_conformal": tables})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generators", nargs="+", default=["simulator", "alt"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[20261202])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--unseen", type=int, default=10_000)
    parser.add_argument("--levels", nargs="+", type=float, default=[0.8, 0.9])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    params = load_params(args.params, {"prepare.outcome": "nrs_change"})
    spec, options = outcome_from_params(params), options_from_params(params)
    for generator in args.generators:
        for seed in args.seeds:
            extract, _ = cohort(generator, args.n, seed, params)
            unseen, _ = cohort(generator, args.unseen, seed + UNSEEN_SEED_OFFSET, params)
            parts, evaluated, deployed = train_both(extract, params, spec)
            for name, bundle, frame in (("evaluated bundle, test split", evaluated, parts["test"]),
                                        ("deployed bundle, unseen patients", deployed, unseen)):
                for level in args.levels:
                    for kind, variant in (("by band", bundle), ("one table",
                                                                without_bands(bundle))):
                        print(f"{generator} {seed} {name}, {kind}, "
                              f"{coverage(variant, frame, options, level)}", flush=True)


if __name__ == "__main__":
    main()
