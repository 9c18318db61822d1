"""Is the doubly robust estimate honest? Its error and interval coverage over training seeds.

On one cohort and split (params.yaml's default cohort unless ``--n`` says otherwise), the
default learner is trained with ``--seeds`` different training seeds (``model.seed``); each
run's recommendations are valued on the test split by the doubly robust estimator (no
ground truth used) and by the truth. Prints, per seed, the DR estimate, its 95 % bootstrap
interval and the true value; then the mean and largest absolute error and the share of
seeds whose interval covers the truth. Uses the pipeline's own functions
(``train_bundle``, ``evaluate``).

    uv run python benchmarks/dr_coverage.py --seeds 20
    uv run python benchmarks/dr_coverage.py --seeds 10 --outcome nrs_change   # NRS points

Over training seeds the test split stays the same, so its own sampling noise, the larger part
of the estimate's error, is drawn once. ``--test-samples K`` measures the interval as a
confidence interval is meant to be read, over samples: the default learner is trained once
on an extract of ``--n`` patients (20,000 by default) of ``--generator`` (the simulator,
``alt`` or ``blind``: ``learning_curve.GENERATORS``), and the evaluated bundle (fitted on
train + validation, as ``precision-pain train`` writes it) is valued on K independent test
samples of ``--test-n`` new patients from the same process:

    uv run python benchmarks/dr_coverage.py --test-samples 20 --generator blind

The gain over one-size-fits-all is valued twice per test set, side by side: against the
single treatment chosen on the training episodes (train + validation, as ``precision-pain
evaluate`` chooses it: ``evaluate.core.choose_one_size_fits_all``) and against the one with
the highest DR value on the test set itself (the choice before 2026-12-04, optimistic by the
winner's curse). Both use the same test set, bundle and bootstrap.

``--cross-fitted M`` asks what a researcher with one extract can show: on each of M extracts
of ``--n`` patients of ``--generator`` (seeds ``--extract-seed`` + k), side by side, the gain
over one-size-fits-all as ``precision-pain evaluate`` reports it from the test split (the
evaluated bundle, its training choice of the single treatment) and cross-fitted over every
patient of the extract (``evaluate.cross_fitted_folds``, ``--folds``: ``evaluate.crossfit``),
each beside its own truth (the same policies valued with the ground truth), and, where the
generator's truth records usual care's probabilities, the cross-fitted gain valued with those
in place of the fitted propensity models (how much of the error is the propensity model's):

    uv run python benchmarks/dr_coverage.py --cross-fitted 20 --generator alt --n 5000
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_refit import train_both  # noqa: E402
from learning_curve import GENERATORS, cohort  # noqa: E402

from precision_pain.config import load_params  # noqa: E402
from precision_pain.data.prepare import align_truth, prepare_cohort  # noqa: E402
from precision_pain.data.simulate import simulate_cohort  # noqa: E402
from precision_pain.data.split import split_cohort  # noqa: E402
from precision_pain.evaluate.core import (choose_one_size_fits_all, evaluate,  # noqa: E402
                                          headline_gain)
from precision_pain.evaluate.crossfit import TRUE_PROPENSITY, cross_fitted_gain  # noqa: E402
from precision_pain.models.train import modeled_treatments, train_bundle  # noqa: E402
from precision_pain.outcome import OutcomeSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEST_SEED = 555000  # test sample k is drawn with seed TEST_SEED + k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n", type=int, help="patients [simulate.n_patients; with "
                        "--test-samples, in the extract: 20,000]")
    parser.add_argument("--outcome", choices=["responder", "nrs_change"], default="responder",
                        help="what the response models predict (prepare.outcome)")
    parser.add_argument("--test-samples", type=int,
                        help="train once and value on this many fresh test samples instead")
    parser.add_argument("--generator", default="simulator", choices=["simulator", *GENERATORS],
                        help="with --test-samples: the data-generating process")
    parser.add_argument("--test-n", type=int, default=5000,
                        help="with --test-samples: patients per test sample")
    parser.add_argument("--extract-seed", type=int, default=20261202,
                        help="with --test-samples: the extract's seed (sample k: 555000 + k); "
                        "with --cross-fitted: extract k's seed is this + k")
    parser.add_argument("--cross-fitted", type=int, metavar="M",
                        help="M extracts, each valued from its test split and cross-fitted")
    parser.add_argument("--folds", type=int, default=5,
                        help="with --cross-fitted: evaluate.cross_fitted_folds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    params = load_params(ROOT / "params.yaml")
    if args.cross_fitted:
        over_extracts(params, args)
        return
    if args.test_samples:
        over_test_samples(params, args)
        return
    made = simulate_cohort(params.simulate, params.prepare.response_threshold,
                           n_patients=args.n)
    prepared = prepare_cohort(made.cohort, "synthetic", params.prepare.response_threshold)
    truth = align_truth(made.truth, prepared, "synthetic")
    parts = split_cohort(prepared, params.split.valid_fraction, params.split.test_fraction,
                         params.split.seed)
    test_truth = truth[truth["patient_id"].isin(parts["test"]["patient_id"])]
    errors, covered, gains = [], [], {source: [] for source in SOURCES}
    print(HEADER.replace("sample", "  seed"))
    for k in range(args.seeds):
        model = params.model.model_copy(update={"seed": params.model.seed + k})
        treatments, _ = modeled_treatments(parts["train"], parts["valid"], model)
        bundle = train_bundle(parts["train"], parts["valid"], treatments, model,
                              params.prepare.response_threshold,
                              harm_weight=params.evaluate.harm_weight,
                              propensity_clip=params.evaluate.propensity_clip,
                              outcome=OutcomeSpec(args.outcome,
                                                  params.evaluate.adverse_event_nrs_points))
        error, within, gain = value_once(parts["test"], bundle, test_truth, params,
                                         f"{model.seed:>6}", training(parts))
        errors.append(error)
        covered.append(within)
        for source in SOURCES:
            gains[source].append(gain[source])
    report(errors, covered, f"{args.seeds} seeds")
    report_gains(gains, f"{args.seeds} seeds")


def over_test_samples(params, args: argparse.Namespace) -> None:
    """One evaluated bundle, valued on ``args.test_samples`` independent test samples."""
    outcome = OutcomeSpec(args.outcome, params.evaluate.adverse_event_nrs_points)
    extract, _ = cohort(args.generator, args.n or 20000, args.extract_seed, params)
    parts, bundle, _ = train_both(extract, params, outcome)
    errors, covered, gains = [], [], {source: [] for source in SOURCES}
    print(HEADER)
    for k in range(args.test_samples):
        test, truth = cohort(args.generator, args.test_n, TEST_SEED + k, params)
        test = test[test["treatment"].isin(bundle.treatments)].reset_index(drop=True)
        error, within, gain = value_once(test, bundle, truth, params, f"{k:>6}", training(parts))
        errors.append(error)
        covered.append(within)
        for source in SOURCES:
            gains[source].append(gain[source])
    label = f"{args.generator}, {args.test_samples} test samples"
    report(errors, covered, label)
    report_gains(gains, label)


def over_extracts(params, args: argparse.Namespace) -> None:
    """Per extract: the gain from the test split beside the cross-fitted one, each against
    its truth; then each route's error, coverage and how often its interval is above 0."""
    outcome = OutcomeSpec(args.outcome, params.evaluate.adverse_event_nrs_points)
    params = params.model_copy(update={"evaluate": params.evaluate.model_copy(
        update={"cross_fitted_folds": args.folds})})
    known = "cross-fitted, the truth's propensities"
    rows: dict[str, list[tuple[float, bool, float, bool]]] = {
        "test split": [], "cross-fitted": [], known: []}
    print("extract  test split: single treatment, DR gain (95 % interval), true gain  |  "
          f"cross-fitted over {args.folds} folds: the same  |  cross-fitted with the truth's "
          "propensities: the same")
    for k in range(args.cross_fitted):
        extract, truth = cohort(args.generator, args.n or 5000, args.extract_seed + k, params)
        parts, bundle, _ = train_both(extract, params, outcome)
        single = choose_one_size_fits_all(training(parts), bundle, params.evaluate)
        test_truth = truth[truth["patient_id"].isin(parts["test"]["patient_id"])]
        split = evaluate(parts["test"], bundle, test_truth, params.evaluate,
                         one_size_fits_all=single).summary["off_policy"]
        crossed = cross_fitted_gain(extract, params, truth, outcome)
        line = f"{k:>7}"
        # the last only where the generator's truth records usual care's probabilities
        for name, o, baseline in (("test split", split, "one_size_fits_all"),
                                  ("cross-fitted", crossed, "one_size_fits_all"),
                                  (known, crossed, f"one_size_fits_all{TRUE_PROPENSITY}")):
            gain = headline_gain(o, baseline)
            if gain is None:
                continue
            est, low, high = gain["estimate"], gain["ci_low"], gain["ci_high"]
            true = o["model_true_gain_over_one_size_fits_all"]
            line += (f"  |  {o['one_size_fits_all_treatment'] if name != known else 'the same'}"
                     f" {est:+.4f} ({low:+.4f} to {high:+.4f}) {true:+.4f}")
            rows[name].append((est - true, low <= true <= high, high - low, low > 0))
        print(line, flush=True)
    for name, values in rows.items():
        if not values:
            continue
        errors, covered, widths, above = zip(*values)
        report(errors, covered, f"{args.generator}, {args.cross_fitted} extracts of "
               f"{args.n or 5000}, gain over one-size-fits-all, {name}")
        print(f"  mean interval width {np.mean(widths):.4f}; interval above 0 in "
              f"{sum(above)}/{len(above)}")


SOURCES: tuple[str, ...] = ("training", "test")
HEADER = ("sample  DR estimate (95 % interval)   true    error  |  one size chosen on training: "
          "treatment, DR gain (95 % interval), true gain, error  |  chosen on test: the same")


def training(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The episodes the evaluated bundle was fitted on (train + validation)."""
    return pd.concat([parts["train"], parts["valid"]], ignore_index=True)


def value_once(test, bundle, truth, params, label: str, episodes
               ) -> tuple[float, bool, dict[str, tuple[float, bool, float, bool]]]:
    """The DR estimate of ``bundle``'s recommendations on ``test`` against the truth: its
    error and whether its 95 % interval covers the true value; for the paired DR gain over
    one-size-fits-all care, per source of that single treatment's choice (``SOURCES``): its
    error, whether the interval covers the true gain, the true gain over the best single
    treatment by the truth minus the true gain over the chosen one, and whether the interval
    lies above 0 (one line printed)."""
    chosen = {"training": choose_one_size_fits_all(episodes, bundle, params.evaluate),
              "test": None}
    results = {s: evaluate(test, bundle, truth, params.evaluate, one_size_fits_all=chosen[s])
               for s in SOURCES}
    off = results["test"].summary["off_policy"]
    dr, low, high = off["model_dr_net_benefit"], off["model_dr_ci_low"], off["model_dr_ci_high"]
    true = off["model_true_net_benefit"]
    line, gains = f"{label}  {dr:.4f} ({low:.4f}-{high:.4f})   {true:.4f}  {dr - true:+.4f}", {}
    for source in SOURCES:
        o = results[source].summary["off_policy"]
        key = "model_dr_gain_over_one_size_fits_all"
        gain, g_low, g_high = o[key], o[f"{key}_ci_low"], o[f"{key}_ci_high"]
        g_true = o["model_true_gain_over_one_size_fits_all"]
        # how far the chosen single treatment falls short of the truth's best one
        policy = results[source].policy
        best = policy["policy"]["values"]["one_size_fits_all"]["mean_true_net_benefit"][
            "estimate"]
        short = best - policy["off_policy"]["net_benefit"]["one_size_fits_all"]["true"]
        line += (f"  |  {o['one_size_fits_all_treatment']} ({o['one_size_fits_all_chosen_on']})"
                 f" {gain:+.4f} ({g_low:+.4f} to {g_high:+.4f}) {g_true:+.4f} {gain - g_true:+.4f}")
        gains[source] = (gain - g_true, g_low <= g_true <= g_high, short, g_low > 0)
    print(line, flush=True)
    return dr - true, low <= true <= high, gains


def report_gains(gains: dict[str, list[tuple[float, bool, float, bool]]], label: str) -> None:
    """``report`` for the gain over one-size-fits-all, per source of the single treatment."""
    for source in SOURCES:
        errors, covered, short, above = zip(*gains[source])
        report(errors, covered, f"{label}, gain over one-size-fits-all chosen on {source}")
        print(f"  chosen treatment below the truth's best single treatment in "
              f"{sum(s > 1e-12 for s in short)}/{len(short)} (mean shortfall "
              f"{np.mean(np.clip(short, 0, None)):.4f} in net benefit); interval above 0 in "
              f"{sum(above)}/{len(above)}")


def report(errors: Sequence[float], covered: Sequence[bool], label: str) -> None:
    """Mean and largest absolute error, mean signed error, and the interval's coverage."""
    err = np.asarray(errors)
    print(f"\n{label}: mean |DR - true| {np.abs(err).mean():.4f}, largest "
          f"{np.abs(err).max():.4f}; mean DR - true {err.mean():+.4f} (standard error "
          f"{err.std(ddof=1) / np.sqrt(len(err)):.4f}); the interval covers the truth in "
          f"{sum(covered)}/{len(covered)} ({100 * np.mean(covered):.0f} %)")


if __name__ == "__main__":
    main()
