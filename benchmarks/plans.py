"""What treatment plans cost: the synthetic generator with and without simulate.plans, and
the plan checks over every valid plan (a script, not a test).

    python benchmarks/plans.py --n 20000

Prints, side by side in one run, the generator's wall time without and with plans (and
their ratio), the number of plan-truth rows, and the time of
``plan_checks.enumerate_plans`` on the prepared cohort (every valid plan of each
patient's condition with the checks that fire), per 1,000 patients.
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


if __name__ == "__main__":
    main()
