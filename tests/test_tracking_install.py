"""The default install is CPU-only, and served models ask for the xgboost build installed."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from precision_pain.predict.serve import pinned_requirement, pip_requirements

ROOT = Path(__file__).resolve().parents[1]


def test_lock_file_holds_no_cuda_package():
    packages = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))["package"]
    names = {package["name"] for package in packages}
    assert "xgboost-cpu" in names
    assert not [name for name in names if name.startswith(("nvidia-", "cuda-"))]


def test_served_model_pins_the_installed_xgboost_build():
    pin = pinned_requirement("xgboost")
    distribution, pinned_version = pin.split("==")
    assert distribution in {"xgboost-cpu", "xgboost"}
    assert version(distribution) == pinned_version
    assert pin in pip_requirements()
