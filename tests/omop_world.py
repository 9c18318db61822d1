"""A small synthetic OMOP world on disk, shared by the extract tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "chronic_pain.yaml"


@dataclass
class WorldOnDisk:
    folder: Path
    cohort: pd.DataFrame  # what the simulator wrote directly
    truth: pd.DataFrame  # the simulator's ground truth (patient_id = simulator ids)
    tables: dict[str, pd.DataFrame]


def make_world(folder: Path, n: int = 600, seed: int = 11) -> WorldOnDisk:
    """Simulate n patients and write them as cdm.duckdb + pharmcat/ under folder."""
    from precision_pain.config import load_params
    from precision_pain.extract.omop.study import load_study
    from precision_pain.extract.omop.synthetic import save_world, synthetic_world
    from precision_pain.data.simulate import simulate_cohort

    params = load_params(ROOT / "params.yaml")
    sim = simulate_cohort(params.simulate, 0.3, n_patients=n, seed=seed)
    world = synthetic_world(sim.cohort, sim.truth, load_study(STUDY), seed)
    save_world(world, sim.cohort, folder)
    return WorldOnDisk(folder, sim.cohort, sim.truth, world.tables)
