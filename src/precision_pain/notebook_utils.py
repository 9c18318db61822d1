"""Helpers for the notebooks in ``notebooks/``: find the project, read what ``dvc repro`` wrote,
and shape it into small tables that a notebook shows or plots in one line.

Notebooks stay glue: what they compute lives here, next to the package it reads. Nothing here
writes files or changes the tracking store. The project is ``$PRECISION_PAIN_PROJECT`` (a
project folder, or its params.yaml) when set, else the nearest folder at or above the working
directory that holds params.yaml.

Only the pipeline's stable surfaces are read: the files named in params.yaml, the MLflow store,
:func:`precision_pain.models.bundle.load_bundle` and
:func:`precision_pain.predict.recommend.recommend`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from precision_pain.config import Params, load_params
from precision_pain.data.contract import read_pipeline_table
from precision_pain.data.pgx import PHENOTYPE_COLUMNS, PHENOTYPE_ORDER

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from precision_pain.models.bundle import ModelBundle

PROJECT_ENV = "PRECISION_PAIN_PROJECT"
# Headline test metrics compared across runs, when the evaluation logged them.
HEADLINE_METRICS = ("test.mean_response_auc", "test.mean_adverse_event_auc",
                    "test.mean_response_brier", "test.policy.model.mean_true_net_benefit",
                    "test.policy.share_of_oracle_gain_captured")
RANKED_COLUMNS = ("rank", "treatment", "eligible", "p_response", "p_adverse_event",
                  "net_benefit", "guideline_action", "low_confidence", "explanation")


@dataclass(frozen=True)
class Project:
    """A project folder and its validated params.yaml."""

    root: Path
    params: Params

    def path(self, relative: str | Path) -> Path:
        """A path from params.yaml, anchored at the project folder."""
        path = Path(relative)
        return path if path.is_absolute() else self.root / path


def find_project(start: str | Path | None = None) -> Project:
    """The project the notebooks read: ``$PRECISION_PAIN_PROJECT``, else the nearest params.yaml."""
    pointer = os.environ.get(PROJECT_ENV)
    if pointer:
        path = Path(pointer).expanduser().resolve()
        params_file = path if path.is_file() else path / "params.yaml"
    else:
        here = Path(start or Path.cwd()).resolve()
        found = [d / "params.yaml" for d in (here, *here.parents) if (d / "params.yaml").exists()]
        if not found:
            raise FileNotFoundError(
                f"no params.yaml in {here} or above; run the notebook inside the project or "
                f"set {PROJECT_ENV}=/path/to/project")
        params_file = found[0]
    return Project(params_file.parent, load_params(params_file))


def load_cohort(project: Project) -> pd.DataFrame:
    """The prepared cohort (data.prepared): contract columns, PGx phenotypes, ``response``."""
    return read_pipeline_table(project.path(project.params.data.prepared))


def load_truth(project: Project) -> pd.DataFrame:
    """The ground truth (data.prepared_truth): one row per patient and treatment; may be empty."""
    return read_pipeline_table(project.path(project.params.data.prepared_truth))


def load_split(project: Project, name: str = "test") -> pd.DataFrame:
    """One split (train, valid or test) from data.splits_dir."""
    return read_pipeline_table(project.path(project.params.data.splits_dir) / f"{name}.parquet")


def load_models(project: Project) -> ModelBundle:
    """The trained model bundle (model.dir)."""
    from precision_pain.models.bundle import load_bundle

    return load_bundle(project.path(project.params.model.dir))


# ------------------------------------------------------------------- 01: the cohort

def phenotype_shares(cohort: pd.DataFrame, gene: str) -> pd.DataFrame:
    """Share of each CPIC phenotype of ``gene`` (CYP2D6, CYP2C19, CYP2C9) within each ancestry."""
    if gene not in PHENOTYPE_COLUMNS:
        raise KeyError(f"unknown gene {gene!r}; valid: {', '.join(PHENOTYPE_COLUMNS)}")
    shares = pd.crosstab(cohort["ancestry"], cohort[PHENOTYPE_COLUMNS[gene]], normalize="index")
    order = [p for p in PHENOTYPE_ORDER if p in shares.columns]
    return shares[order + [c for c in shares.columns if c not in order]].rename_axis(
        columns=f"{gene} phenotype")


def outcomes_by_treatment(cohort: pd.DataFrame, truth: pd.DataFrame | None = None
                          ) -> pd.DataFrame:
    """Observed outcomes per treatment received; with a truth, what everyone eligible would get.

    ``true_response_if_treated`` is the mean true P(response) of the patients who got the
    treatment, ``true_response_if_all_eligible`` the same over every eligible patient: the gap
    is who usual care chose (confounding), not what the treatment does.
    """
    reduction = 1 - cohort["pain_followup"] / cohort["pain_baseline"].where(
        cohort["pain_baseline"] > 0)
    table = cohort.assign(pain_reduction=reduction).groupby("treatment").agg(
        patients=("patient_id", "size"), response_rate=("response", "mean"),
        adverse_event_rate=("adverse_event", "mean"),
        mean_pain_reduction=("pain_reduction", "mean"))
    if truth is not None and not truth.empty:
        key = ["patient_id", "treatment"]
        received = cohort[key].merge(truth, on=key, how="left")
        eligible = truth[truth["eligible"].astype(bool)]
        table["true_response_if_treated"] = received.groupby("treatment")["p_response"].mean()
        table["true_response_if_all_eligible"] = eligible.groupby("treatment")["p_response"].mean()
    return table.sort_values("patients", ascending=False)


def treatment_shares_by(cohort: pd.DataFrame, column: str, bins: int = 3) -> pd.DataFrame:
    """Share of each treatment received within quantile groups (tertiles) of ``column``.

    Tied values stay in one group, so groups of a discrete score can differ in size.
    """
    values = pd.to_numeric(cohort[column])
    group = pd.qcut(values, bins, labels=False, duplicates="drop")
    bounds = values.groupby(group).agg(["min", "max"])
    labels = {g: f"{column} {lo:g}-{hi:g}" for g, (lo, hi) in bounds.iterrows()}
    shares = pd.crosstab(group.map(labels), cohort["treatment"], normalize="index")
    return shares.reindex([labels[g] for g in sorted(labels)]).rename_axis(index=column)


def propensity_spread(truth: pd.DataFrame, floor: float = 0.05) -> pd.DataFrame:
    """How usual care's true P(treatment | patient) spreads over the eligible patients.

    Low minima mean few comparable patients got the treatment (weak overlap): off-policy
    estimates there rest on large weights. ``share_below_floor`` counts them.
    """
    if "p_usual_care" not in truth.columns:
        raise KeyError("the ground truth has no p_usual_care column (not a synthetic cohort?)")
    eligible = truth[truth["eligible"].astype(bool)]
    p = eligible.groupby("treatment")["p_usual_care"]
    return pd.DataFrame({
        "eligible_patients": p.size(), "min": p.min(), "p05": p.quantile(0.05),
        "median": p.median(), "p95": p.quantile(0.95), "max": p.max(),
        "share_below_floor": p.apply(lambda s: float((s < floor).mean())),
    }).sort_values("median")


# ------------------------------------------------------------------- 02: MLflow runs

def tracking_runs(project: Project) -> pd.DataFrame:
    """Every run of the project's MLflow experiment (``mlflow.search_runs``), newest first.

    Points MLflow at the project's store: ``MLFLOW_TRACKING_URI``, else ``tracking.uri`` (a
    relative SQLite path is taken from the project folder).
    """
    import warnings

    from precision_pain.tracking import disable_telemetry, resolve_uri

    with warnings.catch_warnings():  # mlflow imports tqdm.auto, which warns without ipywidgets
        warnings.filterwarnings("ignore", message="IProgress not found")
        import mlflow

    disable_telemetry()
    mlflow.set_tracking_uri(resolve_uri(project.params.tracking, root=project.root))
    return mlflow.search_runs(experiment_names=[project.params.tracking.experiment],
                              order_by=["attribute.start_time DESC"])


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    """A column of ``mlflow.search_runs``' frame, or missing values if no run has it."""
    return runs[name] if name in runs else pd.Series(None, index=runs.index, dtype=object)


def training_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per training (parent) run: model type, provenance tags and its test metrics.

    Rows are labelled ``<model type> · [<DVC experiment>] <run id prefix>``.
    """
    if runs.empty:
        return pd.DataFrame()
    is_train = _column(runs, "tags.mlflow.runName").fillna("").str.startswith("train")
    parents = runs[_column(runs, "tags.mlflow.parentRunId").isna() & is_train]
    exp = _column(parents, "tags.dvc_exp_name").fillna("")
    label = parents["params.model.type"] + " · " + (exp + " ").str.lstrip() + \
        parents["run_id"].str[:7]
    table = pd.DataFrame({"run_id": parents["run_id"], "model_type": parents["params.model.type"],
                          "start_time": parents["start_time"],
                          **{t: _column(parents, f"tags.{t}")
                             for t in ("git_commit", "dvc_exp_name", "params_md5")}})
    metrics = parents[[c for c in parents.columns if c.startswith("metrics.test.")]]
    table = table.join(metrics.rename(columns=lambda c: c.removeprefix("metrics.")))
    return table.set_axis(pd.Index(label, name="run"))


def headline_metrics(table: pd.DataFrame, preferred: Sequence[str] = HEADLINE_METRICS
                     ) -> list[str]:
    """The preferred metric columns the runs have (else the first few ``test.`` ones)."""
    present = [m for m in preferred if m in table.columns and table[m].notna().any()]
    return present or [c for c in table.columns if c.startswith("test.")][:4]


def treatment_metric(runs: pd.DataFrame, metric: str = "valid_response_auc") -> pd.DataFrame:
    """One per-treatment metric of every training run: treatments x runs."""
    if runs.empty or f"metrics.{metric}" not in runs:
        return pd.DataFrame()
    parents = training_runs(runs)
    child = runs[runs["tags.mlflow.parentRunId"].isin(parents["run_id"])]
    label = dict(zip(parents["run_id"], parents.index, strict=True))
    return child.assign(run=child["tags.mlflow.parentRunId"].map(label)).pivot_table(
        index="tags.treatment", columns="run", values=f"metrics.{metric}").rename_axis(
        index="treatment")


def runs_figure(table: pd.DataFrame, metrics: Sequence[str]) -> Figure:
    """One panel per metric, one dot per run, coloured by model type."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure((3.2 * max(len(metrics), 1), 0.45 * len(table) + 1.6))
    axes = fig.subplots(1, max(len(metrics), 1), sharey=True, squeeze=False)[0]
    types = sorted(table["model_type"].unique())
    colors = {t: f"C{i}" for i, t in enumerate(types)}
    for ax, metric in zip(axes, metrics, strict=False):
        ax.hlines(table.index, table[metric].min(), table[metric], color="0.85", linewidth=1)
        ax.scatter(table[metric], table.index, color=table["model_type"].map(colors), zorder=3)
        ax.set_title(metric.removeprefix("test.").replace(".", "\n", 1), fontsize=8)
        ax.margins(x=0.15, y=0.2)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", linewidth=0.4)
    fig.legend(handles=[_patch(colors[t], t) for t in types], loc="outside lower center",
               ncols=len(types), fontsize=8, frameon=False)
    return fig


def _figure(size: tuple[float, float]) -> Figure:
    """A new figure that a notebook shows once, as the cell's value (closed for pyplot)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=size, layout="constrained")
    plt.close(fig)
    return fig


def _patch(color: str, label: str) -> Any:
    from matplotlib.patches import Patch

    return Patch(color=color, label=label)


# ------------------------------------------------------------------- 03: one patient

PROFILE_COLUMNS = ("patient_id", "age", "sex", "condition", "pain_baseline",
                   "pain_duration_months", "phq9", "ort_score", "baseline_mme", "egfr",
                   "cyp2d6_phenotype", "cyp2d6_effective_phenotype", "cyp2c19_phenotype",
                   "cyp2c9_phenotype", "oprm1_g_count", "comt_met_count")


def patient_profile(patient: pd.DataFrame) -> pd.Series:
    """The patient's main model inputs (not the treatment received nor its outcome)."""
    return patient.iloc[0][[c for c in PROFILE_COLUMNS if c in patient.columns]]


def pick_patient(cohort: pd.DataFrame, patient_id: str | None = None) -> pd.DataFrame:
    """One patient's prepared row: ``patient_id``, else the first non-normal CYP2D6 metabolizer."""
    if patient_id is not None:
        row = cohort[cohort["patient_id"].astype(str) == str(patient_id)]
        if row.empty:
            raise KeyError(f"patient {patient_id!r} is not in this table; pick another id")
        return row.head(1).reset_index(drop=True)
    pgx = cohort[cohort["cyp2d6_phenotype"].isin(["PM", "UM"])]
    return (pgx if len(pgx) else cohort).sort_values("patient_id").head(1).reset_index(drop=True)


def recommend_patient(project: Project, patient: pd.DataFrame, bundle: ModelBundle) -> Any:
    """The pipeline's ranked, explained recommendations for ``patient`` (``predict.recommend``)."""
    from precision_pain.predict.recommend import options_from_params, recommend

    return recommend(patient, bundle, options_from_params(project.params))


def ranked_list(recommendations: Any) -> pd.DataFrame:
    """The ranked treatments, with the columns a reader needs first (for a bundle trained on
    the change in pain, ``expected_nrs_change`` in place of the empty ``p_response``)."""
    table = recommendations.table
    columns = list(RANKED_COLUMNS)
    if "expected_nrs_change" in table and table["expected_nrs_change"].notna().any():
        columns[columns.index("p_response")] = "expected_nrs_change"
    return table[[c for c in columns if c in table.columns]].set_index("rank")


PLAN_LIST_COLUMNS = ("rank", "plan", "n_components", "p_response", "p_adverse_event",
                     "net_benefit", "ranking_score", "action", "rules", "dose_guidance",
                     "net_benefit_over_best_single", "explanation")
NO_PLAN_LEARNER = ("this model bundle has no plan learner: train on a cohort with plan "
                   "episodes (contract v2; simulate.plans: true) to rank treatment plans")


def ranked_plans(recommendations: Any) -> pd.DataFrame:
    """The ranked treatment plans (``predict``'s ``<stem>.plans`` rows), or a one-line note
    when the bundle has no plan learner."""
    plans = getattr(recommendations, "plans", None)
    if plans is None:
        return pd.DataFrame({"note": [NO_PLAN_LEARNER]})
    table = plans.table
    return table[[c for c in PLAN_LIST_COLUMNS if c in table.columns]].set_index("rank")


def plan_component_parts(recommendations: Any, bundle: ModelBundle) -> pd.DataFrame:
    """Why each component is in each listed plan: per plan, outcome and component, the
    component's exact SHAP part in log-odds (its ``treatment=`` and ``pair=`` columns) and
    the plan size's; empty (with the note) without the plan learner."""
    from precision_pain.models.plan_model import N_COMPONENTS, component_parts

    plans = getattr(recommendations, "plans", None)
    if plans is None or bundle.plan_models is None:
        return pd.DataFrame({"note": [NO_PLAN_LEARNER]})
    shap = plans.shap
    design = [c for c in shap.columns if c not in {"patient_id", "plan", "outcome", "rank"}]
    phi = shap[design].to_numpy(float)
    size = design.index(N_COMPONENTS)
    rows = []
    for i, (rank, plan, outcome) in enumerate(zip(shap["rank"], shap["plan"], shap["outcome"])):
        parts = component_parts(phi[i:i + 1], plan, bundle.plan_models.treatments)
        rows += [(rank, plan, outcome, c, float(v[0])) for c, v in parts.items()]
        rows.append((rank, plan, outcome, N_COMPONENTS, float(phi[i, size])))
    frame = pd.DataFrame(rows, columns=["rank", "plan", "outcome", "part", "log_odds"])
    return frame.pivot_table(index=["rank", "plan", "part"], columns="outcome",
                             values="log_odds", sort=False)


def shap_by_treatment(bundle: ModelBundle, patient: pd.DataFrame, treatments: Sequence[str],
                      outcome: str = "response") -> pd.DataFrame:
    """Exact SHAP values of ``outcome`` for one patient: treatments x features + bias (log-odds;
    for a bundle trained on the change in pain, the response's are in NRS points)."""
    from precision_pain.data.features import build_features

    X = build_features(patient.head(1))
    rows = {t: bundle.model(t, outcome).contributions(X)[0] for t in treatments}
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*X.columns, "bias"])


def top_contributions(shap: pd.DataFrame, patient: pd.DataFrame, treatment: str,
                      n: int = 8) -> pd.Series:
    """The ``n`` largest SHAP values of one treatment, labelled with the patient's values."""
    from precision_pain.data.features import build_features, describe

    X = build_features(patient.head(1)).iloc[0]
    values = shap.loc[treatment].drop("bias")
    values = values[values != 0]
    top = values.reindex(values.abs().sort_values(ascending=False).index[:n])
    return top.set_axis([describe(f, float(X[f])) for f in top.index]).rename(treatment)


def contributions_table(shap: pd.DataFrame, patient: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """Per treatment (in ``shap``'s order): the ``n`` features that moved it most, in words."""
    rows = []
    for treatment in shap.index:
        top = top_contributions(shap, patient, treatment, n)
        rows.append({"treatment": treatment, "bias": float(shap.loc[treatment, "bias"]),
                     **{f"#{i + 1}": f"{label} ({value:+.2f})"
                        for i, (label, value) in enumerate(top.items())}})
    return pd.DataFrame(rows).set_index("treatment").fillna("")


def contributions_figure(shap: pd.DataFrame, patient: pd.DataFrame, treatments: Sequence[str],
                         n: int = 8, outcome: str = "response") -> Figure:
    """One panel per treatment: its ``n`` largest SHAP values (red raises the odds, blue lowers)."""
    fig = _figure((4.2 * len(treatments), 0.32 * n + 1.4))
    axes = fig.subplots(1, len(treatments), squeeze=False)[0]
    for ax, treatment in zip(axes, treatments, strict=True):
        top = top_contributions(shap, patient, treatment, n).iloc[::-1]
        ax.barh(top.index, top.to_numpy(), color=np.where(top > 0, "#c0392b", "#2e6fba"))
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(treatment, fontsize=9)
        ax.tick_params(labelsize=7)
        if top.empty:
            ax.text(0.5, 0.5, "no feature moves this model\n(constant rate)", ha="center",
                    va="center", transform=ax.transAxes, fontsize=8)
    fig.supxlabel(f"SHAP value (log-odds of {outcome.replace('_', ' ')})", fontsize=9)
    return fig
