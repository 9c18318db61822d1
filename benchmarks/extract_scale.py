"""Time and peak memory of the OMOP extract at 100,000 and 1,000,000 persons.

For each size: simulate the cohort, write it as a synthetic OMOP CDM (DuckDB file, with
``--history`` older pain scores per person so the event tables hold tens of millions of
rows), then run the extract in a fresh process and record its wall time and peak resident
memory (VmHWM; the DuckDB engine runs inside that process, so its memory is counted). PharmCAT
files are not part of the timing (one small file per sample; read time grows linearly).

    uv run --frozen python benchmarks/extract_scale.py --sizes 100000 1000000 --history 10

Results print as a Markdown table (docs/real-data.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys, time
from precision_pain.extract.omop.database import open_database
from precision_pain.extract.omop.extract import extract_cohort
from precision_pain.extract.omop.study import load_study
study = load_study(sys.argv[2])
start = time.perf_counter()
db = open_database("duckdb", sys.argv[1], None, None, None)
result = extract_cohort(db, study)
db.close()
# VmHWM: this process's own peak (ru_maxrss would carry the parent's peak across exec)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(result.cohort),
                  "peak_mb": int(hwm.split()[1]) / 1024}))
"""


def build(n: int, history: int, folder: Path) -> dict[str, int]:
    """Write an n-patient synthetic CDM to folder/cdm.duckdb; event-table row counts."""
    from precision_pain.config import load_params
    from precision_pain.extract.omop.study import load_study
    from precision_pain.extract.omop.synthetic import omop_tables, save_duckdb
    from precision_pain.data.simulate import simulate_cohort

    params = load_params(ROOT / "params.yaml")
    sim = simulate_cohort(params.simulate, params.prepare.response_threshold, n, seed=1)
    tables = omop_tables(sim.cohort, load_study(ROOT / "studies/chronic_pain.yaml"), 1,
                         history=history)
    save_duckdb(tables, str(folder / "cdm.duckdb"))
    return {k: len(v) for k, v in tables.items()}


def measure(folder: Path) -> dict[str, float]:
    """Run the extract in a fresh process; its time and peak memory."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(folder / "cdm.duckdb"),
                          str(ROOT / "studies/chronic_pain.yaml")],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Benchmark each size and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--history", type=int, default=10)
    args = parser.parse_args()
    print("| persons | event rows | build s | extract s | extract peak MB | cohort rows |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            counts = build(n, args.history, Path(tmp))
            built = time.perf_counter() - start
            events = sum(v for k, v in counts.items()
                         if k not in ("concept", "concept_ancestor", "drug_strength"))
            r = measure(Path(tmp))
            print(f"| {n:,} | {events:,} | {built:.0f} | {r['seconds']:.1f} | "
                  f"{r['peak_mb']:.0f} | {r['rows']:,} |", flush=True)
    print(f"\nbuild peak MB (this process): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
