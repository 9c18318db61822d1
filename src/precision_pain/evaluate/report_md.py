"""The evaluation as a markdown report (``reports/evaluation.md``), with the research-use notice.

Pure formatting of an :class:`~precision_pain.evaluate.core.Evaluation`: no numbers are computed
here; docs/evaluation.md defines each one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from precision_pain.evaluate.core import (ESTIMATORS, POLICIES, VALUES, WITHIN, Evaluation,
                                          gain_evidence, gain_not_shown, headline_gain)
from precision_pain.evaluate.crossfit import TRUE_PROPENSITY


def evaluation_report(evaluation: Evaluation, notice: str, plots: Sequence[str] = ()) -> str:
    """The evaluation as a markdown report; ``plots`` are image paths relative to the report."""
    s, detail = evaluation.summary, evaluation.policy
    continuous = s.get("outcome") == "nrs_change"
    truth = "available (synthetic cohort)" if s["has_ground_truth"] else "not available"
    outcome = (" Outcome: the change in NRS pain (follow-up minus baseline); response values "
               "below are expected *reductions* in NRS points and net benefit is in NRS points "
               "(an adverse event costs harm_weight x adverse_event_nrs_points)."
               if continuous else "")
    parts = [f"# Evaluation report\n\n> {notice}\n",
             f"Model type **{s['model_type']}**; {s['n_test_patients']} test patients; ground "
             f"truth {truth}. Intervals are 95 % bootstrap CIs over test patients; "
             f"docs/evaluation.md defines every number.{outcome}\n",
             *_restriction_md(s, detail), _headline_md(s),
             _per_treatment_md(evaluation.per_treatment, continuous)]
    if "by_baseline" in s.get("response_interval_coverage", {}):
        parts.append(_interval_bands_md(s["response_interval_coverage"]))
    if "policy" in detail:
        parts.append(_policy_md(detail, continuous))
    if "trials" in detail:
        parts.append(_trials_md(detail["trials"]))
    if "off_policy" in detail:
        parts.append(_ope_md(detail))
    parts.append(_subgroups_md(evaluation.subgroups, continuous))
    parts += ["## Plots\n"] + [f"![{Path(p).stem}]({p})\n" for p in plots]
    return "\n".join(parts)


def _ci(d: dict[str, float] | None, digits: int = 3) -> str:
    if not d or not np.isfinite(d["estimate"]):
        return "n/a"
    if not np.isfinite(d["ci_low"]):
        return f"{d['estimate']:.{digits}f}"
    return f"{d['estimate']:.{digits}f} ({d['ci_low']:.{digits}f} to {d['ci_high']:.{digits}f})"


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _headline_md(s: dict[str, Any]) -> str:
    slope = s["response_calibration_slope"]
    fit = (f"mean RMSE {_num(s['mean_response_rmse'])} NRS points, mean R^2 "
           f"{_num(s['mean_response_r2'])}" if "mean_response_rmse" in s else
           f"mean AUC {_num(s['mean_response_auc'])}, mean Brier {_num(s['mean_response_brier'])}")
    lines = ["## Headline\n",
             f"- Response models: {fit}; calibration slope from {_num(slope['min'], 2)} "
             f"to {_num(slope['max'], 2)}, {_num(100 * slope['share_within_0.8_1.2'], 0)} % of "
             "treatments within 0.8-1.2."]
    if "response_calibration_slope_against_truth" in s:
        truth = s["response_calibration_slope_against_truth"]
        ceiling = s["response_calibration_slope_true_probability"]
        lines.append(
            "- Against the true probabilities (the outcome's noise averaged out): calibration "
            f"slope from {_num(truth['min'], 2)} to {_num(truth['max'], 2)}, "
            f"{_num(100 * truth['share_within_0.8_1.2'], 0)} % of treatments within 0.8-1.2. "
            "On the observed outcomes the true probabilities themselves have "
            f"{_num(100 * ceiling['share_within_0.8_1.2'], 0)} % of slopes within 0.8-1.2: "
            "that many test patients cannot show more.")
    if "measurements_not_recorded" in s:
        lines.append("- Measurements not recorded (empty) among the test episodes: " + ", ".join(
            f"{name} {_num(100 * share, 1)} %" for name, share in
            s["measurements_not_recorded"].items()) + "; the models read them as missing, and "
            "the guideline checks that need them say they were not made.")
    if "policy" in s:
        p = s["policy"]
        single = (p["one_size_fits_all"]["treatment"]
                  or "none: no treatment is open to every patient")
        lines += [
            "- Share of the oracle's gain over one-size-fits-all "
            f"({single}) captured by the model's first choice: "
            f"**{_num(100 * p['share_of_oracle_gain_captured'], 1)} %**.",
            "- Mean true net benefit: " + ", ".join(
                f"{POLICY_WORDS[k]} {_num(p[k]['mean_true_net_benefit'])}" for k in POLICIES) + ".",
            f"- Regret per patient (model): mean {_num(p['regret']['mean'])}, median "
            f"{_num(p['regret']['median'])}, 90th percentile {_num(p['regret']['p90'])}; "
            f"{_num(100 * p['regret']['share_zero'], 1)} % of patients get their best treatment."]
        if "sqrt_pehe" in p:
            lines.append(f"- sqrt-PEHE of the differences between a patient's eligible "
                         f"treatments: {_num(p['sqrt_pehe'])} NRS points.")
    if "trials" in s:
        lines.append("- Expected trials until a first response: " + ", ".join(
            f"{k.replace('_', ' ')} {_num(v['expected'], 2)}" for k, v in s["trials"].items())
            + ".")
    if "off_policy" in s:
        o = s["off_policy"]
        dr = {"estimate": o["model_dr_net_benefit"], "ci_low": o["model_dr_ci_low"],
              "ci_high": o["model_dr_ci_high"]}
        truth = (f" (true value {_num(o['model_true_net_benefit'])}, error "
                 f"{_num(o['model_dr_error'], 4)})" if "model_true_net_benefit" in o else "")
        lines.append(f"- Doubly robust estimate of the model's net benefit: {_ci(dr)}{truth}.")
        lines += _gain_md(o)
    if s.get("off_policy_cross_fitted"):
        lines += _cross_fitted_md(s["off_policy_cross_fitted"])
    if "off_policy" in s:
        lines += _gain_warning(s)
    return "\n".join(lines) + "\n"


# where the one treatment for everyone was chosen (evaluate.core.choose_one_size_fits_all)
CHOSEN_ON = {"training": ", the one with the highest DR value on the training episodes",
             "test": ", the one with the highest DR value on these test patients, which "
                     "flatters it"}


def _gain_md(o: dict[str, Any]) -> list[str]:
    """The paired DR gains over one-size-fits-all and usual care on the test split: the
    question the project exists to answer, from observed outcomes alone. (No
    one-size-fits-all line when no treatment is eligible for every patient.)"""
    lines = []
    gain, care = headline_gain(o, "one_size_fits_all"), headline_gain(o, "usual_care")
    if gain is not None:
        single = o.get("one_size_fits_all_treatment")
        truth = _true_gain(o, "one_size_fits_all")
        where = CHOSEN_ON.get(o.get("one_size_fits_all_chosen_on"), "")
        lines.append(f"- Doubly robust gain in net benefit over one-size-fits-all care (every "
                     f"patient given {single or 'the single treatment with the highest DR value'}"
                     f"{where}), paired patient by patient: {_ci(gain)}{truth}.")
    if care is not None:
        lines.append("- Doubly robust gain in net benefit over usual care (the treatments "
                     f"patients received), paired: {_ci(care)}{_true_gain(o, 'usual_care')}.")
    return lines


def _cross_fitted_md(c: dict[str, Any]) -> list[str]:
    """The same gains cross-fitted over every patient of the extract (evaluate/crossfit.py)."""
    lines = [f"- Cross-fitted over all {c['n_patients']:,} patients ({c['folds']} folds: each "
             f"patient valued by models trained, as these were, on the other "
             f"{c['n_train_patients_per_fold']:,}; it values this learner on this extract, not "
             "this one bundle):"]
    gain, care = headline_gain(c, "one_size_fits_all"), headline_gain(c, "usual_care")
    if gain is not None:
        lines.append(f"  doubly robust gain over one-size-fits-all care (every patient given "
                     f"{c.get('one_size_fits_all_treatment')}, chosen on each fold's training "
                     f"patients) {_ci(gain)}{_true_gain(c, 'one_size_fits_all')};")
    known = headline_gain(c, f"one_size_fits_all{TRUE_PROPENSITY}")
    if known is not None:
        lines.append(f"  the same with the truth's usual-care probabilities in place of the "
                     f"propensity model {_ci(known)} (the difference is the propensity "
                     "model's);")
    if care is not None:
        lines.append(f"  over usual care {_ci(care)}{_true_gain(c, 'usual_care')}.")
    return lines


def _gain_warning(s: dict[str, Any]) -> list[str]:
    """A bold warning where the gain that answers the question (cross-fitted when there is
    one: :func:`precision_pain.evaluate.core.gain_evidence`) has an interval reaching 0."""
    source, o = gain_evidence(s)
    if not gain_not_shown(o):
        return []
    where = ("cross-fitted over every patient" if source == "cross_fitted" else
             "of the test patients")
    return ["- **Warning: these observed outcomes (" + where + ") do not show the "
            "recommendations doing better than giving every patient one treatment** (the "
            "paired interval reaches 0). " + (
                "The ground truth above measures the gain directly; without it, this many "
                "patients could not show it."
                if "model_true_gain_over_one_size_fits_all" in o else
                "Do not read the ranking as an improvement on one-size-fits-all care for "
                "this population.")
            + ("" if source == "cross_fitted" else
               " Cross-fitting values every patient of the extract instead of the test split "
               "alone (`evaluate.cross_fitted_folds`, docs/evaluation.md).")]


def _true_gain(o: dict[str, Any], baseline: str) -> str:
    """The true gain over ``baseline``'s text, where a ground truth gives one."""
    true = o.get(f"model_true_gain_over_{baseline}")
    return f" (true gain {_num(true)})" if true is not None else ""


POLICY_WORDS = {"model": "model", "oracle": "oracle", "one_size_fits_all": "one size fits all",
                "usual_care": "usual care", "random": "random eligible"}


def _restriction_md(s: dict[str, Any], detail: dict[str, Any]) -> list[str]:
    """What was not modeled, and that every comparison is over the modeled treatments."""
    not_modeled = detail.get("not_modeled", {})
    if not not_modeled:
        return []
    lines = "".join(f"- **{t}**: {reason}\n" for t, reason in not_modeled.items())
    return [f"## Treatments not modeled\n\nThe training data supported {s['n_treatments_modeled']} "
            "treatments. The recommendations, the oracle, one size fits all, stepped care and "
            "the off-policy estimates below are all computed over those treatments only; "
            "these were not modeled (model.min_patients, model.min_events):\n\n" + lines]


def _interval_bands_md(coverage: dict[str, Any]) -> str:
    """predict's prediction interval, checked within each band of baseline pain severity."""
    bands = "; ".join(f"{name}: {b['coverage']:.3f} of {b['n']}" if b["coverage"] is not None
                      else f"{name}: no patients" for name, b in coverage["by_baseline"].items())
    return (f"By baseline pain severity, the share of test patients inside predict's "
            f"{coverage['level']:.0%} prediction interval (its width is set per band): "
            f"{bands}.\n")


def _per_treatment_md(per_treatment: dict[str, Any], continuous: bool = False) -> str:
    rows = []
    fit = ("rmse", "r2") if continuous else ("auc", "brier")
    for t, m in per_treatment.items():
        r, a = m["response"], m["adverse_event"]
        best = r.get("true_probability", {}).get(fit[0])
        arm = m.get("training", {})
        size = (f"{arm['patients']} ({arm['responders']} / {arm['adverse_events']})"
                f"{' small arm' if arm.get('small_arm') else ''}" if arm.get("patients") is not None
                else "")
        rows.append([t, size, str(r["n"]), _ci(r[fit[0]]), _ci(r[fit[1]]),
                     _ci(r["calibration_slope"], 2), _ci(r["calibration_intercept"], 2),
                     _ci(r["against_truth"]["calibration_slope"], 2) if "against_truth" in r
                     else "n/a",
                     _ci(best), _ci(a["auc"]), _ci(a["calibration_slope"], 2)])
        if continuous:
            interval = r.get("prediction_interval")
            rows[-1].append(_ci(interval["coverage"]) if interval else "n/a")
    header = ["treatment", "training patients (responders / adverse events)", "test n",
              "response AUC", "Brier", "calibration slope", "calibration intercept",
              "slope against the truth", "AUC of the true probabilities", "adverse-event AUC",
              "adverse-event slope"]
    if continuous:
        header[3:5] = ["response RMSE (NRS points)", "R^2"]
        header[8] = "RMSE of the true expected reductions"
        level = next((m["response"]["prediction_interval"]["level"]
                      for m in per_treatment.values()
                      if "prediction_interval" in m["response"]), None)
        header.append("share inside predict's prediction interval"
                      + (f" ({level:.0%})" if level is not None else ""))
    intervals = (" The last column is the share of them whose observed change in pain lies "
                 "inside the prediction interval predict writes for them "
                 "(expected_nrs_change_low / _high): close to its level if the interval is "
                 "honest." if continuous else "")
    return ("## Models, per treatment\n\nTest patients who received each treatment. A *small "
            "arm* has fewer training patients than evaluate.small_arm_patients: its intervals "
            "are wide and a per-treatment model of it learns little." + intervals + "\n\n"
            + _table(header, rows))


def _policy_md(detail: dict[str, Any], continuous: bool = False) -> str:
    truth = detail["policy"]
    rows = [[POLICY_WORDS[p], _ci(truth["values"][p]["mean_true_response"]),
             _ci(truth["values"][p]["mean_true_net_benefit"]),
             *(_regret_cells(truth["regret"].get(p)))] for p in POLICIES]
    header = ["policy", "mean true P(response)", "mean true net benefit", "mean regret",
              "median regret", "p90 regret", "share with zero regret"]
    if continuous:
        header[1:3] = ["mean true NRS reduction (points)", "mean true net benefit (points)"]
    pehe = (f" sqrt-PEHE (the predicted differences between each patient's eligible treatments "
            f"against the true ones): {_ci(truth['sqrt_pehe'])} NRS points."
            if "sqrt_pehe" in truth else "")
    return ("## Policy value (ground truth)\n\n" + _table(header, rows) +
            "\nShare of the oracle's gain captured: "
            f"{_ci(truth['share_of_oracle_gain_captured'])}; first choice = oracle's for "
            f"{_ci(truth['first_choice_matches_oracle'])} of patients.{pehe}\n")


def _regret_cells(regret: dict[str, float] | None) -> list[str]:
    if regret is None:
        return ["0", "0", "0", "1"]
    return [_num(regret[k]) for k in ("mean", "median", "p90", "share_zero")]


def _trials_md(trials: dict[str, Any]) -> str:
    rows = [[o.replace("_", " "), _ci(t["expected_trials"], 2),
             *(_num(t[f"p_response_within_{m}"]) for m in WITHIN)] for o, t in trials.items()]
    header = ["order", "expected trials", *(f"P(response within {m})" for m in WITHIN)]
    return "## Trial and error\n\n" + _table(header, rows)


def _ope_md(detail: dict[str, Any]) -> str:
    ope, overlap = detail["off_policy"], detail.get("overlap", {})
    rows = []
    for v in VALUES:
        for name, d in ope[v].items():
            cells = ([_ci(d.get(e)) for e in ESTIMATORS] if "dr" in d
                     else ["", "", "", _ci(d["observed_mean"])])
            rows.append([v.replace("_", " "), POLICY_WORDS[name], *cells,
                         _num(d.get("true")), _num(d.get("estimate_minus_true"), 4)])
    header = ["outcome", "policy", "DM", "IPW", "SNIPW", "DR (observed mean for usual care)",
              "true", "estimate - true"]
    gains = [[v.replace("_", " "), POLICY_WORDS[name], _ci(g["dr"]), _num(g.get("true")),
              _num(g.get("estimate_minus_true"), 4)]
             for v in VALUES for name, g in ope.get("gain", {}).get(v, {}).items()]
    gain_table = ("\nThe model's gain over each baseline, DR, paired patient by patient (one "
                  "bootstrap draw values both policies):\n\n" + _table(
                      ["outcome", "over", "DR gain", "true gain", "estimate - true"], gains)
                  if gains else "")
    chosen = detail.get("propensity_model", {})
    return ("## Off-policy estimates (no ground truth needed)\n\n" + _table(header, rows) +
            gain_table +
            f"\nPropensity model: {chosen.get('chosen', 'n/a')} (validation log-loss "
            f"{chosen.get('valid_log_loss', {})}); propensities clipped at "
            f"{overlap.get('clip')}: "
            f"{_num(100 * overlap.get('share_logged_clipped', np.nan), 2)} % "
            f"of test rows; smallest propensity of a received treatment "
            f"{_num(overlap.get('min_logged_propensity'), 4)}; effective sample size of the "
            f"model policy's weights {_num(ope['effective_sample_size'].get('model'), 0)}.\n"
            + OFF_POLICY_ASSUMPTIONS)


# What no diagnostic in this report can check (Robins, Rotnitzky & Zhao 1994; Dudik, Langford
# & Li 2011): the off-policy figures, here and in the headline, rest on these.
OFF_POLICY_ASSUMPTIONS = (
    "\nThese estimates assume no unmeasured confounding (whatever drove the treatment choice "
    "and also the outcome is among the model's features), positivity (every eligible "
    "treatment had a real chance) and no interference between patients. The first cannot be "
    "checked from the extract: on a benchmark cohort whose usual care followed an unrecorded "
    "patient trait, the doubly robust value read up to 0.09 below the truth "
    "(docs/evaluation.md, learning curves, shift).\n")


def _subgroups_md(subgroups: dict[str, Any], continuous: bool = False) -> str:
    rows = []
    fit = "rmse" if continuous else "auc"
    for column, groups in subgroups.items():
        for level, g in groups.items():
            value = g.get("policy", {}).get("values", {})
            ope = g.get("off_policy", {})
            dr = ope.get("net_benefit", {}).get("model", {}).get("dr")
            gain = ope.get("gain", {}).get("net_benefit", {}).get("one_size_fits_all", {})
            rows.append([column, level, str(g["n"]), _ci(g["models_pooled"]["response"][fit]),
                         *(_ci(value.get(p, {}).get("mean_true_net_benefit"))
                           for p in ("model", "one_size_fits_all", "oracle")),
                         _ci(g.get("policy", {}).get("share_of_oracle_gain_captured")), _ci(dr),
                         _ci(gain.get("dr"))])
    header = ["by", "group", "n", f"response {fit.upper()} (pooled)", "model net benefit",
              "one-size-fits-all", "oracle", "share of gain captured", "model DR estimate",
              "DR gain over one size fits all (paired)"]
    return "## Subgroups\n\n" + _table(header, rows)

