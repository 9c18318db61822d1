"""Sets of output files are published all at once or not at all, whatever kills the writer.

Fault injection: a writer process is killed (SIGKILL, or SIGTERM) at every step of the
publication, including between the renames, through ``PRECISION_PAIN_FAILPOINT``. After
each kill no reader sees files of two runs side by side; the next run finishes or discards
what was left, and no temporary file outlives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from precision_pain.io import OutputError, check_writable, file_set

NAMES = ("pred.csv", "pred.shap.csv", "pred.json", "pred.html")

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from precision_pain.io import file_set
    folder, tag = Path(sys.argv[1]), sys.argv[2]
    with file_set([folder / n for n in {names!r}]) as tmps:
        for tmp in tmps:
            tmp.write_text(tag)
""").format(names=NAMES)


def _write(folder: Path, tag: str, failpoint: str | None = None) -> int:
    env = {**os.environ, "PRECISION_PAIN_FAILPOINT": failpoint or ""}
    return subprocess.run([sys.executable, "-c", WRITER, str(folder), tag], env=env,
                          timeout=60).returncode


def _visible(folder: Path) -> dict[str, str]:
    return {n: (folder / n).read_text() for n in NAMES if (folder / n).exists()}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


POINTS = (["publish.journal:1"] + [f"publish.unlink:{k}" for k in range(1, 5)]
          + [f"publish.rename:{k}" for k in range(1, 5)])


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_every_step_never_shows_a_mix(tmp_path, point):
    assert _write(tmp_path, "run-A") == 0
    assert _write(tmp_path, "run-B", point) == -signal.SIGKILL
    assert len(set(_visible(tmp_path).values())) <= 1, _visible(tmp_path)
    assert _write(tmp_path, "run-C") == 0
    assert _visible(tmp_path) == dict.fromkeys(NAMES, "run-C")
    assert _leftovers(tmp_path) == []


def test_a_killed_publication_is_finished_by_the_next_writer(tmp_path):
    """Killed between two renames: the journal lets the next writer complete run B first."""
    assert _write(tmp_path, "run-A") == 0
    assert _write(tmp_path, "run-B", "publish.rename:2") == -signal.SIGKILL
    from precision_pain.io import recover

    recover(tmp_path / NAMES[0])
    assert _visible(tmp_path) == dict.fromkeys(NAMES, "run-B")
    assert _leftovers(tmp_path) == []


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_run(tmp_path):
    slow = WRITER.replace("tmp.write_text(tag)", "tmp.write_text(tag); time.sleep(30)")
    process = subprocess.Popen([sys.executable, "-c", slow, str(tmp_path), "run-B"])
    deadline = time.monotonic() + 120  # the child imports pandas: slow on a loaded machine
    while time.monotonic() < deadline and process.poll() is None:
        if any(p.suffix == ".tmp" for p in tmp_path.iterdir()):
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert any(p.suffix == ".tmp" for p in tmp_path.iterdir())
    assert _write(tmp_path, "run-C") == 0
    assert _visible(tmp_path) == dict.fromkeys(NAMES, "run-C")
    assert _leftovers(tmp_path) == []


def test_an_exception_inside_leaves_the_old_set_and_no_temporaries(tmp_path):
    paths = [tmp_path / n for n in NAMES]
    for p in paths:
        p.write_text("old")
    with pytest.raises(RuntimeError):
        with file_set(paths) as tmps:
            tmps[0].write_text("new")
            raise RuntimeError("chunk 3 failed")
    assert _visible(tmp_path) == dict.fromkeys(NAMES, "old")
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["/proc/x.csv", "/dev/null/x.csv"])
def test_unwritable_outputs_are_refused_before_any_work(target):
    with pytest.raises(OutputError, match=f"{target}: cannot write here"):
        check_writable([Path(target)])


def test_checking_an_output_leaves_no_folder_behind(tmp_path):
    check_writable([tmp_path / "a" / "b" / "out.csv"])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- through the CLI

OUTCOME_COLUMNS = ["treatment", "pain_followup", "adverse_event"]


@pytest.fixture(scope="module")
def cli_inputs(small_bundle, small_synthetic, tmp_path_factory):
    from precision_pain.models.bundle import save_bundle

    folder = tmp_path_factory.mktemp("cli")
    models = save_bundle(small_bundle, folder / "bundle")
    cohort = folder / "new.csv"
    small_synthetic.cohort.head(120).drop(columns=OUTCOME_COLUMNS).to_csv(cohort, index=False)
    return models, cohort


def _cli(args: list[str], failpoint: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PRECISION_PAIN_FAILPOINT": failpoint}
    return subprocess.run([sys.executable, "-m", "precision_pain.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def _predict_args(cli_inputs, out: Path) -> list[str]:
    models, cohort = cli_inputs
    return ["predict", str(cohort), "--out", str(out), "--models", str(models)]


def _outputs(out: Path) -> list[Path]:
    return [out, out.with_name("pred.shap.csv"), out.with_name("pred.json"),
            out.with_name("pred.html")]


@pytest.fixture(scope="module")
def first_run(cli_inputs, tmp_path_factory) -> dict[str, bytes]:
    """The files of a finished predict run (top 1 explained: unlike a default run's), which
    every kill test starts from."""
    out = tmp_path_factory.mktemp("first") / "pred.csv"
    first = _cli(_predict_args(cli_inputs, out) + ["--top-k", "1"])
    assert first.returncode == 0, first.stderr
    return {p.name: p.read_bytes() for p in _outputs(out)}


@pytest.mark.slow
@pytest.mark.parametrize("failpoint, code", [
    ("write.chunk:1:TERM", 128 + signal.SIGTERM),
    ("write.chunk:1", -signal.SIGKILL),
    ("publish.rename:2", -signal.SIGKILL),
])
def test_predict_killed_leaves_no_mix_and_the_next_run_cleans_up(cli_inputs, first_run,
                                                                  tmp_path, failpoint, code):
    out = tmp_path / "pred.csv"
    before = first_run
    for name, content in before.items():
        (tmp_path / name).write_bytes(content)
    killed = _cli(_predict_args(cli_inputs, out), failpoint)
    assert killed.returncode == code, killed.stderr
    now = {p.name: p.read_bytes() for p in _outputs(out) if p.exists()}
    runs = {"old" if now[name] == before[name] else "new" for name in now}
    assert runs != {"old", "new"}, failpoint  # never files of two runs side by side
    if failpoint.endswith("TERM"):
        assert now == before and _leftovers(tmp_path) == []  # SIGTERM cleans up at once
    again = _cli(_predict_args(cli_inputs, out))
    assert again.returncode == 0, again.stderr
    assert all(p.exists() for p in _outputs(out)) and _leftovers(tmp_path) == []


@pytest.mark.slow
def test_simulate_publishes_cohort_and_truth_together(tmp_path):
    out, truth = tmp_path / "cohort.csv", tmp_path / "truth.csv"
    args = ["simulate", "--n", "200", "--seed", "1", "--out", str(out), "--truth-out", str(truth)]
    assert _cli(args).returncode == 0
    args[4] = "2"  # another seed: another cohort
    assert _cli(args, "publish.rename:1").returncode == -signal.SIGKILL
    present = {p: p.read_bytes() for p in (out, truth) if p.exists()}
    assert present == {out: present[out]} or present == {}  # the new cohort alone, at most
    assert _cli(args).returncode == 0
    second = pd.read_csv(out)
    assert set(pd.read_csv(truth)["patient_id"]) == set(second["patient_id"])
    assert _leftovers(tmp_path) == []
