"""Scale figures of the Dask engine (docs/scaling.md quotes them).

``scale``: simulate -> prepare -> predict for each cohort size on a LocalCluster of
``--workers`` worker processes (params engine.*, type dask). Each size runs in a fresh
process: simulate through the CLI; then prepare and predict through the same core calls the
CLI makes (``prepare_partitions``, ``predict_partitions``, the same writers), so that each
worker's peak resident memory (VmHWM, reset between stages) can be read from the workers.
The bundle is trained once on a 20,000-patient synthetic cohort with ``--model-type``.

``pipeline``: the whole `dvc repro` chain (simulate, prepare, split, train, evaluate;
MLflow off, since tracking is not engine work) through the CLI, once per engine and size,
wall time per stage.

    uv run --frozen python benchmarks/dask_scale.py scale --sizes 200000 1000000
    uv run --frozen python benchmarks/dask_scale.py pipeline --sizes 20000 200000

Results print as Markdown tables and JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

_CHILD = r"""
import json, sys, time
from pathlib import Path

def peak_mb():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")

if __name__ == "__main__":
    from precision_pain.config import load_params
    from precision_pain.data.contract import iter_table
    from precision_pain.data.prepare import prepare_partitions
    from precision_pain.engine import BundleFiles, open_engine
    from precision_pain.io import write_table
    from precision_pain.models.bundle import load_bundle, manifest_sha256
    from precision_pain.predict.outputs import write_predictions
    from precision_pain.predict.partitioned import predict_partitions
    from precision_pain.predict.recommend import options_from_params

    params_path, cohort, bundle_dir, work = map(Path, sys.argv[1:5])
    stages = sys.argv[5].split(",")
    params = load_params(params_path)
    out = {}
    with open_engine(params.engine) as engine:
        client = engine.client
        client.run(reset_peak)
        reset_peak()
        start = time.perf_counter()
        prepared = prepare_partitions(iter_table(cohort, params.engine.partition_rows),
                                      str(cohort), params.prepare.response_threshold, engine)
        write_table(prepared, work / "prepared.parquet")
        out["prepare_s"] = time.perf_counter() - start
        out["prepare_worker_peak_mb"] = sorted(client.run(peak_mb).values())
        out["prepare_client_peak_mb"] = peak_mb()
        del prepared
        if "predict" not in stages:
            print("RESULT " + json.dumps(out | {"workers": len(client.nthreads())}))
            sys.exit(0)
        client.run(reset_peak)
        reset_peak()
        bundle = load_bundle(bundle_dir)
        source = BundleFiles.read(bundle_dir, manifest_sha256(bundle_dir))
        options = options_from_params(params)
        meta = {"source": str(cohort), "models": str(bundle_dir),
                "model_type": bundle.model_type, "harm_weight": options.harm_weight,
                "top_k_explained": options.top_k, "version": "benchmark",
                "treatments_not_modeled": []}
        start = time.perf_counter()
        written = write_predictions(
            predict_partitions(iter_table(cohort, params.predict.chunk_size), source,
                               str(cohort), options, engine),
            work / "predictions.parquet", meta, 200)
        out["predict_s"] = time.perf_counter() - start
        out["predict_patients"] = written.n_patients
        out["predict_worker_peak_mb"] = sorted(client.run(peak_mb).values())
        out["predict_client_peak_mb"] = peak_mb()
        out["workers"] = len(client.nthreads())
    print("RESULT " + json.dumps(out))
"""


def _env() -> dict[str, str]:
    """The commands' environment: bytecode cached (as predict_benchmark.py does), so that no
    run pays for compiling what an earlier one compiled; telemetry off."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "CI": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "pp-pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _params(engine: dict, **simulate: object) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["engine"] |= engine
    params["simulate"] |= simulate
    return params


def _timed(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def _train_bundle(work: Path, model_type: str) -> Path:
    """A bundle of ``model_type`` trained on the default 20,000-patient synthetic cohort."""
    folder = work / f"train-{model_type}"
    if (folder / "models/bundle/manifest.json").exists():  # trained by an earlier run
        return folder / "models" / "bundle"
    folder.mkdir(parents=True, exist_ok=True)
    params = _params({"type": "local"})
    params["model"]["type"] = model_type
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stage in (["simulate", "--out", "data/synthetic/cohort.parquet", "--truth-out",
                   "data/synthetic/ground_truth.parquet"], ["prepare"], ["split"],
                  ["train", "--no-tracking"]):
        _timed([str(BIN / "precision-pain"), "-q", *stage], folder)
    return folder / "models" / "bundle"


def scale(sizes: list[int], workers: int, model_type: str, work: Path,
          stages: list[str]) -> None:
    """simulate -> prepare (-> predict) per size on a LocalCluster; one JSON line per size."""
    bundle = _train_bundle(work, model_type)
    rows = []
    for n in sizes:
        folder = work / f"scale-{n}"
        folder.mkdir(parents=True, exist_ok=True)
        params = _params({"type": "dask", "n_workers": workers, "threads_per_worker": 1})
        (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        simulate_s = _timed([str(BIN / "precision-pain"), "-q", "simulate", "--n", str(n),
                             "--out", "cohort.parquet"], folder)
        (folder / "child.py").write_text(_CHILD)
        result = subprocess.run([sys.executable, "child.py", "params.yaml", "cohort.parquet",
                                 str(bundle), ".", ",".join(stages)], cwd=folder, env=_env(),
                                capture_output=True, text=True)
        line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"size {n} failed:\n{result.stderr[-3000:]}")
        row = {"patients": n, "model_type": model_type, "simulate_s": simulate_s,
               **json.loads(line[7:])}
        print(json.dumps(row), flush=True)
        rows.append(row)
        for big in ("cohort.parquet", "cohort_ground_truth.parquet", "prepared.parquet",
                    "predictions.parquet",
                    "predictions.shap.parquet", "predictions.json", "predictions.html"):
            (folder / big).unlink(missing_ok=True)
    print("\n| patients | simulate | prepare (patients/s) | predict (patients/s; per worker) "
          "| peak RSS per worker: prepare / predict | client peak: prepare / predict |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        predict = (f"{r['predict_s']:.0f} s ({r['patients'] / r['predict_s']:,.0f}; "
                   f"{r['patients'] / r['predict_s'] / r['workers']:,.0f})"
                   if "predict_s" in r else "not run")
        print(f"| {r['patients']:,} | {r['simulate_s']:.0f} s | {r['prepare_s']:.0f} s "
              f"({r['patients'] / r['prepare_s']:,.0f}) | {predict} | "
              f"{max(r['prepare_worker_peak_mb']):,.0f} / "
              f"{max(r.get('predict_worker_peak_mb', [0])):,.0f} MB | "
              f"{r['prepare_client_peak_mb']:,.0f} / "
              f"{r.get('predict_client_peak_mb', 0):,.0f} MB |")


def pipeline(sizes: list[int], engines: list[str], workers: int, work: Path) -> None:
    """The whole chain through the CLI per engine and size; one JSON line per run."""
    stages = [["simulate", "--out", "data/synthetic/cohort.parquet", "--truth-out",
               "data/synthetic/ground_truth.parquet"], ["prepare"], ["split"],
              ["train", "--no-tracking"], ["evaluate", "--no-tracking"]]
    rows = []
    for n in sizes:
        for engine in engines:
            folder = work / f"pipeline-{n}-{engine}"
            folder.mkdir(parents=True, exist_ok=True)
            params = _params({"type": engine, "n_workers": workers}, n_patients=n)
            (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            times = {stage[0]: _timed([str(BIN / "precision-pain"), "-q", *stage], folder)
                     for stage in stages}
            row = {"patients": n, "engine": engine, **times, "total": sum(times.values())}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\n| patients | engine | " + " | ".join(s[0] for s in stages) + " | total |")
    print("|---|---|" + "---|" * (len(stages) + 1))
    for r in rows:
        print(f"| {r['patients']:,} | {r['engine']} | "
              + " | ".join(f"{r[s[0]]:.0f} s" for s in stages) + f" | {r['total']:.0f} s |")


def main() -> None:
    """Run the chosen benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["scale", "pipeline"])
    parser.add_argument("--sizes", type=int, nargs="+", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engines", nargs="+", default=["local", "dask"])
    parser.add_argument("--model-type", default="pooled_xgboost",
                        help="scale: the bundle's model type (pooled_xgboost: the default)")
    parser.add_argument("--stages", nargs="+", choices=["prepare", "predict"],
                        default=["prepare", "predict"], help="scale: what runs after simulate")
    parser.add_argument("--work", type=Path, help="Working folder [a temporary one].")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dask-scale-") as tmp:
        work = args.work or Path(tmp)
        if args.mode == "scale":
            scale(args.sizes, args.workers, args.model_type, work, args.stages)
        else:
            pipeline(args.sizes, args.engines, args.workers, work)


if __name__ == "__main__":
    main()
