"""Start and stop local servers in tests: a free port, a health poll, a whole-group stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


# Ports handed out below the kernel's ephemeral range (where bind(("", 0)) and outgoing
# connections take theirs), in a block of their own per pytest-xdist worker, never twice per
# process: a port probed free cannot be taken by another test worker, by the kernel for
# someone's outgoing connection, or by this process's next server before its server binds.
_BLOCK, _FIRST = 1000, 20000
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 right now, reserved for this test worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    slots = max(1, (_ephemeral_low() - _FIRST) // _BLOCK)
    start = _FIRST + (int(worker) if worker.isdigit() else 0) % slots * _BLOCK
    for port in range(start, start + _BLOCK):
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port in {start}-{start + _BLOCK - 1} on 127.0.0.1")


def wait_for(url: str, process: subprocess.Popen, seconds: float = 240,
             log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if the server process died (with the
    end of its ``log``, if it writes one)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
            pytest.fail(f"server exited with {process.returncode} before {url} answered"
                        + (f":\n{tail}" if tail else ""))
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"{url} did not answer within {seconds} s")


def stop(process: subprocess.Popen) -> None:
    """Stop a server started in its own session, with every process it spawned."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
