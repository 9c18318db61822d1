"""What the deployed bundle gains by its refit on every split, measured on unseen patients.

``dvc repro`` writes two bundles (models/README.md): the one evaluation scores, fitted on
the train and validation splits, and the deployed one (``model.dir``), the same models
with every choice kept, refitted on all the cohort's patients (the pooled learner's
``refit_on_all``). The test split cannot measure the second, which saw it; this script
does, the way a release is scored: for each generator (the project's simulator, the
independent ``benchmarks/alt_cohort.py``, or ``blind``, ``benchmarks/blind_cohort.py``,
written blind to both; ``benchmarks/release_route.py`` takes the same measurement through
the documented commands) and seed it draws an extract of ``--n`` patients
and, from the same data-generating process, ``--unseen`` new patients; runs the pipeline's
own code on the extract (prepare -> split -> ``train_bundle`` at params' harm weight ->
``refit_on_all``, as ``precision-pain train`` does) and scores both bundles' recommendations
on the new patients against their ground truth at harm weights 0, 0.5 and 1 (``evaluate``
with the truth: the share of the oracle's gain over the best single treatment captured).

    uv run python benchmarks/deploy_refit.py --seeds 20261202 20261203 20261204 \\
        --out docs/deploy_refit

Writes ``<out>.csv`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learning_curve import HARM_WEIGHTS, cohort  # noqa: E402

from precision_pain.config import load_params  # noqa: E402
from precision_pain.data.split import split_cohort  # noqa: E402
from precision_pain.evaluate.core import evaluate  # noqa: E402
from precision_pain.models.bundle import ModelBundle  # noqa: E402
from precision_pain.models.train import (modeled_treatments, refit_on_all,  # noqa: E402
                                         train_bundle)
from precision_pain.outcome import OutcomeSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UNSEEN_SEED_OFFSET = 7777  # the new patients' seed: the extract's plus this


def shares(bundle, patients: pd.DataFrame, truth: pd.DataFrame, params, n_bootstrap: int
           ) -> dict[float, dict[str, float]]:
    """The share of the oracle's gain captured (and its interval) at each harm weight."""
    out = {}
    for hw in HARM_WEIGHTS:
        settings = params.evaluate.model_copy(update={"harm_weight": hw,
                                                      "n_bootstrap": n_bootstrap})
        share = evaluate(patients, bundle, truth, settings).policy["policy"][
            "share_of_oracle_gain_captured"]
        out[hw] = {"share": share["estimate"], "low": share["ci_low"], "high": share["ci_high"]}
    return out


def train_both(extract: pd.DataFrame, params, outcome: OutcomeSpec = OutcomeSpec()
               ) -> tuple[dict[str, pd.DataFrame], ModelBundle, ModelBundle]:
    """The extract's splits and both bundles ``precision-pain train`` writes from it: the
    evaluated one (choices on the validation split, fitted on train + validation) and the
    deployed one (refitted on every split)."""
    parts = split_cohort(extract, params.split.valid_fraction, params.split.test_fraction,
                         params.split.seed)
    treatments, _ = modeled_treatments(parts["train"], parts["valid"], params.model)
    evaluated = train_bundle(parts["train"], parts["valid"], treatments, params.model,
                             params.prepare.response_threshold,
                             harm_weight=params.evaluate.harm_weight,
                             propensity_clip=params.evaluate.propensity_clip,
                             outcome=outcome)
    deployed = refit_on_all(evaluated, {k: parts[k] for k in ("train", "valid", "test")},
                            params.model)
    return parts, evaluated, deployed


def run_one(generator: str, seed: int, n: int, n_unseen: int, params, n_bootstrap: int
            ) -> list[dict[str, float | str | int]]:
    """Both bundles of one extract, scored on new patients from the same process."""
    extract, _ = cohort(generator, n, seed, params)
    unseen, truth = cohort(generator, n_unseen, seed + UNSEEN_SEED_OFFSET, params)
    _, evaluated, deployed = train_both(extract, params)
    rows = []
    for name, bundle in (("evaluated", evaluated), ("deployed", deployed)):
        for hw, r in shares(bundle, unseen, truth, params, n_bootstrap).items():
            rows.append({"generator": generator, "seed": seed, "patients": n,
                         "bundle": name, "fitted_on": " + ".join(
                             bundle.metadata["fitted_on"]["splits"]),
                         "harm_weight": hw, **r})
    return rows


def write_markdown(table: pd.DataFrame, path: Path) -> None:
    """Per generator and seed: evaluated -> deployed share at each harm weight."""
    lines = ["| generator | seed | bundle | " + " | ".join(
        f"harm weight {hw}" for hw in HARM_WEIGHTS) + " |",
             "|---|---|---|" + "---|" * len(HARM_WEIGHTS)]
    for (generator, seed, bundle), group in table.groupby(
            ["generator", "seed", "bundle"], sort=False):
        cells = [f"{100 * r.share:.1f} % ({100 * r.low:.1f}-{100 * r.high:.1f})"
                 for r in group.sort_values("harm_weight").itertuples()]
        lines.append(f"| {generator} | {seed} | {bundle} | " + " | ".join(cells) + " |")
    means = table.groupby(["generator", "bundle", "harm_weight"], sort=False)["share"].mean()
    lines += ["", "Mean over seeds (share of the oracle's gain captured):", ""]
    for generator in table["generator"].unique():
        for bundle in ("evaluated", "deployed"):
            lines.append(f"- {generator}, {bundle}: " + " / ".join(
                f"{100 * means[generator, bundle, hw]:.1f} %" for hw in HARM_WEIGHTS))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", nargs="+", default=["alt", "simulator"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[20261202])
    parser.add_argument("--n", type=int, default=20000, help="patients in the extract")
    parser.add_argument("--unseen", type=int, default=10000, help="new patients scored")
    parser.add_argument("--n-bootstrap", type=int, default=100)
    parser.add_argument("--out", type=Path, help="write <out>.csv and <out>.md")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml",
                        help="the params to train with (e.g. a candidate default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    params = load_params(args.params)
    rows = []
    for seed in args.seeds:
        for generator in args.generators:
            got = run_one(generator, seed, args.n, args.unseen, params, args.n_bootstrap)
            rows += got
            for bundle in ("evaluated", "deployed"):
                print(f"{generator:9} seed {seed} n {args.n} {bundle:9} share at harm weight "
                      + " / ".join(f"{hw}: {100 * r['share']:5.1f} %" for r in got
                                   if r["bundle"] == bundle for hw in [r["harm_weight"]]),
                      flush=True)
    if args.out is not None:
        table = pd.DataFrame(rows)
        table.to_csv(args.out.with_suffix(".csv"), index=False)
        write_markdown(table, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
