"""The release check, run the way releases are scored: the documented routes, end to end.

A release is scored on cohorts the project never sees, through the bring-your-own route
(README, "Bring your own de-identified cohort"): the extract as a contract CSV in
``data.cohort``, ``data.ground_truth: null``, ``dvc repro``, then ``precision-pain
predict`` on new patients of the same data-generating process, whose first choices are
scored against that process's truth. This script does exactly that, with the real
commands in a fresh git + DVC repository (a copy of this project's pipeline and code), for
each extract of the benchmark generators (the simulator and ``learning_curve.GENERATORS``):
nothing is called in process, so what it measures is what a user's run gives.

For each harm weight (``predict --harm-weight``) it prints the share of the oracle's gain
over the best single treatment for everyone that the first choices capture (the oracle:
each patient's truly best eligible treatment among those the bundle ranks), with a
patient-bootstrap 95 % interval, and how many first choices are opioids.

    uv run python benchmarks/release_route.py --generators blind alt simulator \\
        --seeds 20261202 20261203 20261204 --out docs/release_route
    uv run python benchmarks/release_route.py --generators alt --n 5000 --unseen 2000

By default the pipeline trains once, at params.yaml's harm weight, and ``predict
--harm-weight`` ranks at each; ``--train-per-harm-weight`` instead sets
``evaluate.harm_weight`` to each and runs ``dvc repro`` again (what ``dvc exp run -S
evaluate.harm_weight=1`` does; the learner chooses its settings with it). ``--keep DIR``
leaves the repositories there (their ``reports/``, ``metrics/`` and predictions). Prints one
CSV row per harm weight at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_refit import UNSEEN_SEED_OFFSET  # noqa: E402
from learning_curve import GENERATORS, HARM_WEIGHTS, raw_cohort  # noqa: E402

from precision_pain.evaluate import policy as pol  # noqa: E402
from precision_pain.registry import TREATMENTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUTCOME_COLUMNS = ("treatment", "pain_followup", "adverse_event", "plan")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n"
                         f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")


def make_repo(repo: Path, extract: pd.DataFrame, params_file: Path = ROOT / "params.yaml"
              ) -> dict[str, str]:
    """A git + DVC repository holding the project's pipeline and code and ``params_file``,
    with the extract as ``data.cohort`` and no ground truth (README's two keys); returns the
    environment to run its commands in."""
    for name in ("dvc.yaml", "pyproject.toml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "data" / "external").mkdir(parents=True)
    extract.to_csv(repo / "data" / "external" / "extract.csv", index=False)
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["data"]["cohort"] = "data/external/extract.csv"
    params["data"]["ground_truth"] = None
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
           "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_REGISTRY_URI", None)
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "bench@example.org"],
                 ["git", "config", "user.name", "bench"], [str(BIN / "dvc"), "init", "-q"],
                 ["git", "add", "-A"], ["git", "commit", "-qm", "extract"]):
        _run(args, repo, env)
    return env


def first_choices(predictions: pd.DataFrame) -> pd.Series:
    """Each patient's rank-1 treatment, indexed by patient_id."""
    first = predictions[predictions["rank"] == 1]
    return first.set_index("patient_id")["treatment"]


def share_captured(choice: pd.Series, truth: pd.DataFrame, harm_weight: float,
                   treatments: list[str], n_bootstrap: int, seed: int
                   ) -> dict[str, float]:
    """Share of the oracle's gain over the best single treatment captured by ``choice``
    (true net benefit P(response) - harm_weight x P(adverse event)), with a 95 % interval
    from resampling patients."""
    ids = list(choice.index)
    net = (pol.wide(truth, "p_response", ids, treatments)
           - harm_weight * pol.wide(truth, "p_adverse_event", ids, treatments))
    eligible = pol.wide(truth.assign(e=truth["eligible"].astype(float)), "e", ids,
                        treatments) > 0
    column = {t: j for j, t in enumerate(treatments)}
    chosen = np.array([column.get(t, -1) for t in choice.to_numpy()])
    rows = np.arange(len(ids))
    valid = (chosen >= 0) & eligible[rows, np.maximum(chosen, 0)]
    # a first choice that is not a usual option (never, from predict) counts as the
    # patient's worst eligible treatment
    worst = np.where(eligible, net, np.inf).min(axis=1)
    model = np.where(valid, net[rows, np.maximum(chosen, 0)], worst)
    oracle = np.where(eligible, net, -np.inf).max(axis=1)
    single = pol.best_single_treatment(net, eligible)
    base = net[:, single]

    def share(idx: np.ndarray) -> float:
        gain = oracle[idx].mean() - base[idx].mean()
        with np.errstate(invalid="ignore", divide="ignore"):  # a resample without any gain
            return float((model[idx].mean() - base[idx].mean()) / gain)

    rng = np.random.default_rng(seed)
    boot = [share(rng.integers(0, len(ids), len(ids))) for _ in range(n_bootstrap)]
    low, high = np.nanpercentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan)
    return {"share": share(rows), "low": float(low), "high": float(high),
            "best_single": treatments[single],
            "ineligible_first": int((~valid).sum()),
            "opioid_first": int(sum(TREATMENTS[t].opioid for t in choice.to_numpy()))}


def set_harm_weight(repo: Path, harm_weight: float) -> None:
    """``evaluate.harm_weight`` in the repository's params.yaml (what ``dvc exp run -S``
    would set)."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["evaluate"]["harm_weight"] = harm_weight
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def run_route(generator: str, seed: int, n: int, n_unseen: int, harm_weights: list[float],
              per_harm_weight: bool, params_file: Path, n_bootstrap: int, repo: Path
              ) -> list[dict[str, object]]:
    """One extract of ``generator`` through the route in a new repository at ``repo``; one
    row per harm weight."""
    extract, _ = raw_cohort(generator, n, seed)
    unseen, truth = raw_cohort(generator, n_unseen, seed + UNSEEN_SEED_OFFSET)
    new = unseen.drop(columns=[c for c in OUTCOME_COLUMNS if c in unseen.columns])
    env = make_repo(repo, extract, params_file)
    new.to_csv(repo / "new_patients.csv", index=False)
    print(f"{generator} seed {seed}: {n:,} patients in the extract, {len(new):,} new",
          flush=True)
    rows = []
    for i, hw in enumerate(harm_weights):
        if i == 0 or per_harm_weight:
            if per_harm_weight:
                set_harm_weight(repo, hw)
            start = time.perf_counter()
            _run([str(BIN / "dvc"), "repro", "-q"], repo, env)
            training = json.loads((repo / "metrics" / "training.json").read_text())
            print(f"  dvc repro {time.perf_counter() - start:.0f} s:", json.dumps(
                {k: training.get(k) for k in (
                    "model_type", "n_treatments_modeled", "valid_response_chosen_max_depth",
                    "valid_response_chosen_n_estimators", "train_seconds")}), flush=True)
        out = repo / f"predictions_hw{hw:g}.csv"
        start = time.perf_counter()
        _run([str(BIN / "precision-pain"), "predict", "new_patients.csv", "--out", out.name,
              "--harm-weight", f"{hw}"], repo, env)
        seconds = time.perf_counter() - start
        predictions = pd.read_csv(out, usecols=["patient_id", "rank", "treatment"])
        treatments = sorted(predictions["treatment"].unique(), key=list(TREATMENTS).index)
        r = share_captured(first_choices(predictions), truth, hw, treatments, n_bootstrap,
                           seed)
        rows.append({"generator": generator, "seed": seed, "patients": n,
                     "trained_at": hw if per_harm_weight else "params",
                     "harm_weight": hw, **r, "predict_s": round(seconds, 1)})
        print(f"  harm weight {hw:<4g} share {100 * r['share']:5.1f} % "
              f"({100 * r['low']:.1f}-{100 * r['high']:.1f}); best single "
              f"{r['best_single']}; opioid first {r['opioid_first']}; predict "
              f"{seconds:.0f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", nargs="+", default=["blind"],
                        choices=["simulator", *GENERATORS])
    parser.add_argument("--seeds", type=int, nargs="+", default=[20261202])
    parser.add_argument("--n", type=int, default=20000, help="patients in the extract")
    parser.add_argument("--unseen", type=int, default=10000, help="new patients predicted")
    parser.add_argument("--harm-weights", type=float, nargs="+", default=list(HARM_WEIGHTS))
    parser.add_argument("--train-per-harm-weight", action="store_true",
                        help="set evaluate.harm_weight to each harm weight and dvc repro again "
                             "(the learner chooses with it) instead of one training at "
                             "params.yaml's and predict --harm-weight")
    parser.add_argument("--n-bootstrap", type=int, default=200)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml",
                        help="the parameters to run with (e.g. a candidate default)")
    parser.add_argument("--keep", type=Path,
                        help="build the repositories under this folder "
                             "(<generator>-<seed>) and keep them")
    parser.add_argument("--out", type=Path, help="also write <out>.csv")
    args = parser.parse_args()
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: the folder exists and is not empty; name a new one")
    rows = []
    with tempfile.TemporaryDirectory(prefix="release-route-") as tmp:
        for generator in args.generators:
            for seed in args.seeds:
                repo = (args.keep or Path(tmp)) / f"{generator}-{seed}"
                repo.mkdir(parents=True)
                rows += run_route(generator, seed, args.n, args.unseen, args.harm_weights,
                                  args.train_per_harm_weight, args.params, args.n_bootstrap,
                                  repo)
    table = pd.DataFrame(rows)
    if args.out is not None:
        table.to_csv(args.out.with_suffix(".csv"), index=False)
    means = table.groupby(["generator", "harm_weight"], sort=False)["share"].mean()
    print("mean over seeds: " + "; ".join(
        f"{g} hw {hw:g} {100 * v:.1f} %" for (g, hw), v in means.items()))
    table.to_csv(sys.stdout, index=False)


if __name__ == "__main__":
    main()
