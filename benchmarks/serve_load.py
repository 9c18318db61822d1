"""Load on the served recommender: requests per second and latency, 1 and N clients.

Starts ``mlflow models serve`` on 127.0.0.1 for the registered recommender (by default the
project's own, ``models:/precision-pain-recommender@newest`` in ``mlflow.db``: run
``dvc repro`` first), then sends bounded loops of requests from 1 client and from
``--clients`` clients side by side, each for ``--seconds``, and prints requests/s with
p50 / p99 latency, plus the answer to one refused request. Every request goes to loopback
only, and the server is stopped at the end.

    uv run python benchmarks/serve_load.py --clients 4 --seconds 30 --patients 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


def _client(url: str, body: bytes, until: float, max_requests: int, out: list[float],
            errors: list[int]) -> None:
    for _ in range(max_requests):
        if time.monotonic() >= until:
            return
        start = time.perf_counter()
        status = _post(url, body)
        out.append(time.perf_counter() - start)
        if status != 200:
            errors.append(status)


def run_load(url: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    """Requests/s, p50 and p99 latency (ms) and errors for ``clients`` concurrent loops."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[int] = []
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=_client, args=(url, body, until, 100_000, lat, errors))
               for lat in latencies]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    flat = np.array([x for lat in latencies for x in lat]) * 1000
    return {"clients": clients, "requests": len(flat), "requests_per_s": len(flat) / wall,
            "p50_ms": float(np.percentile(flat, 50)), "p99_ms": float(np.percentile(flat, 99)),
            "errors": len(errors)}


def _records(n: int) -> list[dict]:
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.csv"
        subprocess.run([sys.executable, "-m", "precision_pain.cli", "-q", "simulate", "--n",
                        str(n), "--seed", "5", "--out", str(path)], check=True, cwd=ROOT)
        frame = pd.read_csv(path).drop(columns=["treatment", "pain_followup", "adverse_event"])
    return json.loads(frame.to_json(orient="records"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", default="models:/precision-pain-recommender@newest")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'mlflow.db'}")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--patients", type=int, default=5, help="patients per request")
    args = parser.parse_args()

    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": args.tracking_uri,
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                               args.model_uri, "--env-manager", "local", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {log.name}")
            try:
                urllib.request.urlopen(f"{base}/ping", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        records = _records(args.patients)
        body = json.dumps({"dataframe_records": records}).encode()
        _post(f"{base}/invocations", body)  # warm-up
        print(f"{args.patients} patients per request, {args.seconds:g} s per run, loopback")
        print("clients  requests  requests/s  p50 ms  p99 ms  errors")
        for clients in sorted({1, args.clients}):
            r = run_load(f"{base}/invocations", body, clients, args.seconds)
            print(f"{r['clients']:>7}  {r['requests']:>8}  {r['requests_per_s']:>10.1f}  "
                  f"{r['p50_ms']:>6.0f}  {r['p99_ms']:>6.0f}  {r['errors']:>6}")
        bad = json.dumps({"dataframe_records": [{**records[0], "age": 12}]}).encode()
        request = urllib.request.Request(f"{base}/invocations", data=bad,
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as error:
            print(f"refused request: HTTP {error.code}, {error.read()[:160]!r}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
