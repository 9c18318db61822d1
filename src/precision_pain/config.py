"""Typed, validated view of params.yaml.

params.yaml is read once, at the CLI entry point, into frozen sections. A
misspelled or missing key fails with its dotted name and the file, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataParams(_Section):
    """Where the cohort comes from and where derived tables go."""

    cohort: Path
    ground_truth: Path | None
    synthetic_cohort: Path
    synthetic_truth: Path
    # Per-plan ground truth of the synthetic cohort (header only unless simulate.plans).
    synthetic_plan_truth: Path | None = None
    # Per-plan ground truth of data.cohort that evaluate scores plans against (absent: the
    # synthetic one). The synthetic file is never used for another cohort.
    plan_truth: Path | None = None
    prepared: Path
    prepared_truth: Path
    splits_dir: Path

    @field_validator("plan_truth", mode="before")
    @classmethod
    def _a_file_not_null(cls, v: Any) -> Any:
        if v is None:  # dvc.yaml declares the file as evaluate's dependency
            raise ValueError("must name a file, not null: leave the synthetic default "
                             "(data/synthetic/plan_truth.parquet), which is never applied to "
                             "another cohort, or give your cohort's per-plan truth")
        return v


class SimulateParams(_Section):
    """Synthetic cohort size, seed and population mix."""

    n_patients: int = Field(gt=0)
    seed: int
    ancestry_mix: dict[str, float]
    # SD of the true relative NRS reduction around its patient/treatment mean.
    response_sd: float = Field(default=0.30, gt=0)
    # Usual care gives every eligible treatment at least this probability (overlap).
    usual_care_floor: float = Field(default=0.02, ge=0, le=0.1)
    # Share of each genotype column reported missing ('' or 'unknown').
    missing_genotype_rate: float = Field(default=0.02, ge=0, lt=1)
    # Share of patients whose measurement is not recorded (left empty), per contract column
    # that may be empty (bmi, pcs, phq9, gad7, activity_level, ort_score, egfr); at random,
    # from a stream of its own, so the rest of the cohort is the same with or without it.
    # Default: none.
    missing_measurement_rate: dict[str, float] = {}
    # Who goes unrecorded: "mcar" (completely at random) or "mar" (at random given recorded
    # features: eGFR for younger, non-diabetic patients, the Opioid Risk Tool for patients
    # not on opioids, questionnaires and activity at milder pain; data.simulate
    # .RECORDING_DRIVERS), each rate kept on average.
    missing_measurement_mechanism: Literal["mcar", "mar"] = "mcar"
    # Opt-in registry treatments to simulate (data.simulate.OPT_IN_TREATMENTS: neurofeedback).
    optional_treatments: list[str] = []
    # Opt-in treatment plans (docs/synthetic-cohort.md): usual care gives a share plan_share
    # of the episodes a plan of two or more components; a per-plan ground truth is written.
    plans: bool = False
    plan_share: float = Field(default=0.3, ge=0, lt=1)

    @field_validator("missing_measurement_rate")
    @classmethod
    def _measurements_that_may_be_empty(cls, v: dict[str, float]) -> dict[str, float]:
        from precision_pain.data.contract.schema import measurement_columns

        unknown = sorted(set(v) - set(measurement_columns()))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a measurement the contract lets an "
                             f"extract leave empty ({', '.join(measurement_columns())})")
        if any(not 0 <= rate < 1 for rate in v.values()):
            raise ValueError("rates must be in [0, 1)")
        return v

    @field_validator("ancestry_mix")
    @classmethod
    def _mix_sums_to_one(cls, v: dict[str, float]) -> dict[str, float]:
        total = sum(v.values())
        if any(p < 0 for p in v.values()) or abs(total - 1.0) > 1e-6:
            raise ValueError(f"shares must be >= 0 and sum to 1 (they sum to {total:.4f})")
        return v


class PrepareParams(_Section):
    """Outcome definition (:mod:`precision_pain.outcome`)."""

    response_threshold: float = Field(gt=0, lt=1)
    # What the response model predicts: the responder flag, or the change in NRS pain.
    outcome: Literal["responder", "nrs_change"] = "responder"


class SplitParams(_Section):
    """Grouped train/validation/test split."""

    seed: int
    valid_fraction: float = Field(gt=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)


class ModelParams(_Section):
    """Model type, its hyperparameters, and where fitted models go."""

    type: str
    seed: int
    dir: Path
    treatments: list[str] | None = None
    # The train split supports a treatment with this many patients and events (see
    # models/train.py arm_support).
    min_patients: int = Field(ge=1)
    min_events: int = Field(ge=1)
    hyperparameters: dict[str, dict[str, Any]]
    # Training's own figures (model type, wall time, validation DR value): a DVC metrics file
    # so `dvc exp show` lists them beside the evaluation's. None: not written.
    metrics: Path | None = None
    # The bundle the evaluate stage scores on the test split. None: evaluation scores model.dir
    # itself (needed for the pooled learner's refit_on_all, which refits model.dir on every
    # split after this bundle is saved).
    evaluated_dir: Path | None = None

    @model_validator(mode="after")
    def _learner_settings_fit_together(self) -> ModelParams:
        settings = self.hyperparameters.get(self.type, {})
        if settings.get("refit_on_all") and self.evaluated_dir is None:
            raise ValueError(
                f"model.hyperparameters.{self.type}.refit_on_all is true, which refits "
                "model.dir on the test split too, but model.evaluated_dir is not set: set it "
                "(e.g. models/evaluated) so evaluation scores a bundle that never saw the "
                "test split, or set refit_on_all: false")
        folds = settings.get("pain_companion_folds", 0)
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 0 or folds == 1:
            raise ValueError(
                f"model.hyperparameters.{self.type}.pain_companion_folds is {folds!r}: give 0 "
                "(stacking weights fitted on the validation split) or a whole number of folds "
                ">= 2 (fitted on cross-fitted predictions over train + validation; default 5)")
        return self


class EvaluateParams(_Section):
    """Evaluation settings and output paths."""

    harm_weight: float = Field(ge=0)
    # prepare.outcome nrs_change: NRS points one adverse event costs at harm weight 1.
    adverse_event_nrs_points: float = Field(default=2.0, gt=0)
    metrics: Path
    per_treatment: Path
    policy: Path
    subgroups: Path
    plots_dir: Path
    report: Path
    n_bootstrap: int = Field(ge=0)
    seed: int
    stepped_care: list[str]
    # Off-policy estimators cap importance weights at 1 / propensity_clip.
    propensity_clip: float = Field(gt=0, lt=1)
    # The per-treatment table flags arms with fewer training patients than this.
    small_arm_patients: int = Field(ge=0)
    # CDC 2022 recommendation 2: an opioid ranks below the patient's eligible, allowed
    # non-opioid options (predict and evaluate rank alike).
    non_opioid_first: bool = True
    # Cross-fitted DR gains over every patient of the extract (evaluate/crossfit.py): the
    # learner is trained this many times, each fold valued by the models fitted without it.
    # 0 = off.
    cross_fitted_folds: int = Field(default=0, ge=0)
    # ... only for extracts up to this many patients: above it the test split alone holds
    # enough patients, and the extra trainings would cost more than the whole train stage.
    cross_fitted_max_patients: int = Field(default=100_000, ge=0)

    @field_validator("cross_fitted_folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        if value == 1:
            raise ValueError("one fold leaves nothing to train on: use 0 (off) or at least 2")
        return value


class TrackingParams(_Section):
    """MLflow tracking; MLFLOW_TRACKING_URI in the environment overrides ``uri``."""

    uri: str
    experiment: str
    artifact_location: Path
    registered_model_prefix: str
    alias: str


class PredictParams(_Section):
    """Defaults for ``precision-pain predict``."""

    top_k_explained: int = Field(ge=1)
    n_explanation_features: int = Field(ge=1)
    chunk_size: int = Field(ge=1)
    # Patient sections in the HTML report (the cohort summary always covers everyone).
    report_max_patients: int = Field(default=200, ge=0)
    # "explained": SHAP values for the top_k_explained ranks; "all": for every row.
    shap_rows: Literal["explained", "all"] = "explained"
    # low_confidence when an eligible treatment's propensity is below this ...
    min_propensity: float = Field(ge=0, le=1)
    # ... or the Venn-Abers interval of P(response) is wider than this.
    max_interval_width: float = Field(gt=0, le=1)
    # ... or P(response) lies further than this outside that interval (held-out patients
    # near it responded at another rate).
    calibration_tolerance: float = Field(ge=0, le=1)
    # The served model refuses requests with more patients than this (HTTP 400).
    max_request_rows: int = Field(ge=1)
    # Ranked plans: low_confidence when fewer training patients received the plan.
    min_plan_episodes: int = Field(default=20, ge=0)
    # A bundle of prepare.outcome: nrs_change: coverage of the prediction interval of the
    # patient's change in pain (split conformal; 0.50-0.99).
    nrs_interval_level: float = Field(default=0.9, ge=0.5, le=0.99)


class EngineParams(_Section):
    """Where the stages compute: this process, or a Dask cluster (docs/scaling.md)."""

    # local: today's single process. dask: partitions, arms and bootstrap run on workers.
    type: Literal["local", "dask"] = "local"
    # dask only. null: the run starts a LocalCluster on 127.0.0.1 and stops it at the end;
    # or the address of a running scheduler (tcp://host:8786).
    scheduler: str | None = None
    # The LocalCluster's worker processes, threads and memory limit per worker.
    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = "4GiB"
    # The LocalCluster's dashboard (127.0.0.1:0 = any free port; null = none).
    dashboard_address: str | None = "127.0.0.1:0"
    # Rows per partition when prepare reads the cohort (predict uses predict.chunk_size).
    partition_rows: int = Field(default=100_000, ge=1)
    # Partitions sent ahead per worker thread: bounds the memory of the client and workers.
    partitions_in_flight: int = Field(default=2, ge=1)
    # Seconds to wait for the first worker of a scheduler given by address.
    connect_timeout: float = Field(default=60, gt=0)
    # local only: threads for independent single-threaded fits (the pooled learner's
    # boosters); None = every core. The boosters, and so the results, do not depend on it.
    local_threads: int | None = Field(default=None, ge=1)
    # The pooled learner trains with xgboost.dask (data spread over every worker) when its
    # training set has more rows than this; below it, each hyperparameter candidate's booster
    # is one task on one worker. null: never.
    distributed_training_rows: int | None = Field(default=None, ge=1)


class ExtractSource(_Section):
    """One OMOP CDM database (and its PharmCAT outputs) to extract a cohort from."""

    # duckdb: `database` is a .duckdb file or a folder of CDM tables (Parquet/CSV).
    # postgresql: `dsn_env` names the environment variable holding the connection string;
    # credentials come from the environment (PGPASSWORD, ~/.pgpass), never from this file.
    engine: Literal["duckdb", "postgresql"] = "duckdb"
    database: Path | None = None
    dsn_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # SQL identifiers (they are written into the queries): letters, digits, underscores.
    cdm_schema: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    vocabulary_schema: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Folder of PharmCAT outputs with sample_map.csv (docs/real-data.md); null = none.
    pharmcat_dir: Path | None = None
    # Synthetic worlds only: ground truth keyed by person_id, relabelled to study ids.
    truth: Path | None = None
    # The one file or folder DVC watches for changes: keep the DuckDB file (or CDM folder)
    # and the PharmCAT folder under it (for PostgreSQL: the PharmCAT folder).
    inputs: Path


class SyntheticWorld(_Section):
    """A synthetic OMOP world written by `precision-pain simulate-omop`."""

    out: Path
    n_patients: int = Field(gt=0)
    seed: int


class ExtractParams(_Section):
    """OMOP CDM + PharmCAT route: study definition, sources and outputs."""

    study: Path
    # One folder per source: <out_dir>/<source>/cohort.parquet, attrition.csv (and
    # ground_truth.parquet for synthetic worlds).
    out_dir: Path
    # Empty by default: `dvc repro` then runs the synthetic pipeline only.
    sources: dict[str, ExtractSource] = {}
    # Synthetic OMOP worlds (name -> folder, size and seed); empty by default.
    synthetic_worlds: dict[str, SyntheticWorld] = {}


class Params(_Section):
    """All of params.yaml."""

    data: DataParams
    simulate: SimulateParams
    prepare: PrepareParams
    split: SplitParams
    model: ModelParams
    evaluate: EvaluateParams
    tracking: TrackingParams
    predict: PredictParams
    extract: ExtractParams
    engine: EngineParams = EngineParams()


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid."""


def read_yaml(path: Path, error: type[Exception], hint: str) -> Any:
    """A YAML file's content; a missing or malformed file raises ``error`` naming it."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: not found; {hint}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None
                ) -> Params:
    """Read and validate params.yaml; ``overrides`` maps dotted keys to values."""
    path = Path(path)
    raw = read_yaml(path, ParamsError, "run from the project root or pass --params")
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ParamsError(f"{path}: {problems}") from None


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
