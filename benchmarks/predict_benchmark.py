"""Speed and memory of `precision-pain predict` (a script, not a test).

    python benchmarks/predict_benchmark.py                 # 100,000 patients, both model types
    python benchmarks/predict_benchmark.py --n 1000000 --no-bare --model-types xgboost
                                                           # memory check at 1M patients

Prints, for a synthetic cohort of --n patients (outcome columns dropped) and for each
model type of --model-types (default: the pooled learner, params' default, and
per-treatment xgboost, compared in one run on the same cohort):

- end-to-end throughput of the CLI (`precision-pain predict`, a subprocess: reading,
  validation, scoring, guideline checks, SHAP, sentences, and writing table, SHAP,
  JSON and HTML), and its peak resident memory (from wait4's rusage), also for a
  cohort 10x smaller, to show memory does not grow with the cohort;
- the same work in-process without file I/O (the `recommend` core, chunk by chunk);
- the bare model work on the same rows, the least any predict must compute for these
  outputs: xgboost scoring of every (patient, treatment) row by each outcome's model
  (every row: the table gives P(response) and P(adverse event) of every treatment) plus
  `pred_contribs` on the rows predict explains; and the ratio of end-to-end time to it.
  For a pooled bundle the booster scores the pooled design (patient features + treatment
  and pair indicators, built outside the timed part as for per-treatment models);
- the same model work with the exact SHAP values from the per-leaf tables predict uses
  (models/treeshap.py, the same values as pred_contribs, faster), and the ratio of
  end-to-end time to that stricter baseline;
- `shap.TreeExplainer` on every treatment model for every patient (timed on a
  sample, extrapolated), and predict's speed-up over it.

The CLI and the bare model work are timed --repeat times, alternately, and the medians
are printed (the machine is shared: CPU seconds are the steadier figure).

The bundle of a model type is --models (default: params' model.dir) when it is of that
type and carries the training profile; otherwise one is trained with the project's
default params (that model type) on a synthetic cohort of simulate.n_patients and kept in
the work folder (`bundle_<type>`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ["treatment", "pain_followup", "adverse_event"]


@dataclass(frozen=True)
class Run:
    """One CLI run: wall seconds, CPU seconds (user + system) and peak RSS in MB."""

    seconds: float
    cpu: float
    peak_mb: float


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="patients to predict for")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--models", type=Path, help="bundle folder [model.dir]")
    parser.add_argument("--work", type=Path, help="folder for inputs, outputs and a trained "
                                                  "bundle [a temporary folder]")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--explainer-sample", type=int, default=2_000,
                        help="patients to time shap.TreeExplainer on (then extrapolated)")
    parser.add_argument("--baseline-n", type=int,
                        help="also run this many patients to compare peak memory with "
                             "[2 x predict.chunk_size, when smaller than --n]")
    parser.add_argument("--no-bare", action="store_true",
                        help="skip the bare-model and TreeExplainer baselines")
    parser.add_argument("--model-types", nargs="+", default=["pooled_xgboost", "xgboost"],
                        help="bundles to compare, by model type [pooled_xgboost xgboost]")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed CLI and bare runs per bundle; medians are printed [3]")
    parser.add_argument("--bare-all", action="store_true",
                        help="also time pred_contribs on every row (the cost of SHAP for all "
                             "rows; slow for the pooled learner)")
    return parser.parse_args()


def get_bundle(params, model_type: str, models: Path, work: Path) -> Path:
    """A bundle folder of ``model_type`` with a training profile: --models if it is one,
    else one trained earlier in the work folder, else trained now."""
    from precision_pain.models.bundle import load_bundle
    from precision_pain.models.profile import has_profile

    own = work / f"bundle_{model_type}"
    for candidate in (models, own):
        try:
            bundle = load_bundle(candidate)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            print(f"[bundle] {candidate} not usable ({type(exc).__name__}: {exc})")
            continue
        if bundle.model_type != model_type:
            continue
        if has_profile(bundle.metadata):
            return candidate
        print(f"[bundle] {candidate} lacks the training profile (retrain); not used")
    model = params.model.model_copy(update={"type": model_type})
    return train_bundle(params.model_copy(update={"model": model}), own)


def train_bundle(params, out: Path) -> Path:
    """Train every treatment with the project's default params on a synthetic cohort."""
    from precision_pain.data.prepare import prepare_cohort
    from precision_pain.data.simulate import simulate_cohort
    from precision_pain.data.split import split_cohort
    from precision_pain.models import train
    from precision_pain.models.bundle import save_bundle

    start = time.perf_counter()
    cohort = simulate_cohort(params.simulate, params.prepare.response_threshold).cohort
    prepared = prepare_cohort(cohort, "synthetic", params.prepare.response_threshold)
    parts = split_cohort(prepared, params.split.valid_fraction, params.split.test_fraction,
                         params.split.seed)
    treatments, _ = train.modeled_treatments(parts["train"], parts["valid"], params.model)
    bundle = train.train_bundle(parts["train"], parts["valid"], treatments, params.model,
                                params.prepare.response_threshold,
                                harm_weight=params.evaluate.harm_weight,
                                propensity_clip=params.evaluate.propensity_clip)
    save_bundle(bundle, out)
    print(f"[bundle] trained {len(bundle.treatments)} treatments with default params on "
          f"{len(cohort):,} synthetic patients in {time.perf_counter() - start:.0f} s -> {out}")
    return out


def write_cohort(params, n: int, seed: int, path: Path, fmt: str) -> Path:
    """Simulate n patients in blocks (unique ids), drop outcomes, write CSV or Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from precision_pain.data.simulate import simulate_cohort

    block, writer, done = 100_000, None, 0
    with open(path, "w") if fmt == "csv" else _nullcontext() as handle:
        while done < n:
            size = min(block, n - done)
            frame = simulate_cohort(params.simulate, params.prepare.response_threshold,
                                    n_patients=size, seed=seed + done).cohort
            frame = frame.drop(columns=OUTCOMES).assign(
                patient_id=[f"B{done + i + 1:09d}" for i in range(size)])
            if fmt == "csv":
                frame.to_csv(handle, header=done == 0, index=False)
            else:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                writer = writer or pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
            done += size
    if writer is not None:
        writer.close()
    return path


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def child_env(work: Path) -> dict[str, str]:
    """Environment of the CLI runs: bytecode cached (in the work folder), as after an install."""
    env = {**os.environ, "PRECISION_PAIN_PROGRESS": "0",
           "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_up(work: Path) -> None:
    """Import the CLI's modules once so the timed runs load cached bytecode."""
    modules = ("precision_pain.cli, precision_pain.predict.recommend, "
               "precision_pain.predict.outputs, precision_pain.predict.report_html, xgboost, "
               "pyarrow.parquet, jinja2, skops.io, sklearn.isotonic")
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=child_env(work), check=True)


def run_cli(input_path: Path, out: Path, models: Path, params: Path, work: Path) -> Run:
    """Run `precision-pain predict` as a child process; its wall time, CPU time and peak RSS."""
    command = [sys.executable, "-m", "precision_pain.cli", "-q", "predict", "--params",
               str(params), str(input_path), "--out", str(out), "--models", str(models)]
    env = child_env(work)
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"predict failed:\n{process.stderr.read().decode()[-3000:]}")
    process.stderr.close()
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def chunks_of(path: Path, chunk_size: int):
    """Prepared chunks of the cohort (validated, PGx-annotated)."""
    from precision_pain.data.contract import iter_table
    from precision_pain.data.prepare import prepare_cohort

    for raw in iter_table(path, chunk_size):
        yield prepare_cohort(raw, str(path), None, require_outcomes=False)


def time_core(path: Path, bundle, options, chunk_size: int) -> tuple[float, float]:
    """Wall and CPU seconds in `recommend` over all chunks (no reading, no output)."""
    from precision_pain.predict.recommend import recommend

    wall = cpu = 0.0
    for prepared in chunks_of(path, chunk_size):
        t0, c0 = time.perf_counter(), time.process_time()
        recommend(prepared, bundle, options)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return wall, cpu


def bare_inputs(bundle, treatment: str, outcome: str, X):
    """(boosters, their input matrix for every patient under ``treatment``, column names),
    or None for a model without trees (constant rate). A pooled model stacked with a
    companion regressor (the pain-reduction companion) has two boosters, and predict's exact
    SHAP of it needs both (pooled.contributions_full), so the bare work counts both."""
    from precision_pain.models.pooled import design, design_names

    model = bundle.model(treatment, outcome)
    if model.kind == "xgboost":
        return [model.booster_], X.to_numpy(np.float32), list(X.columns)
    if model.kind == "pooled_xgboost":
        pooled = model.shared
        boosters = [pooled.booster_, *([pooled.companion_] if pooled.companion_ is not None
                                       else [])]
        return (boosters, design(X, treatment, pooled.treatments),
                design_names(pooled.treatments))
    return None


def time_bare(path: Path, bundle, options, chunk_size: int, every_row: bool,
              shap: str = "xgboost") -> tuple[float, float]:
    """Wall and CPU seconds of the model work alone: each outcome's booster scores every
    (patient, treatment) row (xgboost), plus exact SHAP of the rows predict explains (or of
    every row, with every_row) by xgboost's pred_contribs (``shap="xgboost"``) or by the
    tables predict uses (``shap="tables"``, models/treeshap.py; building them is timed).
    Inputs (feature matrix, pooled design) are built outside the timed part."""
    import xgboost as xgb

    from precision_pain.data.features import build_features
    from precision_pain.models.treeshap import Explainer
    from precision_pain.predict.recommend import score_patients

    wall = cpu = 0.0
    width = min(max(options.top_k, 2), len(bundle.treatments))
    explainers: dict[tuple[int, ...], Explainer] = {}
    for prepared in chunks_of(path, chunk_size):
        X = build_features(prepared)
        ranks = score_patients(prepared, X, bundle, options.harm_weight).rank
        for k, treatment in enumerate(bundle.treatments):
            rows = slice(None) if every_row else np.flatnonzero(ranks[:, k] <= width)
            for outcome in ("response", "adverse_event"):
                inputs = bare_inputs(bundle, treatment, outcome, X)
                if inputs is None:
                    continue
                boosters, values, names = inputs
                t0, c0 = time.perf_counter(), time.process_time()
                for booster in boosters:
                    booster.inplace_predict(values, validate_features=False)
                if shap == "tables":
                    key = tuple(id(b) for b in boosters)
                    explainer = explainers.setdefault(key, Explainer(boosters))
                    explainer(values[rows])
                else:
                    matrix = xgb.DMatrix(values[rows], feature_names=names)
                    for booster in boosters:
                        booster.predict(matrix, pred_contribs=True)
                wall += time.perf_counter() - t0
                cpu += time.process_time() - c0
    return wall, cpu


def time_tree_explainer(path: Path, bundle, sample: int) -> tuple[float, int]:
    """Seconds of shap.TreeExplainer on every model for `sample` patients, and the sample."""
    import shap

    from precision_pain.data.features import build_features

    prepared = next(chunks_of(path, sample))
    X = build_features(prepared)
    seconds = 0.0
    for treatment in bundle.treatments:
        for outcome in ("response", "adverse_event"):
            inputs = bare_inputs(bundle, treatment, outcome, X)
            if inputs is not None:
                start = time.perf_counter()
                for booster in inputs[0]:
                    shap.TreeExplainer(booster).shap_values(inputs[1].astype(np.float64),
                                                            check_additivity=False)
                seconds += time.perf_counter() - start
    return seconds, len(X)


def main() -> None:
    """Run the benchmark and print its figures."""
    from precision_pain.config import load_params

    args = parse_args()
    params = load_params(args.params)
    work = args.work or Path(tempfile.mkdtemp(prefix="pp-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    bundles = {kind: get_bundle(params, kind, args.models or ROOT / params.model.dir, work)
               for kind in args.model_types}
    print(f"machine: {os.cpu_count()} cores; chunk_size {params.predict.chunk_size:,}; "
          f"top_k_explained {params.predict.top_k_explained}; output {args.format}; "
          f"{args.repeat} timed runs each, medians")
    warm_up(work)
    src = write_cohort(params, args.n, args.seed, work / f"cohort_{args.n}.{args.format}",
                       args.format)
    for kind, models in bundles.items():
        bench_bundle(args, params, kind, models, src, work)
    print(f"[load] load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores (other work on the machine slows wall times)")


def describe_bundle(bundle) -> str:
    """'10 treatments; response: 1 booster, 1,000 trees, max depth 4; ...'."""
    parts = []
    for outcome in ("response", "adverse_event"):
        boosters = {id(b): b for t in bundle.treatments
                    if (b := _booster(bundle.model(t, outcome))) is not None}
        trees = [tree for b in boosters.values() for tree in b.get_dump()]
        depth = max((line.count("\t") for tree in trees for line in tree.splitlines()),
                    default=0)
        parts.append(f"{outcome}: {len(boosters)} boosters, {len(trees):,} trees, max depth "
                     f"{depth}")
    return f"{len(bundle.treatments)} treatments; " + "; ".join(parts)


def _booster(model):
    if model.kind == "xgboost":
        return model.booster_
    if model.kind == "pooled_xgboost":
        return model.shared.booster_
    return None


def bench_bundle(args, params, kind: str, models: Path, src: Path, work: Path) -> None:
    """Every figure for one bundle; CLI and bare runs alternate, medians printed."""
    from precision_pain.models.bundle import load_bundle
    from precision_pain.predict.recommend import options_from_params

    bundle = load_bundle(models)
    print(f"\n== {kind}: {models}: {describe_bundle(bundle)}")
    options = options_from_params(params)
    chunk = params.predict.chunk_size
    runs, bares, tables = [], [], []
    for i in range(args.repeat):
        runs.append(run_cli(src, work / f"out_{kind}" / f"pred.{args.format}", models,
                            args.params, work))
        print(f"[cli] run {i + 1}: {runs[-1].seconds:7.1f} s wall, {runs[-1].cpu:7.1f} CPU-s, "
              f"peak RSS {runs[-1].peak_mb:6,.0f} MB")
        if not args.no_bare:
            bares.append(time_bare(src, bundle, options, chunk, every_row=False))
            tables.append(time_bare(src, bundle, options, chunk, every_row=False,
                                    shap="tables"))
            print(f"[bare] run {i + 1}: {bares[-1][0]:7.1f} s wall, {bares[-1][1]:7.1f} CPU-s; "
                  f"with predict's SHAP tables {tables[-1][0]:7.1f} s wall, "
                  f"{tables[-1][1]:7.1f} CPU-s")
    wall = statistics.median(r.seconds for r in runs)
    cpu = statistics.median(r.cpu for r in runs)
    peak = statistics.median(r.peak_mb for r in runs)
    print(f"[cli] {args.n:,} patients, median: {wall:.1f} s wall ({args.n / wall:,.0f} "
          f"patients/s), {cpu:.1f} CPU-s; peak RSS {peak:,.0f} MB")
    baseline = args.baseline_n or 2 * params.predict.chunk_size
    if baseline < args.n:
        small = write_cohort(params, baseline, args.seed,
                             work / f"cohort_{baseline}.{args.format}", args.format)
        run = run_cli(small, work / f"out_{kind}_{baseline}" / f"pred.{args.format}", models,
                      args.params, work)
        print(f"[memory] peak RSS at {args.n:,} / at {baseline:,} patients: "
              f"{peak:,.0f} / {run.peak_mb:,.0f} MB = {peak / run.peak_mb:.2f}x")
    if args.no_bare:
        return
    bare_wall = statistics.median(b[0] for b in bares)
    bare_cpu = statistics.median(b[1] for b in bares)
    ratios = [(r.seconds / b[0], r.cpu / b[1]) for r, b in zip(runs, bares)]
    core_wall, core_cpu = time_core(src, bundle, options, chunk)
    print(f"[core] recommend() alone: {core_wall:.1f} s wall, {core_cpu:.1f} CPU-s "
          f"({args.n / core_wall:,.0f} patients/s without reading or writing files)")
    print(f"[bare] xgboost scoring (every model, every row) + pred_contribs (the explained "
          f"rows), median: {bare_wall:.1f} s wall, {bare_cpu:.1f} CPU-s")
    print(f"[ratio] {kind}: end-to-end / bare: {wall / bare_wall:.2f} wall, "
          f"{cpu / bare_cpu:.2f} CPU (medians; per run, CPU: "
          f"{', '.join(f'{c:.2f}' for _, c in ratios)}); recommend() / bare: "
          f"{core_wall / bare_wall:.2f} wall, {core_cpu / bare_cpu:.2f} CPU")
    table_wall = statistics.median(b[0] for b in tables)
    table_cpu = statistics.median(b[1] for b in tables)
    print(f"[bare-tables] the same model work with exact SHAP from predict's tables "
          f"(models/treeshap.py) instead of pred_contribs, median: {table_wall:.1f} s wall, "
          f"{table_cpu:.1f} CPU-s; pred_contribs / tables: {bare_cpu / table_cpu:.2f} CPU")
    print(f"[ratio] {kind}: end-to-end / bare-tables: {wall / table_wall:.2f} wall, "
          f"{cpu / table_cpu:.2f} CPU")
    if args.bare_all:
        all_wall, all_cpu = time_bare(src, bundle, options, chunk, every_row=True)
        print(f"[bare-all] the same with pred_contribs on every row (SHAP for all rows): "
              f"{all_wall:.1f} s wall, {all_cpu:.1f} CPU-s; end-to-end / it: "
              f"{wall / all_wall:.2f} wall, {cpu / all_cpu:.2f} CPU")
    te, sample = time_tree_explainer(src, bundle, args.explainer_sample)
    te_full = te * args.n / sample
    print(f"[shap] TreeExplainer, every model x every patient: {te:.1f} s for {sample:,} "
          f"patients -> {te_full:,.0f} s extrapolated to {args.n:,}; predict end to end is "
          f"{te_full / wall:.1f}x faster")


if __name__ == "__main__":
    main()
