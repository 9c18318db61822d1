"""Evaluation plots as matplotlib Figures (no pyplot, no display, no files).

Each function takes part of an :class:`~precision_pain.evaluate.core.Evaluation` and
returns a :class:`matplotlib.figure.Figure`; :func:`evaluation_figures` builds
all that the evaluation's contents allow. Figures are made with the object API,
so nothing here selects a backend or opens a window; the CLI saves them as PNG
files that open offline (and that DVC and MLflow show as images).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

POLICY_LABELS = {"model": "model", "oracle": "oracle", "one_size_fits_all": "one size fits all",
                 "usual_care": "usual care", "random": "random eligible"}
ORDER_LABELS = {"model": "model's order", "stepped_care": "stepped care", "oracle": "oracle order"}
COLORS = {"model": "#1f77b4", "oracle": "#2ca02c", "one_size_fits_all": "#ff7f0e",
          "usual_care": "#7f7f7f", "random": "#d62728", "stepped_care": "#ff7f0e"}
DPI = 110


def _grid(n: int, max_cols: int = 5) -> tuple[int, int]:
    cols = min(n, max_cols) or 1
    return int(np.ceil(n / cols)) or 1, cols


def reliability_figure(reliability: pd.DataFrame, outcome: str, continuous: bool = False
                       ) -> Figure:
    """Small multiples per treatment: mean prediction vs observed rate (or mean, for a
    continuous outcome), with the diagonal."""
    rows = reliability[reliability["outcome"] == outcome]
    treatments = list(dict.fromkeys(rows["treatment"]))
    n_rows, n_cols = _grid(len(treatments))
    fig = Figure(figsize=(2.6 * n_cols, 2.5 * n_rows + 0.6), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False)).ravel()
    values = rows[["mean_predicted", "observed"]].to_numpy()
    upper = float(np.nanmax(values, initial=0.05))
    limit = 1.1 * upper if continuous else min(1.0, 1.1 * upper)
    lower = min(0.0, 1.1 * float(np.nanmin(values, initial=0.0))) if continuous else 0.0
    for ax, treatment in zip(axes, treatments):
        bins = rows[rows["treatment"] == treatment]
        ax.plot([lower, limit], [lower, limit], color="0.7", lw=1, ls="--")
        ax.scatter(bins["mean_predicted"], bins["observed"], s=8 + bins["n"] / 3,
                   color=COLORS["model"], alpha=0.8)
        ax.plot(bins["mean_predicted"], bins["observed"], color=COLORS["model"], lw=0.8)
        ax.set(xlim=(lower, limit), ylim=(lower, limit), title=treatment.replace("_", " "))
        ax.tick_params(labelsize=7)
    for ax in axes[len(treatments):]:
        ax.set_visible(False)
    if continuous:
        fig.supxlabel("mean predicted NRS reduction (points)", fontsize=9)
        fig.supylabel("observed mean reduction", fontsize=9)
    else:
        fig.supxlabel(f"mean predicted P({outcome.replace('_', ' ')})", fontsize=9)
        fig.supylabel("observed rate", fontsize=9)
    fig.suptitle(f"Reliability, {outcome.replace('_', ' ')} models (test split, decile bins)",
                 fontsize=10)
    return fig


def policy_value_figure(policy: Mapping[str, Any], continuous: bool = False) -> Figure:
    """True mean net benefit and response per policy (95 % CI); DR estimates beside them."""
    values = policy["policy"]["values"]
    names = [p for p in POLICY_LABELS if p in values]
    ope = policy.get("off_policy", {})
    fig = Figure(figsize=(10, 4), dpi=DPI, layout="constrained")
    for ax, key in zip(fig.subplots(1, 2), ("net_benefit", "response")):
        x = np.arange(len(names))
        est = [values[p][f"mean_true_{key}"] for p in names]
        ax.bar(x, [e["estimate"] for e in est], color=[COLORS[p] for p in names], alpha=0.85,
               yerr=_yerr(est), capsize=3, label="true value")
        dr = [(i, ope[key][p]) for i, p in enumerate(names) if p in ope.get(key, {})]
        if dr:
            points = [d.get("dr", d.get("observed_mean")) for _, d in dr]
            ax.errorbar([i + 0.3 for i, _ in dr], [d["estimate"] for d in points],
                        yerr=_yerr(points), fmt="D", color="black", ms=4, capsize=2,
                        label="off-policy (DR) estimate")
        ax.set_xticks(x, [POLICY_LABELS[p] for p in names], rotation=20, fontsize=8)
        response = "NRS reduction (points)" if continuous else "P(response)"
        ax.set_ylabel(f"mean {'net benefit' if key == 'net_benefit' else response}")
        low = min(e["estimate"] for e in est)
        ax.set_ylim(max(0.0, low - 0.1), None)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Value of each policy on the test split (error bars: 95 % bootstrap CI)",
                 fontsize=10)
    return fig


def _yerr(estimates: Sequence[Mapping[str, float]]) -> np.ndarray:
    """2 x n error-bar lengths from {estimate, ci_low, ci_high} dicts (0 where unknown)."""
    est = np.array([e["estimate"] for e in estimates], dtype=float)
    low = np.array([e["ci_low"] for e in estimates], dtype=float)
    high = np.array([e["ci_high"] for e in estimates], dtype=float)
    return np.nan_to_num(np.vstack([est - low, high - est]).clip(min=0))


def regret_figure(regret: pd.DataFrame) -> Figure:
    """Cumulative distribution of per-patient regret (oracle minus policy net benefit)."""
    fig = Figure(figsize=(6.5, 4), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for name in regret.columns:
        values = np.sort(regret[name].to_numpy())
        share = np.arange(1, len(values) + 1) / len(values)
        ax.step(values, share, where="post", color=COLORS.get(name, None),
                label=f"{POLICY_LABELS.get(name, name)} (mean {values.mean():.3f})")
    ax.set(xlabel="regret per patient (true net benefit lost vs the oracle)",
           ylabel="share of patients with regret <= x", ylim=(0, 1.01), xlim=(0, None))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Regret distribution (test split, ground truth)", fontsize=10)
    return fig


def trials_figure(curve: pd.DataFrame) -> Figure:
    """P(a response within m trials) against m, per order of trying treatments."""
    fig = Figure(figsize=(6.5, 4), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for order, rows in curve.groupby("order", sort=False):
        ax.plot(rows["trials"], rows["p_response_within"], marker="o", ms=3,
                color=COLORS.get(str(order)), label=ORDER_LABELS.get(str(order), str(order)))
    ax.set(xlabel="treatment trials", ylabel="P(response within m trials)", ylim=(0, 1))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Trial and error until a first response (true probabilities)", fontsize=10)
    return fig


def subgroup_figure(subgroups: Mapping[str, Mapping[str, Any]], continuous: bool = False
                    ) -> Figure:
    """Per ancestry / sex group: policy value (true, else DR) and pooled response AUC (RMSE
    for a continuous outcome)."""
    metric = "rmse" if continuous else "auc"
    columns = list(subgroups)
    fig = Figure(figsize=(5.5 * max(1, len(columns)), 7), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, max(1, len(columns)), squeeze=False)
    for j, column in enumerate(columns):
        groups = subgroups[column]
        labels = [_group_label(g, s["n"]) for g, s in groups.items()]
        _subgroup_value_bars(axes[0, j], groups, labels)
        auc = [s["models_pooled"]["response"][metric] for s in groups.values()]
        axes[1, j].bar(np.arange(len(auc)), [a["estimate"] for a in auc], yerr=_yerr(auc),
                       capsize=3, color=COLORS["model"], alpha=0.8)
        axes[1, j].set_xticks(np.arange(len(auc)), labels, fontsize=7)
        if continuous:
            axes[1, j].set(ylabel="response RMSE, NRS points (models pooled)")
        else:
            axes[1, j].axhline(0.5, color="0.5", lw=1, ls="--")
            axes[1, j].set(ylabel="response AUC (models pooled)", ylim=(0.4, None))
        axes[0, j].set_title(f"by {column}", fontsize=10)
    fig.suptitle("Subgroups (test split; error bars: 95 % bootstrap CI)", fontsize=10)
    return fig


def _group_label(group: str, n: int) -> str:
    words = group.replace("_", "\n")
    return f"{words}\n(n={n})"


def _subgroup_value_bars(ax: Any, groups: Mapping[str, Any], labels: list[str]) -> None:
    x = np.arange(len(groups))
    first = next(iter(groups.values()))
    if "policy" in first:
        names = ("model", "one_size_fits_all", "usual_care", "oracle")
        est = {n: [s["policy"]["values"][n]["mean_true_net_benefit"] for s in groups.values()]
               for n in names}
        for i, name in enumerate(names):
            ax.bar(x + (i - 1.5) * 0.2, [e["estimate"] for e in est[name]], width=0.2,
                   yerr=_yerr(est[name]), capsize=2, color=COLORS[name],
                   label=POLICY_LABELS[name])
        low = min(e["estimate"] for values in est.values() for e in values)
        ax.set_ylim(max(0.0, low - 0.08), None)
        ax.set_ylabel("mean true net benefit")
    elif "off_policy" in first:
        est = [s["off_policy"]["net_benefit"]["model"]["dr"] for s in groups.values()]
        ax.bar(x, [e["estimate"] for e in est], yerr=_yerr(est), capsize=3,
               color=COLORS["model"], label="model (DR estimate)")
        ax.set_ylabel("net benefit, DR estimate")
    else:
        ax.text(0.5, 0.5, "no ground truth and no propensity model:\npolicy value not estimable",
                ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_axis_off()
        return
    ax.set_xticks(x, labels, fontsize=7)
    ax.legend(fontsize=7, loc="upper center", ncols=4, bbox_to_anchor=(0.5, -0.15),
              frameon=False)


def evaluation_figures(evaluation: Any) -> dict[str, Figure]:
    """Every figure the evaluation's contents allow, by file stem."""
    curves, detail = evaluation.curves, evaluation.policy
    continuous = evaluation.summary.get("outcome") == "nrs_change"
    figures: dict[str, Figure] = {}
    reliability = curves.get("reliability")
    if reliability is not None and not reliability.empty:
        for outcome in dict.fromkeys(reliability["outcome"]):
            figures[f"reliability_{outcome}"] = reliability_figure(
                reliability, outcome, continuous and outcome == "response")
    if "policy" in detail:
        figures["policy_value"] = policy_value_figure(detail, continuous)
    if "regret" in curves:
        figures["regret"] = regret_figure(curves["regret"])
    if "trials" in curves:
        figures["trials_to_response"] = trials_figure(curves["trials"])
    if evaluation.subgroups:
        figures["subgroups"] = subgroup_figure(evaluation.subgroups, continuous)
    return figures
