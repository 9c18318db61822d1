"""HTML report: self-contained markup, patient sections, the notice; rendered in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from precision_pain import RESEARCH_NOTICE
from precision_pain.data.features import FEATURE_NAMES
from precision_pain.predict.recommend import recommend
from precision_pain.predict.report_html import (add_summaries, patient_sections, render_report,
                                                summarize, waterfall_svg)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
META = {"source": "cohort.csv", "models": "models/bundle", "model_type": "xgboost",
        "harm_weight": 0.5, "top_k_explained": 3, "version": "test"}


@pytest.fixture(scope="module")
def result(small_splits, small_bundle, options):
    return recommend(small_splits["test"].head(12), small_bundle, options)


@pytest.fixture(scope="module")
def page(result):
    sections = patient_sections(result.table, result.shap, result.features, 5)
    return render_report(summarize(result.table), sections, 12, META)


def test_waterfall_ends_at_the_patients_log_odds():
    phi = np.zeros(len(FEATURE_NAMES))
    phi[:3] = [0.5, -0.25, 0.1]
    svg = waterfall_svg(phi, -1.0, np.ones(len(FEATURE_NAMES)), "t <&>")
    assert svg.startswith("<svg") and "t &lt;&amp;&gt;" in svg
    assert "log-odds -0.65" in svg and svg.count("<rect") == 3


def test_page_has_notice_summary_and_capped_sections(page):
    assert page.count(RESEARCH_NOTICE) == 2
    assert page.count('class="patient"') == 5
    assert "first 5 of 12 patients" in page
    assert 'id="cohort-summary"' in page and page.count("<svg") == 10  # 2 charts x 5


def test_page_reads_a_flagged_probability_as_uncertain_not_as_the_range(page):
    """The calibrated range was no closer to the true P(response) than the model's own on the
    benchmark generators (docs/predictions.md, "What the flag is worth"): the page must not
    tell a reader to prefer it."""
    text = " ".join(page.split())
    assert "the range is the better estimate" not in text.lower()
    assert "The range is not a better estimate" in text
    assert "Read a flagged probability as uncertain" in text


def test_page_loads_nothing_from_anywhere(page):
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "url(" not in page


def test_summaries_add_up_over_chunks(result):
    table = result.table
    ids = table["patient_id"].unique()
    halves = [table[table["patient_id"].isin(ids[:6])], table[table["patient_id"].isin(ids[6:])]]
    total = add_summaries(summarize(halves[0]), summarize(halves[1]))
    pd.testing.assert_frame_equal(total.sort_index(), summarize(table).sort_index(),
                                  check_dtype=False)
    assert total["first_choice"].sum() == len(ids)


@pytest.mark.browser
def test_report_renders_in_headless_chromium(page, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed; install it with "
                    "`apt-get install -y chromium` to run this test")
    html_file = tmp_path / "report.html"
    html_file.write_text(page, encoding="utf-8")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               "--dump-dom", html_file.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    sections = re.findall(r'<section class="patient" id="patient-\d+" data-patient-id="([^"]+)"',
                          dom)
    assert len(sections) == 5
    assert RESEARCH_NOTICE in dom
    assert dom.count("<svg") == 10


def test_each_shown_patient_gets_its_own_plans_and_no_one_elses(result):
    """with_plans attaches to each section the listed plans of its patient only; the page
    shows them (and nothing of the patients without a section)."""
    from precision_pain.predict.plans import PLAN_COLUMNS
    from precision_pain.predict.report_html import with_plans

    ids = list(pd.unique(result.table["patient_id"]))
    plans = pd.DataFrame({c: "" for c in PLAN_COLUMNS}, index=range(3 * len(ids)))
    plans = plans.assign(
        patient_id=np.repeat(ids, 3), rank=np.tile([1, 2, 3], len(ids)), action="none",
        components=[f"plan-{i}-of-{p}" for p in ids for i in (1, 2, 3)],
        excluded_by_preference=False, p_response=0.5, p_adverse_event=0.1, net_benefit=0.4,
        net_benefit_over_best_single=0.01, best_single_treatment="duloxetine")
    sections = with_plans(patient_sections(result.table, result.shap, result.features, 5),
                          plans)
    assert [list(s.plans["components"]) for s in sections] == [
        [f"plan-{i}-of-{s.patient_id}" for i in (1, 2, 3)] for s in sections]
    page = render_report(summarize(result.table), sections, len(ids), META)
    assert page.count("<h3>Treatment plans</h3>") == 5
    for p in ids:
        assert (f"plan-1-of-{p}" in page) == (p in {s.patient_id for s in sections})
