"""What exact TreeSHAP of the pooled response model costs per explained row, by trees,
depth and xgboost threads (a script, not a test).

    python benchmarks/shap_cost.py --models models/bundle      # a pooled bundle
    python benchmarks/shap_cost.py --models DIR --depths 3 6   # also refit at other depths

Exact SHAP of the explained rows (ranks 1..top_k_explained of every patient) is most of
predict's work with the pooled learner. For --rows explained rows of a synthetic cohort
(each patient under one treatment of the bundle, in turn) it prints the CPU and wall time
of ``pred_contribs`` per 1,000 rows for the bundle's response booster cut to each tree
count of --trees (``booster[:k]`` is the model a k-tree fit makes), with 1 and 2 threads,
and of the same values from the per-leaf tables predict uses (models/treeshap.py),
plus boosters refitted at each of --depths (same data and settings as training, the
bundle's tree count) to show what a smaller model would cost. Choosing the model is the
learner's business (validation DR value, params.yaml); this only measures speed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--models", type=Path, required=True, help="a pooled_xgboost bundle")
    parser.add_argument("--rows", type=int, default=2_000, help="explained rows to time")
    parser.add_argument("--trees", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--depths", type=int, nargs="*", default=[],
                        help="refit the response model at these depths and time it too")
    parser.add_argument("--repeat", type=int, default=3, help="timings per case; medians")
    return parser.parse_args()


def explained_rows(params, bundle, n: int):
    """(design matrix, column names): n synthetic patients, each under one treatment."""
    from precision_pain.data.features import build_features
    from precision_pain.data.prepare import prepare_cohort
    from precision_pain.data.simulate import simulate_cohort
    from precision_pain.models.pooled import design, design_names

    cohort = simulate_cohort(params.simulate, params.prepare.response_threshold,
                             n_patients=n, seed=7).cohort
    X = build_features(prepare_cohort(cohort, "synthetic", params.prepare.response_threshold))
    treatments = bundle.model(bundle.treatments[0], "response").shared.treatments
    given = np.array(treatments, dtype=object)[np.arange(n) % len(treatments)]
    return design(X, given, treatments), design_names(treatments)


def time_contribs(booster, values, names, threads: int, repeat: int) -> tuple[float, float]:
    """Median (CPU s, wall s) of pred_contribs on the rows, per 1,000 rows."""
    import xgboost as xgb

    booster.set_param({"nthread": threads})
    matrix = xgb.DMatrix(values, feature_names=names, nthread=threads)
    cpu, wall = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        booster.predict(matrix, pred_contribs=True)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    scale = 1000 / len(values)
    return statistics.median(cpu) * scale, statistics.median(wall) * scale


def time_tables(booster, values, threads: int, repeat: int) -> tuple[float, float, float]:
    """Median (CPU s, wall s) per 1,000 rows of the same values from predict's per-leaf
    tables (models/treeshap.py), and the CPU seconds of building the tables once."""
    from precision_pain.models import treeshap

    c0 = time.process_time()
    tables = treeshap.build_tables([booster])
    build = time.process_time() - c0
    if tables is None:
        return float("nan"), float("nan"), build
    treeshap.shap_values(tables, values[:10])  # load the compiled kernel
    cpu, wall = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        treeshap.shap_values(tables, values, threads=threads)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    scale = 1000 / len(values)
    return statistics.median(cpu) * scale, statistics.median(wall) * scale, build


def refit(params, bundle, depth: int):
    """The pooled response booster refitted at ``depth`` on the training data of the
    project's synthetic cohort (params' settings, the bundle's tree count)."""
    from precision_pain.data.features import build_features
    from precision_pain.data.prepare import prepare_cohort
    from precision_pain.data.simulate import simulate_cohort
    from precision_pain.data.split import split_cohort
    from precision_pain.models.pooled import PooledModel

    pooled = bundle.model(bundle.treatments[0], "response").shared
    settings = dict(params.model.hyperparameters["pooled_xgboost"]["response"])
    hyper = {k: v for k, v in settings.items()
             if k not in {"max_depth", "n_estimators", "default"}}
    cohort = simulate_cohort(params.simulate, params.prepare.response_threshold).cohort
    prepared = prepare_cohort(cohort, "synthetic", params.prepare.response_threshold)
    train = split_cohort(prepared, params.split.valid_fraction, params.split.test_fraction,
                         params.split.seed)["train"]
    train = train[train["treatment"].isin(pooled.treatments)]
    return PooledModel.fit(build_features(train), train["treatment"].to_numpy(),
                           train["response"].to_numpy(), "response", pooled.n_trees,
                           params.model.seed, pooled.treatments, max_depth=depth,
                           **hyper).booster_


def leaves(booster) -> int:
    """Leaves over all trees."""
    return sum(tree.count("leaf=") for tree in booster.get_dump())


def main() -> None:
    """Print the cost table."""
    from precision_pain.config import load_params
    from precision_pain.models.bundle import load_bundle

    args = parse_args()
    params = load_params(args.params)
    bundle = load_bundle(args.models)
    if bundle.model_type != "pooled_xgboost":
        raise SystemExit(f"{args.models} is a {bundle.model_type} bundle; pass a pooled one")
    values, names = explained_rows(params, bundle, args.rows)
    booster = bundle.model(bundle.treatments[0], "response").shared.booster_
    cases = [(f"bundle, {k} trees", booster[:k]) for k in args.trees
             if k <= booster.num_boosted_rounds()]
    cases += [(f"refit at depth {d}, {booster.num_boosted_rounds()} trees",
               refit(params, bundle, d)) for d in args.depths]
    print(f"exact TreeSHAP (pred_contribs) of the pooled response model, {args.rows:,} "
          f"explained rows, median of {args.repeat}; per 1,000 rows:")
    for name, model in cases:
        one = time_contribs(model, values, names, 1, args.repeat)
        two = time_contribs(model, values, names, 2, args.repeat)
        print(f"  {name:38s} {leaves(model):7,} leaves: 1 thread {one[0]:6.2f} CPU-s "
              f"{one[1]:6.2f} s wall; 2 threads {two[0]:6.2f} CPU-s {two[1]:6.2f} s wall")
        t1 = time_tables(model, values, 1, args.repeat)
        t2 = time_tables(model, values, 2, args.repeat)
        print(f"  {'':38s} {'':7s} tables: 1 thread {t1[0]:6.2f} CPU-s {t1[1]:6.2f} s wall; "
              f"2 threads {t2[0]:6.2f} CPU-s {t2[1]:6.2f} s wall (built once in {t1[2]:.2f} "
              f"CPU-s); pred_contribs / tables {one[0] / t1[0]:.1f}x CPU, 1 thread")


if __name__ == "__main__":
    main()
