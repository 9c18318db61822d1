"""Plan episodes from the independent generator (benchmarks/alt_cohort.py), and the plan
learner's share of the oracle's gain on them, with and without the ranking's correction for
the winner's curse (``plan_optimism_correction``).

The simulator's plans (precision_pain.data.simulate_plans) combine component gains
sub-additively on its NRS-reduction scale with an adherence factor per extra component.
This generator combines them differently, on the probability scale, on top of alt_cohort's
threshold-and-interaction single-treatment truth:

- P(response | plan) = (1 - prod_c (1 - w_c p_c)) x 0.92^(k - 1): an independent chance of
  each component working, the best component (highest p_c) at full weight w = 1, each further
  one at w = 0.55 when it is the same kind (drug with drug: overlapping mechanisms) as a
  component before it and w = 0.8 when it is not (a drug with an active therapy or a
  procedure), times a burden of 0.92 per extra component; clipped to [0.03, 0.95];
- P(serious adverse event | plan) = 1 - prod_c (1 - a_c), plus 0.05 for a serotonergic pair
  (tramadol with duloxetine or amitriptyline) and x 1.6 for an opioid with pregabalin
  (CNS depression); a CYP2D6 normal or intermediate metabolizer taking duloxetine with
  tramadol gets tramadol's benefit x 0.6 (phenoconversion); capped at 0.85;
- usual care: a patient gets a plan of two or more components with probability
  0.12 + 0.20 [NRS >= 7] + 0.10 [PHQ-9 >= 10]; its first component is drawn from
  alt_cohort's usual care, then one more (70 %) or two more (30 %) components uniformly
  among the valid plans holding it (no unmeasured confounding: the draw depends on
  observed features and the unobserved physician style only).

Usage (writes the cohort and its per-plan truth, then trains and scores both rankings in a
scratch folder)::

    python benchmarks/alt_plans.py --n 20000 --seed 1 --workdir /tmp/alt_plans
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import alt_cohort as alt  # noqa: E402

from precision_pain.data.pgx import annotate_pgx  # noqa: E402
from precision_pain.plans import plan_eligibility, plan_name, valid_plans  # noqa: E402
from precision_pain.registry import TREATMENTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAME_KIND_WEIGHT, OTHER_KIND_WEIGHT, BURDEN = 0.55, 0.8, 0.92
SEROTONERGIC = {("tramadol", "duloxetine"), ("tramadol", "amitriptyline")}


def plan_truth(annotated: pd.DataFrame, p_resp: np.ndarray, p_ae: np.ndarray,
               plans: tuple[tuple[str, ...], ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, P) eligibility, P(response), P(adverse event) of every plan."""
    col = {t: j for j, t in enumerate(alt.SIMULATED)}
    eligible = plan_eligibility(annotated["condition"], plans)
    d6 = annotated["cyp2d6_effective_phenotype"].astype(str).to_numpy()
    n = len(annotated)
    resp = np.full((n, len(plans)), np.nan)
    harm = np.full((n, len(plans)), np.nan)
    for j, plan in enumerate(plans):
        ok = eligible[:, j]
        if not ok.any():
            continue
        p = {t: np.nan_to_num(p_resp[:, col[t]]) for t in plan}
        if "duloxetine" in plan and "tramadol" in plan:
            p["tramadol"] = np.where(np.isin(d6, ["NM", "IM"]), 0.6, 1.0) * p["tramadol"]
        stacked = np.column_stack([p[t] for t in plan])
        order = np.argsort(-stacked, axis=1)
        kinds = np.array([TREATMENTS[t].kind for t in plan])
        miss = np.ones(n)
        for rank in range(len(plan)):
            c = order[:, rank]
            earlier = [kinds[order[:, r]] for r in range(rank)]
            same = np.zeros(n, dtype=bool)
            for e in earlier:
                same |= e == kinds[c]
            w = np.where(rank == 0, 1.0, np.where(same, SAME_KIND_WEIGHT, OTHER_KIND_WEIGHT))
            miss *= 1 - w * stacked[np.arange(n), c]
        resp[:, j] = np.clip((1 - miss) * BURDEN ** (len(plan) - 1), 0.03, 0.95)
        a = 1 - np.prod([1 - np.nan_to_num(p_ae[:, col[t]]) for t in plan], axis=0)
        a = a + 0.05 * any((x, y) in SEROTONERGIC for x in plan for y in plan)
        if "pregabalin" in plan and any(TREATMENTS[t].opioid for t in plan):
            a = a * 1.6
        harm[:, j] = np.clip(a, 0.002, 0.85)
    return eligible, np.where(eligible, resp, np.nan), np.where(eligible, harm, np.nan)


def generate(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(contract-v2 cohort with plan episodes, per-plan truth: patient_id, plan,
    n_components, eligible, p_response, p_adverse_event)."""
    rng = np.random.default_rng(seed)
    patients = alt._patients(n, rng)
    ids = np.char.add("B", np.char.zfill(np.arange(1, n + 1).astype(str), 8)).astype(object)
    patients.insert(0, "patient_id", ids)
    annotated = annotate_pgx(patients)
    elig, p_resp, p_ae = alt._truth(annotated)
    soft, mix, _ = alt._usual_care(annotated, elig, rng)
    m = elig.sum(axis=1, keepdims=True)
    p_uc = (1 - mix) * soft + mix * elig / m
    cdf = np.cumsum(p_uc, axis=1)
    first = (rng.random(n)[:, None] >= cdf / cdf[:, -1:]).sum(axis=1)
    plans = valid_plans(None, alt.SIMULATED)
    eligible, resp, harm = plan_truth(annotated, p_resp, p_ae, plans)
    names = np.array([plan_name(p) for p in plans], dtype=object)
    size = np.array([len(p) for p in plans])
    pain, phq = (annotated[c].to_numpy(float) for c in ("pain_baseline", "phq9"))
    multi = rng.random(n) < 0.12 + 0.20 * (pain >= 7) + 0.10 * (phq >= 10)
    extra = np.where(rng.random(n) < 0.7, 2, 3)
    single_col = {p[0]: j for j, p in enumerate(plans) if len(p) == 1}
    chosen = np.array([single_col[alt.SIMULATED[f]] for f in first])
    holds = np.array([[t in p for p in plans] for t in alt.SIMULATED])  # (T, P)
    for i in np.flatnonzero(multi):
        options = np.flatnonzero(eligible[i] & holds[first[i]] & (size == extra[i]))
        if len(options):
            chosen[i] = rng.choice(options)
    rows = np.arange(n)
    responded = rng.random(n) < resp[rows, chosen]
    reduction = np.where(responded, rng.uniform(0.32, 0.9, n), rng.uniform(-0.2, 0.27, n))
    cohort = patients.copy()
    for column in ("CYP2D6", "CYP2C9", "CYP2C19", "OPRM1_rs1799971", "COMT_rs4680"):
        miss = rng.random(n) < alt.MISSING_GENOTYPE
        cohort.loc[miss, column] = "unknown" if column.startswith("CYP") else ""
    plan = names[chosen]
    cohort["treatment"] = np.where(size[chosen] == 1, plan, "")
    cohort["plan"] = plan
    cohort["contract_version"] = 2
    cohort["pain_followup"] = np.clip(np.round(pain * (1 - reduction), 3), 0, 10)
    cohort["adverse_event"] = rng.random(n) < harm[rows, chosen]
    k = len(plans)
    truth = pd.DataFrame({
        "patient_id": np.repeat(ids, k), "plan": np.tile(names, n),
        "n_components": np.tile(size, n), "eligible": eligible.ravel(),
        "p_response": resp.ravel(), "p_adverse_event": harm.ravel()})
    return cohort, truth


def _cli(params: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "precision_pain.cli", "-q", *args, "--params",
                    str(params)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--n-bootstrap", type=int, default=200)
    args = parser.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cohort, truth = generate(args.n, args.seed)
    cohort.to_csv(work / "cohort.csv", index=False)
    truth.to_parquet(work / "plan_truth.parquet", index=False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"] = {k: (str(work / v) if isinstance(v, str) else v)
                   for k, v in raw["data"].items()}
    raw["data"].update({"cohort": str(work / "cohort.csv"), "ground_truth": None})
    results = {}
    for correction in (False, True):
        tag = "corrected" if correction else "uncorrected"
        run = dict(raw, model={**raw["model"], "dir": str(work / tag / "bundle"),
                               "evaluated_dir": str(work / tag / "evaluated"),
                               "metrics": str(work / tag / "training.json")})
        run["model"]["hyperparameters"]["pooled_xgboost"]["plan_optimism_correction"] = (
            correction)
        params = work / f"params_{tag}.yaml"
        params.write_text(yaml.safe_dump(run))
        if not correction:
            _cli(params, "prepare")
            _cli(params, "split")
        _cli(params, "train", "--no-tracking")
        results[tag] = _score(params, work / tag / "evaluated", work / "plan_truth.parquet",
                              args.n_bootstrap)
        print(tag, json.dumps(results[tag]), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=2))


def _score(params_path: Path, bundle_dir: Path, truth_path: Path, n_bootstrap: int) -> dict:
    """evaluate/plans.py's figures on the test split against this generator's truth."""
    from precision_pain.config import load_params
    from precision_pain.data.contract import read_pipeline_table
    from precision_pain.evaluate.plans import evaluate_plans
    from precision_pain.models.bundle import load_bundle

    params = load_params(params_path)
    test = read_pipeline_table(Path(params.data.splits_dir) / "test.parquet")
    bundle = load_bundle(bundle_dir, own_bundle=True)
    result = evaluate_plans(test, bundle, pd.read_parquet(truth_path),
                            params.evaluate.harm_weight, params.evaluate.non_opioid_first,
                            n_bootstrap, params.evaluate.seed)
    shares = result["share_of_oracle_gain_over_best_single_for_everyone"]
    return {"share": {k: [round(v["estimate"], 3), round(v["ci_low"], 3),
                          round(v["ci_high"], 3)] for k, v in shares.items()},
            "first_choice_components": result["first_choice_components"],
            "penalty": {k: v for k, v in bundle.plan_models.summary.items()
                        if k.startswith("plan_ranking_penalty")}}


if __name__ == "__main__":
    main()
