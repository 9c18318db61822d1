"""What treatment plans cost: the synthetic generator with and without simulate.plans, the
plan checks over every valid plan, and predict with the plan learner (a script, not a test).

    python benchmarks/plans.py --n 20000
    python benchmarks/plans.py --n 20000 --predict-models models/bundle --predict-n 20000

Prints, side by side in one run, the generator's wall time without and with plans (and
their ratio), the number of plan-truth rows, and the time of
``plan_checks.enumerate_plans`` on the prepared cohort (every valid plan of each
patient's condition with the checks that fire), per 1,000 patients.

With ``--predict-models`` (a bundle trained on a plan cohort, so it carries the plan
learner: ``simulate.plans: true``, then prepare, split, train), it also times predict's
core (:func:`precision_pain.predict.recommend.recommend`, chunk by chunk as
``precision-pain predict`` runs it, every output but the file writing) on ``--predict-n``
patients of the simulated cohort, with the plan learner (every valid plan of up to 3
components scored, checked and ranked, the top ``predict.top_k_explained`` explained with
exact SHAP) and without it (the same bundle, single treatments only): wall and CPU seconds
and patients per second, medians of ``--repeat``, alternately in one run, and the best run
(on a shared machine other work only ever adds time, so the best run is the closest to
what predict itself costs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--n", type=int, default=20_000, help="patients to simulate")
    parser.add_argument("--repeat", type=int, default=3, help="timings per case; medians")
    parser.add_argument("--predict-models", type=Path,
                        help="a bundle with the plan learner: also time predict with plans")
    parser.add_argument("--predict-n", type=int, default=20_000,
                        help="patients to predict for with --predict-models")
    return parser.parse_args()


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    """Time the generator with and without plans, then the plan checks."""
    from precision_pain.config import load_params
    from precision_pain.data.prepare import prepare_cohort
    from precision_pain.data.simulate import simulate_cohort
    from precision_pain.predict.plan_checks import enumerate_plans

    args = parse_args()
    params = load_params(args.params)
    with_plans = params.simulate.model_copy(update={"plans": True})
    t_off, _ = _median_time(lambda: simulate_cohort(params.simulate, 0.3, args.n), args.repeat)
    t_on, sim = _median_time(lambda: simulate_cohort(with_plans, 0.3, args.n), args.repeat)
    print(f"simulate {args.n:,} patients: {t_off:.2f} s without plans, {t_on:.2f} s with "
          f"plans ({t_on / t_off:.1f}x); plan truth {len(sim.plan_truth):,} rows")
    prepared = prepare_cohort(sim.cohort, "bench", None, require_outcomes=False)
    t_chk, table = _median_time(lambda: enumerate_plans(prepared), args.repeat)
    print(f"enumerate_plans on {len(prepared):,} patients: {t_chk:.2f} s "
          f"({1000 * t_chk / len(prepared):.2f} s per 1,000 patients, {len(table):,} rows)")
    if args.predict_models is not None:
        time_predict(params, args.predict_models, sim.cohort, args.predict_n, args.repeat)


def time_predict(params, bundle_dir: Path, cohort, n: int, repeat: int) -> None:
    """predict's core with and without the plan learner, alternately; medians."""
    from dataclasses import replace

    from precision_pain.models.bundle import load_bundle
    from precision_pain.predict.recommend import options_from_params, predict_chunks

    with_plans = load_bundle(bundle_dir)
    if with_plans.plan_models is None:
        raise SystemExit(f"{bundle_dir}: this bundle has no plan learner; train it on a plan "
                         "cohort (simulate.plans: true)")
    bundles = {"with plans": with_plans, "single treatments only": replace(with_plans,
                                                                           plan_models=None)}
    raw = cohort.drop(columns=["treatment", "plan", "contract_version", "pain_followup",
                               "adverse_event"]).head(n)
    options = options_from_params(params)
    size = params.predict.chunk_size
    chunks = [raw.iloc[i:i + size] for i in range(0, len(raw), size)]
    wall: dict[str, list[float]] = {k: [] for k in bundles}
    cpu: dict[str, list[float]] = {k: [] for k in bundles}
    for _ in range(repeat):
        for name, bundle in bundles.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _result in predict_chunks(iter(chunks), bundle, "bench", options):
                pass
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    plans = len(with_plans.plan_models.plans)
    for name in bundles:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        best = min(wall[name])
        print(f"predict core, {name} ({plans if name == 'with plans' else 0} plans): "
              f"{len(raw):,} patients in {w:.2f} s wall ({len(raw) / w:,.0f} patients/s), "
              f"{c:.2f} CPU s ({len(raw) / c:,.0f} patients per CPU-second); best of "
              f"{len(wall[name])} {best:.2f} s ({len(raw) / best:,.0f} patients/s)")
    ratio = statistics.median(wall["with plans"]) / statistics.median(
        wall["single treatments only"])
    print(f"plans cost {ratio:.1f}x the single-treatment predict (wall)")
    time_plan_scoring(with_plans, raw, repeat)


def time_plan_scoring(bundle, raw, repeat: int) -> None:
    """Scoring every valid plan of every patient, both plan boosters: the one-walk scorer
    (models/plan_scoring.py, what predict uses) against xgboost's ``inplace_predict`` on the
    same (patient, plan) pairs' design rows, alternately; medians, and the largest
    difference between the two."""
    import numpy as np

    from precision_pain.data.features import build_features
    from precision_pain.data.prepare import prepare_cohort
    from precision_pain.models.plan_model import condition_codes
    from precision_pain.models.plan_scoring import cached_scorer
    from precision_pain.models.treeshap import available_cores
    from precision_pain.plans import parse_plan, plan_eligibility

    prepared = prepare_cohort(raw, "bench", None, require_outcomes=False)
    X = build_features(prepared)
    models = bundle.plan_models
    plans = models.plans
    eligible = plan_eligibility(prepared["condition"], [parse_plan(p) for p in plans])
    rows, cols = np.nonzero(eligible)
    names = np.asarray(plans, dtype=object)[cols]
    boosters = [models.model(o) for o in ("response", "adverse_event")]
    for model in boosters:  # tables and compilation before the clock
        cached_scorer(model, plans, model.treatments)
    F, code = X.to_numpy(np.float32), condition_codes(X)

    def scorer() -> list:
        return [cached_scorer(m, plans, m.treatments).margins(F, code, eligible,
                                                               available_cores())
                for m in boosters]

    def xgboost() -> list:
        out = []
        for m in boosters:
            margin = np.full(eligible.shape, np.nan)
            for start in range(0, len(rows), 100_000):
                r, c = rows[start:start + 100_000], names[start:start + 100_000]
                margin[r, cols[start:start + 100_000]] = m.booster_.inplace_predict(
                    m.design_of(X.iloc[r], c, m.treatments), validate_features=False,
                    predict_type="margin")
            out.append(margin)
        return out

    times: dict[str, list[float]] = {"scorer": [], "xgboost": []}
    results = {}
    for _ in range(repeat):
        for name, fn in (("scorer", scorer), ("xgboost", xgboost)):
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    t_s, t_x = statistics.median(times["scorer"]), statistics.median(times["xgboost"])
    diff = max(float(np.nanmax(np.abs(a - b))) for a, b in zip(results["scorer"],
                                                              results["xgboost"]))
    trees = sum(m.booster_.num_boosted_rounds() for m in boosters)
    print(f"plan scoring ({len(rows):,} patient-plan pairs, {trees:,} trees): one walk per "
          f"tree {t_s:.2f} s, xgboost inplace_predict {t_x:.2f} s ({t_x / t_s:.1f}x); "
          f"largest margin difference {diff:.1e}")


if __name__ == "__main__":
    main()
