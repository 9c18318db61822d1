"""Speed and memory of `precision-pain predict` (a script, not a test).

    python benchmarks/predict_benchmark.py                 # 100,000 patients
    python benchmarks/predict_benchmark.py --n 1000000     # memory check at 1M patients

Prints, for a synthetic cohort of --n patients (outcome columns dropped):

- end-to-end throughput of the CLI (`precision-pain predict`, a subprocess: reading,
  validation, scoring, guideline checks, SHAP, sentences, and writing table, SHAP,
  JSON and HTML), and its peak resident memory (from wait4's rusage), also for a
  cohort 10x smaller, to show memory does not grow with the cohort;
- the same work in-process without file I/O (the `recommend` core, chunk by chunk);
- the bare model work on the same rows: xgboost scoring of every model on every
  patient plus `pred_contribs` on the rows predict explains, and the ratio of
  end-to-end time to it;
- `shap.TreeExplainer` on every treatment model for every patient (timed on a
  sample, extrapolated), and predict's speed-up over it.

The bundle is --models (default: params' model.dir) when it loads and carries the
training profile; otherwise one is trained with the project's default params on a
synthetic cohort of simulate.n_patients and kept in the work folder.
"""

from __future__ import annotations

import argparse
import os
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
    return parser.parse_args()


def get_bundle(params, models: Path, work: Path) -> Path:
    """A bundle folder with a training profile: --models if usable, else trained now."""
    from precision_pain.models.bundle import load_bundle
    from precision_pain.predict.confidence import has_profile

    for candidate in (models, work / "bundle"):
        try:
            if has_profile(load_bundle(candidate).metadata):
                return candidate
            print(f"[bundle] {candidate} lacks the training profile (retrain); not used")
        except (FileNotFoundError, KeyError, ValueError) as exc:
            print(f"[bundle] {candidate} not usable ({type(exc).__name__}: {exc})")
    return train_bundle(params, work / "bundle")


def train_bundle(params, out: Path) -> Path:
    """Train every treatment with the project's default params on a synthetic cohort."""
    from precision_pain.models.bundle import bundle_from_training, save_bundle
    from precision_pain.predict.confidence import training_profile
    from precision_pain.data.prepare import prepare_cohort
    from precision_pain.registry import select_treatments
    from precision_pain.data.simulate import simulate_cohort
    from precision_pain.data.split import split_cohort
    from precision_pain.models.train import train_all

    start = time.perf_counter()
    cohort = simulate_cohort(params.simulate, params.prepare.response_threshold).cohort
    prepared = prepare_cohort(cohort, "synthetic", params.prepare.response_threshold)
    parts = split_cohort(prepared, params.split.valid_fraction, params.split.test_fraction,
                         params.split.seed)
    hyper = params.model.hyperparameters[params.model.type]
    fitted = train_all(select_treatments(params.model.treatments), parts["train"],
                       parts["valid"], params.model.type, hyper, params.model.seed)
    profile = training_profile(parts["train"], parts["valid"],
                               {name: r.models for name, r in fitted.items()})
    save_bundle(bundle_from_training(fitted, params.model.type, profile), out)
    print(f"[bundle] trained {len(fitted)} treatments with default params on "
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
    subprocess.run([sys.executable, "-c", "import precision_pain.cli, precision_pain.predict.recommend, "
                    "precision_pain.predict.outputs, precision_pain.predict.report_html, xgboost, pyarrow.parquet, "
                    "jinja2, skops.io, sklearn.isotonic"], env=child_env(work), check=True)


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
        recommend(prepared, bundle, options.harm_weight, options.n_features, options)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return wall, cpu


def time_bare(path: Path, bundle, options, chunk_size: int, every_row: bool
              ) -> tuple[float, float]:
    """Wall and CPU seconds of xgboost alone: every model scores every row, plus
    pred_contribs on the rows predict explains (or on every row, with every_row)."""
    import xgboost as xgb

    from precision_pain.data.features import build_features
    from precision_pain.predict.recommend import score_patients

    wall = cpu = 0.0
    width = min(max(options.top_k, 2), len(bundle.treatments))
    for prepared in chunks_of(path, chunk_size):
        X = build_features(prepared)
        ranks = score_patients(prepared, X, bundle, options.harm_weight).rank
        values = X.to_numpy(np.float32)
        t0, c0 = time.perf_counter(), time.process_time()
        for k, treatment in enumerate(bundle.treatments):
            rows = slice(None) if every_row else np.flatnonzero(ranks[:, k] <= width)
            for outcome in ("response", "adverse_event"):
                model = bundle.model(treatment, outcome)
                if model.kind != "xgboost":
                    continue
                model.booster_.inplace_predict(values, validate_features=False)
                matrix = xgb.DMatrix(values[rows], feature_names=list(X.columns))
                model.booster_.predict(matrix, pred_contribs=True)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return wall, cpu


def time_tree_explainer(path: Path, bundle, sample: int) -> tuple[float, int]:
    """Seconds of shap.TreeExplainer on every model for `sample` patients, and the sample."""
    import shap

    from precision_pain.data.features import build_features

    prepared = next(chunks_of(path, sample))
    values = build_features(prepared).to_numpy(np.float64)
    start = time.perf_counter()
    for treatment in bundle.treatments:
        for outcome in ("response", "adverse_event"):
            model = bundle.model(treatment, outcome)
            if model.kind == "xgboost":
                shap.TreeExplainer(model.booster_).shap_values(values, check_additivity=False)
    return time.perf_counter() - start, len(values)


def main() -> None:
    """Run the benchmark and print its figures."""
    from precision_pain.models.bundle import load_bundle
    from precision_pain.config import load_params

    args = parse_args()
    params = load_params(args.params)
    work = args.work or Path(tempfile.mkdtemp(prefix="pp-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    models = get_bundle(params, args.models or ROOT / params.model.dir, work)
    bundle = load_bundle(models)
    trees = sum(m.booster_.num_boosted_rounds() for t in bundle.treatments
                for m in bundle.models[t].values() if m.kind == "xgboost")
    chunk = params.predict.chunk_size
    print(f"machine: {os.cpu_count()} cores; bundle {models}: {len(bundle.treatments)} "
          f"treatments, {trees} xgboost trees in all; chunk_size {chunk:,}; "
          f"top_k_explained {params.predict.top_k_explained}; output {args.format}")

    warm_up(work)
    runs = {}
    baseline = args.baseline_n or 2 * chunk
    sizes = [baseline, args.n] if baseline < args.n else [args.n]
    for n in sizes:
        src = write_cohort(params, n, args.seed, work / f"cohort_{n}.{args.format}",
                           args.format)
        runs[n] = run_cli(src, work / f"out_{n}" / f"pred.{args.format}", models, args.params,
                          work)
        print(f"[cli] {n:>9,} patients: {runs[n].seconds:7.1f} s wall "
              f"({n / runs[n].seconds:7,.0f} patients/s), {runs[n].cpu:7.1f} CPU-s; "
              f"peak RSS {runs[n].peak_mb:6,.0f} MB")
    if len(sizes) == 2:
        print(f"[memory] peak RSS at {sizes[1]:,} / at {sizes[0]:,} patients: "
              f"{runs[sizes[1]].peak_mb / runs[sizes[0]].peak_mb:.2f}x")
    if args.no_bare:
        return
    from precision_pain.predict.recommend import options_from_params

    options = options_from_params(params)
    src = work / f"cohort_{args.n}.{args.format}"
    run = runs[args.n]
    core_wall, core_cpu = time_core(src, bundle, options, chunk)
    bare_wall, bare_cpu = time_bare(src, bundle, options, chunk, every_row=False)
    print(f"[core] recommend() alone: {core_wall:.1f} s wall, {core_cpu:.1f} CPU-s "
          f"({args.n / core_wall:,.0f} patients/s without reading or writing files)")
    print(f"[bare] xgboost scoring (every model, every row) + pred_contribs (the explained "
          f"rows): {bare_wall:.1f} s wall, {bare_cpu:.1f} CPU-s")
    print(f"[ratio] end-to-end / bare: {run.seconds / bare_wall:.2f} wall, "
          f"{run.cpu / bare_cpu:.2f} CPU; recommend() / bare: {core_wall / bare_wall:.2f} wall, "
          f"{core_cpu / bare_cpu:.2f} CPU")
    all_wall, all_cpu = time_bare(src, bundle, options, chunk, every_row=True)
    print(f"[bare-all] the same with pred_contribs on every row (SHAP for all rows): "
          f"{all_wall:.1f} s wall, {all_cpu:.1f} CPU-s; end-to-end / it: "
          f"{run.seconds / all_wall:.2f} wall, {run.cpu / all_cpu:.2f} CPU")
    te, sample = time_tree_explainer(src, bundle, args.explainer_sample)
    te_full = te * args.n / sample
    print(f"[shap] TreeExplainer, every model x every patient: {te:.1f} s for {sample:,} "
          f"patients -> {te_full:,.0f} s extrapolated to {args.n:,}; predict end to end is "
          f"{te_full / run.seconds:.1f}x faster")
    print(f"[load] load average now: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores (other work on the machine slows wall times)")


if __name__ == "__main__":
    main()
