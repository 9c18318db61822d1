"""The default install is CPU-only, and served models ask for the xgboost build installed
(and numba, which explains their answers)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.markers import Marker

from precision_pain.models.estimators import pinned_requirement
from precision_pain.predict.serve import pip_requirements

ROOT = Path(__file__).resolve().parents[1]


def _locked_closure(groups: tuple[str, ...]) -> set[str]:
    """Every package uv.lock installs here for the project with ``groups`` (extras followed,
    environment markers evaluated for this machine)."""
    packages = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))["package"]
    by_name = {package["name"]: package for package in packages}
    root = by_name["precision-pain"]
    todo = list(root["dependencies"]) + [dep for group in groups
                                         for dep in root["dev-dependencies"][group]]
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    while todo:
        dep = todo.pop()
        if "marker" in dep and not Marker(dep["marker"]).evaluate():
            continue  # another platform's dependency (e.g. macOS's plain xgboost wheel)
        for extra in ["", *dep.get("extra", [])]:
            if (dep["name"], extra) in seen:
                continue
            seen.add((dep["name"], extra))
            names.add(dep["name"])
            package = by_name[dep["name"]]
            todo += (package.get("dependencies", []) if not extra
                     else package.get("optional-dependencies", {}).get(extra, []))
    return names


def test_default_and_test_installs_hold_no_cuda_package():
    # README's two commands: `uv sync --frozen` and `uv sync --frozen --group test`. The
    # benchmarks group (CausalML pulls the full xgboost wheel, with NCCL) is separate.
    for groups in ((), ("test",)):
        names = _locked_closure(groups)
        assert "xgboost-cpu" in names
        assert not [name for name in names if name.startswith(("nvidia-", "cuda-"))], groups
    assert "econml" not in _locked_closure(("test",))


def test_served_model_pins_the_installed_xgboost_build():
    pin = pinned_requirement("xgboost")
    distribution, pinned_version = pin.split("==")
    assert distribution in {"xgboost-cpu", "xgboost"}
    assert version(distribution) == pinned_version
    assert pin in pip_requirements()
    # the served model explains with models/treeshap.py's compiled kernels
    assert pinned_requirement("numba") in pip_requirements()
