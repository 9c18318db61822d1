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
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from precision_pain.config import load_params
from precision_pain.data.prepare import align_truth, prepare_cohort
from precision_pain.data.simulate import simulate_cohort
from precision_pain.data.split import split_cohort
from precision_pain.evaluate.core import evaluate
from precision_pain.models.train import modeled_treatments, train_bundle
from precision_pain.outcome import OutcomeSpec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n", type=int, help="patients [simulate.n_patients]")
    parser.add_argument("--outcome", choices=["responder", "nrs_change"], default="responder",
                        help="what the response models predict (prepare.outcome)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    params = load_params(ROOT / "params.yaml")
    made = simulate_cohort(params.simulate, params.prepare.response_threshold,
                           n_patients=args.n)
    prepared = prepare_cohort(made.cohort, "synthetic", params.prepare.response_threshold)
    truth = align_truth(made.truth, prepared, "synthetic")
    parts = split_cohort(prepared, params.split.valid_fraction, params.split.test_fraction,
                         params.split.seed)
    test_truth = truth[truth["patient_id"].isin(parts["test"]["patient_id"])]
    errors, covered = [], []
    print("seed  DR estimate (95 % interval)   true    error")
    for k in range(args.seeds):
        model = params.model.model_copy(update={"seed": params.model.seed + k})
        treatments, _ = modeled_treatments(parts["train"], parts["valid"], model)
        bundle = train_bundle(parts["train"], parts["valid"], treatments, model,
                              params.prepare.response_threshold,
                              harm_weight=params.evaluate.harm_weight,
                              propensity_clip=params.evaluate.propensity_clip,
                              outcome=OutcomeSpec(args.outcome,
                                                  params.evaluate.adverse_event_nrs_points))
        off = evaluate(parts["test"], bundle, test_truth, params.evaluate).summary["off_policy"]
        dr, low, high = off["model_dr_net_benefit"], off["model_dr_ci_low"], off["model_dr_ci_high"]
        true = off["model_true_net_benefit"]
        errors.append(dr - true)
        covered.append(low <= true <= high)
        print(f"{model.seed:>4}  {dr:.4f} ({low:.4f}-{high:.4f})   {true:.4f}  {dr - true:+.4f}",
              flush=True)
    errors_arr = np.abs(errors)
    print(f"\n{args.seeds} seeds: mean |DR - true| {errors_arr.mean():.4f}, largest "
          f"{errors_arr.max():.4f}; the interval covers the truth in "
          f"{sum(covered)}/{len(covered)} ({100 * np.mean(covered):.0f} %)")


if __name__ == "__main__":
    main()
