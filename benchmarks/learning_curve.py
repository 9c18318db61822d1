"""Learning curves of every model type on four data-generating processes.

For each generator (the project's simulator; ``benchmarks/alt_cohort.py``, written
independently with other functional forms; ``benchmarks/blind_cohort.py`` and
``benchmarks/shift_cohort.py``, written blind to the simulator and the models), cohort size
and model type, this runs the
pipeline's own code (prepare -> split -> ``train_bundle`` -> ``evaluate`` with the ground
truth, the same functions ``dvc repro`` runs; nothing is copied) and prints the share of
the oracle's gain over the best single treatment for everyone that the recommendations
capture, with its 95 % bootstrap interval, at harm weights 0, 0.5 and 1; the response
calibration slopes in 0.8-1.2; and the doubly robust estimate of the policy's value minus
its true value. Models are trained at each harm weight (the pooled learner uses it to
choose its hyperparameters). Every choice is made on the validation split; the test split
only reports.

    uv run python benchmarks/learning_curve.py --sizes 2000 5000 20000 --out docs/learning_curve
    uv run python benchmarks/learning_curve.py --quick     # one size, one seed: a smoke run
    uv run python benchmarks/learning_curve.py --outcome nrs_change --out docs/learning_curve_nrs

``--outcome nrs_change`` trains on the change in NRS pain (``prepare.outcome: nrs_change``,
docs/evaluation.md) and adds the response RMSE and sqrt-PEHE to each row.

Writes ``<out>.md`` (a table per generator) and ``<out>.png`` (the curves).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from precision_pain.config import load_params  # noqa: E402
from precision_pain.data.prepare import align_truth, prepare_cohort  # noqa: E402
from precision_pain.data.simulate import mask_measurements, simulate_cohort  # noqa: E402
from precision_pain.data.split import split_cohort  # noqa: E402
from precision_pain.evaluate.core import evaluate  # noqa: E402
from precision_pain.models.train import modeled_treatments, train_bundle  # noqa: E402
from precision_pain.outcome import OutcomeSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HARM_WEIGHTS = (0.0, 0.5, 1.0)
MODEL_TYPES = ("pooled_xgboost", "xgboost", "logistic")
# Generators besides the project's simulator, each a module of benchmarks/ whose
# generate(n, seed) returns (contract cohort, ground truth): written independently of the
# simulator (alt), and blind to it, to the models and to the other generators (blind; shift,
# with an unrecorded confounder and heavy-tailed pain).
GENERATORS = {"alt": "alt_cohort", "blind": "blind_cohort", "shift": "shift_cohort"}


def raw_cohort(generator: str, n: int, seed: int, params=None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A contract cohort (with its treatments and outcomes) and its ground truth, as the
    generator writes them: ``simulator`` (the project's, with ``params.simulate``, params.yaml's
    by default) or one of ``GENERATORS``."""
    if generator == "simulator":
        params = params or load_params(ROOT / "params.yaml")
        made = simulate_cohort(params.simulate, params.prepare.response_threshold,
                               n_patients=n, seed=seed)
        return made.cohort, made.truth
    if generator not in GENERATORS:
        raise SystemExit(f"unknown generator {generator!r}: simulator or "
                         f"{', '.join(GENERATORS)}")
    return _module(GENERATORS[generator]).generate(n, seed)


def _module(name: str):
    """A module of benchmarks/ by file, whatever ``sys.path`` holds (the tests load these
    scripts by path)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def cohort(generator: str, n: int, seed: int, params, missing: dict[str, float] | None = None,
           mechanism: str = "mcar") -> tuple[pd.DataFrame, pd.DataFrame]:
    """A prepared cohort and its aligned ground truth from one of the generators; with
    ``missing``, each of those measurements left empty for that share of patients, completely
    at random or (``mechanism`` "mar") following recorded features (``mask_measurements``;
    the truth keeps the true values)."""
    raw, truth = raw_cohort(generator, n, seed, params)
    raw = mask_measurements(raw, missing or {}, seed, mechanism)
    prepared = prepare_cohort(raw, generator, params.prepare.response_threshold)
    return prepared, align_truth(truth, prepared, generator)


def run_one(prepared: pd.DataFrame, truth: pd.DataFrame, model_type: str, harm_weight: float,
            params, n_bootstrap: int, outcome: OutcomeSpec = OutcomeSpec()) -> dict[str, float]:
    """Train and evaluate one model type at one harm weight; the headline figures."""
    parts = split_cohort(prepared, params.split.valid_fraction, params.split.test_fraction,
                         params.split.seed)
    model = params.model.model_copy(update={"type": model_type})
    start = time.perf_counter()
    treatments, _ = modeled_treatments(parts["train"], parts["valid"], model)
    bundle = train_bundle(parts["train"], parts["valid"], treatments, model,
                          params.prepare.response_threshold, harm_weight=harm_weight,
                          propensity_clip=params.evaluate.propensity_clip, outcome=outcome)
    seconds = time.perf_counter() - start
    settings = params.evaluate.model_copy(update={"harm_weight": harm_weight,
                                                  "n_bootstrap": n_bootstrap})
    test_truth = truth[truth["patient_id"].isin(parts["test"]["patient_id"])]
    result = evaluate(parts["test"], bundle, test_truth, settings)
    share = result.policy["policy"]["share_of_oracle_gain_captured"]
    off = result.summary.get("off_policy", {})
    slopes = result.summary["response_calibration_slope"]
    against = result.summary["response_calibration_slope_against_truth"]
    extra = ({"sqrt_pehe": result.summary["policy"]["sqrt_pehe"],
              "response_rmse": result.summary["mean_response_rmse"]} if outcome.continuous
             else {})
    return {**extra, "share": share["estimate"], "share_low": share["ci_low"],
            "share_high": share["ci_high"],
            "slopes_in_range": slopes["share_within_0.8_1.2"],
            "slopes_vs_truth_in_range": against["share_within_0.8_1.2"],
            "dr_error": off.get("model_dr_error", float("nan")), "train_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 20000])
    parser.add_argument("--models", nargs="+", default=list(MODEL_TYPES))
    parser.add_argument("--generators", nargs="+", default=["simulator", "alt", "blind"],
                        choices=["simulator", *GENERATORS])
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--n-bootstrap", type=int, default=100)
    parser.add_argument("--harm-weights", type=float, nargs="+", default=list(HARM_WEIGHTS))
    parser.add_argument("--quick", action="store_true", help="2,000 patients, pooled only")
    parser.add_argument("--no-refit", action="store_true",
                        help="the pooled learner without its refit on train + validation "
                             "(refit_on_validation: false), to measure what the refit adds")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml",
                        help="the parameters file (a variant to compare with the default)")
    parser.add_argument("--outcome", choices=["responder", "nrs_change"], default="responder",
                        help="what the response models predict (prepare.outcome)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "learning_curve")
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="earlier runs' <out>.csv files to put in the same tables and plot "
                             "(this run's rows replace theirs for the same settings)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.models, args.n_bootstrap = [2000], ["pooled_xgboost"], 20
    logging.basicConfig(level=logging.WARNING)
    params = load_params(args.params)
    if args.no_refit:
        hyper = params.model.hyperparameters
        hyper = {**hyper, "pooled_xgboost": {**hyper["pooled_xgboost"],
                                             "refit_on_validation": False}}
        params = params.model_copy(update={
            "model": params.model.model_copy(update={"hyperparameters": hyper})})
    rows = []
    for generator in args.generators:
        for n in args.sizes:
            prepared, truth = cohort(generator, n, args.seed, params)
            for model_type in args.models:
                for hw in args.harm_weights:
                    r = run_one(prepared, truth, model_type, hw, params, args.n_bootstrap,
                                OutcomeSpec(args.outcome,
                                            params.evaluate.adverse_event_nrs_points))
                    rows.append({"generator": generator, "patients": n, "model": model_type,
                                 "harm_weight": hw, **r})
                    print(f"{generator:9} {n:>7} {model_type:15} hw={hw:<3} share "
                          f"{100 * r['share']:5.1f} % ({100 * r['share_low']:.1f}-"
                          f"{100 * r['share_high']:.1f}) slopes {r['slopes_in_range']:.1f} "
                          f"DR-true {r['dr_error']:+.3f} train {r['train_seconds']:.0f} s"
                          + (f" sqrt-PEHE {r['sqrt_pehe']:.3f} RMSE {r['response_rmse']:.3f}"
                             if "sqrt_pehe" in r else ""),
                          flush=True)
    keys = ["generator", "patients", "model", "harm_weight"]
    earlier = [pd.read_csv(f) for f in args.merge]  # read before <out>.csv may be rewritten
    table = (pd.concat([*earlier, pd.DataFrame(rows)])
             .drop_duplicates(keys, keep="last").sort_values(keys[1:], kind="stable"))
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    write_markdown(table, args.out.with_suffix(".md"))
    plot(table, args.out.with_suffix(".png"))


def write_markdown(table: pd.DataFrame, path: Path) -> None:
    """One markdown table per generator: share captured (interval) per size and harm weight."""
    parts = []
    pehe = "sqrt_pehe" in table.columns
    for generator, frame in table.groupby("generator", sort=False):
        lines = ["| patients | model | hw 0 | hw 0.5 | hw 1 | slopes in 0.8-1.2: observed / "
                 "against the truth (hw 0.5) | DR - true (hw 0.5) | train s (hw 0.5) |"
                 + (" sqrt-PEHE / RMSE, NRS points (hw 0.5) |" if pehe else ""),
                 "|---|---|---|---|---|---|---|---|" + ("---|" if pehe else "")]
        for (n, model), g in frame.groupby(["patients", "model"], sort=False):
            by = g.set_index("harm_weight")
            cells = [f"{100 * by.loc[h, 'share']:.1f} % ({100 * by.loc[h, 'share_low']:.0f}-"
                     f"{100 * by.loc[h, 'share_high']:.0f})" if h in by.index else "not run"
                     for h in HARM_WEIGHTS]
            mid = by.loc[0.5] if 0.5 in by.index else by.iloc[0]
            lines.append(f"| {n:,} | {model} | {' | '.join(cells)} | "
                         f"{_share(mid['slopes_in_range'])} / "
                         f"{_share(mid.get('slopes_vs_truth_in_range', float('nan')))} | "
                         f"{mid['dr_error']:+.3f} | {mid['train_seconds']:.0f} |"
                         + (f" {mid['sqrt_pehe']:.3f} / {mid['response_rmse']:.3f} |"
                            if pehe else ""))
        parts.append(f"### {generator}\n\n" + "\n".join(lines) + "\n")
    path.write_text("\n".join(parts))


def _share(value: float) -> str:
    """A share of treatments, or "-" where it was not measured or is undefined."""
    return "-" if pd.isna(value) else f"{value:.1f}"


def plot(table: pd.DataFrame, path: Path) -> None:
    """Share of the oracle's gain against cohort size, per generator and model (hw 0.5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generators = list(dict.fromkeys(table["generator"]))
    fig, axes = plt.subplots(1, len(generators), figsize=(5 * len(generators), 3.6),
                             sharey=True, squeeze=False)
    for ax, generator in zip(axes[0], generators):
        frame = table[(table["generator"] == generator) & (table["harm_weight"] == 0.5)]
        for model, g in frame.groupby("model", sort=False):
            g = g.sort_values("patients")
            ax.plot(g["patients"], 100 * g["share"], marker="o", label=model)
            ax.fill_between(g["patients"], 100 * g["share_low"], 100 * g["share_high"],
                            alpha=0.15)
        ax.set_xscale("log")
        ax.axhline(0, color="#888", lw=0.8)
        ax.set_title(f"{generator} (harm weight 0.5)")
        ax.set_xlabel("patients in the cohort")
    axes[0][0].set_ylabel("share of the oracle's gain captured (%)")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
