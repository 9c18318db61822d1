"""What evaluation showed about the models predict ranks with: the evidence behind a ranking.

A ranked list says which treatment the models favour for a patient; whether following the
models did better than giving everyone one treatment is a property of the models, measured
once by ``precision-pain evaluate`` on the test split, or cross-fitted over every patient of
the extract when ``evaluate.cross_fitted_folds`` is set (``gain_from``; docs/evaluation.md):
the paired doubly robust gain of the recommendations' first choices over the single treatment
for everyone, from the observed outcomes, with its 95 % bootstrap interval; and with a ground
truth, the share of the oracle's gain they captured. predict carries those figures into its
outputs (``meta.evaluation`` of the JSON file, the HTML report) when the evaluation is of
these models, so that a reader of the rankings sees the evidence, or its absence, beside them.

Which evaluation belongs to which models: ``evaluate`` records the SHA-256 of the bundle it
scored (``bundle_sha256`` in metrics/evaluation.json); a bundle refitted on every split after
evaluation (the pooled learner's ``refit_on_all``) records the SHA-256 of the bundle it was
refitted from (``evaluated_bundle_sha256`` in its metadata), whose every choice it keeps; a
bundle without the refit is the evaluated one itself. Any other pairing is not evidence about
these models and is reported as such. Only aggregates are read and written: no patient row.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from precision_pain.evaluate.core import gain_evidence, gain_not_shown, headline_gain

# metrics/evaluation.json: the bundle evaluate scored; a deployed bundle's metadata: the
# bundle it was refitted from.
SCORED_KEY = "bundle_sha256"
EVALUATED_KEY = "evaluated_bundle_sha256"


def bundle_hashes(metadata: Mapping[str, Any], own_sha256: str | None) -> set[str]:
    """The SHA-256s an evaluation of these models may carry: the bundle's own, and that of
    the bundle it was refitted from."""
    return {h for h in (own_sha256, metadata.get(EVALUATED_KEY)) if h}


def evaluation_evidence(summary: Mapping[str, Any] | None, hashes: Collection[str],
                        source: str, harm_weight: float | None = None) -> dict[str, Any]:
    """The evaluation's figures about these models (``summary``: metrics/evaluation.json,
    None when there is none), or why there are none (``status``); ``harm_weight``: the one
    the rankings use, said when the evaluation's differs."""
    if summary is None:
        return {"status": "not_found", "source": source}
    if summary.get(SCORED_KEY) not in hashes:
        return {"status": "other_models", "source": source}
    gain_from, off = gain_evidence(summary)
    out: dict[str, Any] = {"status": "evaluated", "source": source,
                           "n_test_patients": summary.get("n_test_patients"),
                           "harm_weight": summary.get("harm_weight"), "gain_from": gain_from}
    if gain_from == "cross_fitted":
        out |= {"n_patients_cross_fitted": off.get("n_patients"), "folds": off.get("folds")}
    if harm_weight is not None and out["harm_weight"] is not None \
            and float(harm_weight) != float(out["harm_weight"]):
        out["rankings_harm_weight"] = float(harm_weight)
    gain = headline_gain(off, "one_size_fits_all")
    if gain is not None:
        out |= {"one_size_fits_all_treatment": off.get("one_size_fits_all_treatment"),
                "dr_gain_over_one_size_fits_all": gain["estimate"],
                "dr_gain_ci_low": gain["ci_low"], "dr_gain_ci_high": gain["ci_high"],
                "gain_shown": not gain_not_shown(off)}
    care = headline_gain(off, "usual_care")
    if care is not None:
        out |= {"dr_gain_over_usual_care": care["estimate"],
                "dr_gain_over_usual_care_ci_low": care["ci_low"],
                "dr_gain_over_usual_care_ci_high": care["ci_high"]}
    share = summary.get("policy", {}).get("share_of_oracle_gain_captured")
    if summary.get("has_ground_truth") and share is not None:
        out["share_of_oracle_gain_captured"] = share
    return out


def evidence_sentence(evidence: Mapping[str, Any], treatment_label: Any = str
                      ) -> tuple[str, bool]:
    """The evidence in one paragraph for the report, and whether it is a warning (the
    evaluation could not show the recommendations beating one treatment for everyone, or
    there is no evaluation of these models)."""
    source = evidence.get("source", "the evaluation metrics")
    status = evidence.get("status")
    if status == "not_found":
        return (f"No evaluation of these models was found ({source}): nothing here shows "
                "that following the rankings does better than one treatment for everyone. "
                "Run `precision-pain evaluate` (`dvc repro`) on the cohort they were "
                "trained on.", True)
    if status == "other_models":
        return (f"{source} evaluates other models than these (another bundle's SHA-256): "
                "nothing here shows that following these rankings does better than one "
                "treatment for everyone.", True)
    n = evidence.get("n_test_patients")
    crossed = evidence.get("n_patients_cross_fitted")
    if evidence.get("gain_from") == "cross_fitted" and isinstance(crossed, int):
        parts = [f"Evaluation of the learner behind these models, cross-fitted over all "
                 f"{crossed:,} patients of its extract ({evidence.get('folds')} folds, each "
                 "patient valued by models trained without them): "]
    else:
        parts = [f"Evaluation of these models on {n:,} held-out test patients: "
                 if isinstance(n, int) else "Evaluation of these models: "]
    if "dr_gain_over_one_size_fits_all" in evidence:
        single = evidence.get("one_size_fits_all_treatment")
        weight = evidence.get("harm_weight")
        parts.append(
            f"following their first choices changed net benefit"
            f"{f' (harm weight {weight:g})' if weight is not None else ''} by "
            f"{_signed(evidence['dr_gain_over_one_size_fits_all'])} (95 % interval "
            f"{_signed(evidence['dr_gain_ci_low'])} to {_signed(evidence['dr_gain_ci_high'])}) "
            "against "
            f"giving everyone {treatment_label(single) if single else 'one treatment'} "
            "(doubly robust estimate from the observed outcomes).")
    else:
        parts.append("no treatment was open to every test patient, so there is no "
                     "one-size-fits-all comparison.")
    warning = evidence.get("gain_shown") is False
    if warning:
        parts.append(" The interval reaches 0: the evaluation could not show that following "
                     "these rankings does better than one treatment for everyone.")
    if "dr_gain_over_usual_care" in evidence:
        parts.append(f" Against the treatments the cohort's usual care gave: "
                     f"{_signed(evidence['dr_gain_over_usual_care'])} (95 % interval "
                     f"{_signed(evidence['dr_gain_over_usual_care_ci_low'])} to "
                     f"{_signed(evidence['dr_gain_over_usual_care_ci_high'])}).")
    if "rankings_harm_weight" in evidence:
        parts.append(f" These rankings use harm weight {evidence['rankings_harm_weight']:g}, "
                     "which the evaluation did not measure.")
    if _finite(evidence.get("share_of_oracle_gain_captured")):
        parts.append(f" Against the cohort's ground truth they captured "
                     f"{100 * evidence['share_of_oracle_gain_captured']:.1f} % of the gain that "
                     "knowing every patient's true outcome probabilities would give.")
    parts.append(f" ({source}; docs/evaluation.md)")
    return "".join(parts), warning or "dr_gain_over_one_size_fits_all" not in evidence


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _signed(x: Any) -> str:
    """A gain as +0.035, or "n/a" where the evaluation had none (null in the JSON file)."""
    return f"{x:+.3f}" if _finite(x) else "n/a"
