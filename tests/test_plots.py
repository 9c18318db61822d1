"""Evaluation plots: every figure builds from an evaluation and saves as a PNG."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from precision_pain.evaluate.core import evaluate
from precision_pain.evaluate.plots import (evaluation_figures, regret_figure, reliability_figure,
                                  trials_figure)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluations(small_splits, small_bundle, small_synthetic, params):
    """The small bundle evaluated with and without the ground truth."""
    settings = params.evaluate.model_copy(update={"n_bootstrap": 20})
    test = small_splits["test"]
    return {"truth": evaluate(test, small_bundle, small_synthetic.truth, settings),
            "no_truth": evaluate(test, small_bundle, None, settings)}


def test_all_figures_with_truth_save_as_png(evaluations, tmp_path):
    figures = evaluation_figures(evaluations["truth"])
    assert set(figures) == {"reliability_response", "reliability_adverse_event",
                            "policy_value", "regret", "trials_to_response", "subgroups"}
    for name, figure in figures.items():
        assert isinstance(figure, Figure)
        path = tmp_path / f"{name}.png"
        figure.savefig(path)
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_without_truth_only_observed_data_figures(evaluations):
    figures = evaluation_figures(evaluations["no_truth"])
    assert set(figures) == {"reliability_response", "reliability_adverse_event", "subgroups"}


def test_reliability_has_one_panel_per_treatment(evaluations):
    figure = reliability_figure(evaluations["truth"].curves["reliability"], "response")
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert len(visible) == 3  # the small bundle models three treatments


def test_small_figures_from_hand_made_data():
    regret = pd.DataFrame({"model": [0.0, 0.1, 0.2], "random": [0.1, 0.2, 0.3]})
    assert len(regret_figure(regret).axes[0].get_lines()) == 2
    curve = pd.DataFrame({"order": ["model"] * 3 + ["oracle"] * 3, "trials": [0, 1, 2] * 2,
                          "p_response_within": [0, 0.4, 0.6, 0, 0.5, 0.7]})
    assert len(trials_figure(curve).axes[0].get_lines()) == 2
