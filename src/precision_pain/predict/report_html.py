"""HTML report of a prediction run: one self-contained page that opens offline.

The page has a cohort section (first choices, guideline flags and confidence per
treatment, counted over every patient of the run) and one section per patient,
for at most ``max_patients`` patients (the page says how many were left out):
the ranked treatments with their guideline notes and confidence, the written
explanations, the contrast between the first two choices, and waterfall charts
(inline SVG) of the first choice's SHAP values for response and for serious
adverse events. No scripts, fonts or images are loaded from anywhere: styles
are inline and charts are SVG markup. Every page carries the research-use-only
notice.

The pure functions here turn tables into summaries and markup; writing the
file is :mod:`precision_pain.predict.outputs`'s job.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from precision_pain import RESEARCH_NOTICE
from precision_pain.data.features import FEATURE_NAMES, describe
from precision_pain.predict.evidence import evidence_sentence
from precision_pain.predict.guidelines import ACTIONS
from precision_pain.registry import TREATMENTS

FLAG_ACTIONS = tuple(a for a in ACTIONS if a != "none")
_BAR_COLORS = {"up": "#b03a2e", "down": "#1f618d"}


# --------------------------------------------------------------------------- cohort summary

def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per-treatment counts of one chunk: eligible, first choice, flags, low confidence."""
    eligible = table[table["eligible"].astype(bool)]
    first = table[table["rank"] == 1]
    counts = pd.DataFrame({
        "eligible": eligible.groupby("treatment").size(),
        "first_choice": first.groupby("treatment").size(),
        "first_choice_low_confidence": first[first["low_confidence"].astype(bool)]
        .groupby("treatment").size(),
        "low_confidence": eligible[eligible["low_confidence"].astype(bool)]
        .groupby("treatment").size(),
    })
    actions = pd.crosstab(eligible["treatment"], eligible["guideline_action"])
    counts = counts.join(actions.reindex(columns=list(FLAG_ACTIONS), fill_value=0), how="outer")
    return counts.fillna(0).astype(np.int64)


def add_summaries(total: pd.DataFrame | None, part: pd.DataFrame) -> pd.DataFrame:
    """Sum two per-treatment count tables."""
    if total is None:
        return part
    return total.add(part, fill_value=0).astype(np.int64)


# --------------------------------------------------------------------------- patient sections

@dataclass(frozen=True)
class PatientSection:
    """What the page shows for one patient."""

    patient_id: str
    rows: pd.DataFrame  # the patient's ranked rows
    charts: tuple[str, ...]  # inline SVG markup
    plans: pd.DataFrame | None = None  # the patient's listed plans (predict/plans.py), if any


def with_plans(sections: list[PatientSection], plans: pd.DataFrame | None
               ) -> list[PatientSection]:
    """The sections with each patient's listed plans attached (unchanged without plans)."""
    if plans is None:
        return sections
    shown = plans[plans["patient_id"].isin([s.patient_id for s in sections])]
    by_patient = dict(tuple(shown.groupby("patient_id", sort=False)))
    return [PatientSection(s.patient_id, s.rows, s.charts,
                           by_patient.get(s.patient_id, plans.iloc[:0]).reset_index(drop=True))
            for s in sections]


def patient_sections(table: pd.DataFrame, shap: pd.DataFrame, features: pd.DataFrame,
                     limit: int) -> list[PatientSection]:
    """Sections for the first ``limit`` patients of a chunk (input order)."""
    if limit <= 0:
        return []
    ids = pd.unique(table["patient_id"])[:limit]
    continuous = bool(table.get("expected_nrs_change", pd.Series(dtype=float)).notna().any())
    rows = table[table["patient_id"].isin(ids)]
    first = shap[shap["patient_id"].isin(ids) & (shap["rank"] == 1)]
    shown = features[features["patient_id"].isin(ids)]
    values = dict(zip(shown["patient_id"], shown[list(FEATURE_NAMES)].to_numpy(float)))
    phi, bias = first[list(FEATURE_NAMES)].to_numpy(float), first["bias"].to_numpy(float)
    charts: dict[Any, list[str]] = {}
    for i, (pid, treatment, outcome) in enumerate(zip(first["patient_id"], first["treatment"],
                                                      first["outcome"])):
        charts.setdefault(pid, []).append(waterfall_svg(
            phi[i], float(bias[i]), values[pid], _chart_title(treatment, outcome, continuous),
            _NRS if continuous and outcome == "response" else outcome))
    return [PatientSection(str(pid), group.reset_index(drop=True), tuple(charts.get(pid, ())))
            for pid, group in rows.groupby("patient_id", sort=False)]


_NRS = "response_nrs"  # a continuous outcome's response chart: SHAP values in NRS points


def _chart_title(treatment: str, outcome: str, continuous: bool = False) -> str:
    label = TREATMENTS[treatment].label
    if continuous and outcome == "response":
        return f"First choice, {label}: SHAP values of the expected NRS reduction, points"
    what = "response" if outcome == "response" else "a serious adverse event"
    return f"First choice, {label}: SHAP values of P({what}), log-odds"


def waterfall_svg(phi: np.ndarray, bias: float, values: np.ndarray, title: str,
                  outcome: str = "response", max_bars: int = 8) -> str:
    """Waterfall chart (inline SVG): from the bias to the patient's log-odds, largest first."""
    order = np.argsort(-np.abs(phi), kind="stable")
    shown = [j for j in order[:max_bars] if abs(phi[j]) > 1e-9]
    rest = float(phi.sum() - phi[shown].sum())
    steps = [(describe(FEATURE_NAMES[j], float(values[j])), float(phi[j])) for j in shown]
    if abs(rest) > 1e-9:
        steps.append((f"{len(phi) - len(shown)} other features", rest))
    return _svg(title, bias, steps, outcome)


def _svg(title: str, bias: float, steps: Sequence[tuple[str, float]], outcome: str) -> str:
    """SVG markup for the waterfall: one row per step, labels on the left."""
    width, label_w, row_h, top = 760, 330, 22, 52
    ends = np.cumsum([bias] + [s for _, s in steps])
    lo, hi = float(min(ends.min(), bias)), float(max(ends.max(), bias))
    pad = max(0.05, 0.05 * (hi - lo))
    scale = (width - label_w - 90) / ((hi - lo) + 2 * pad)

    def x(v: float) -> float:
        return label_w + (v - lo + pad) * scale

    what = "response" if outcome == "response" else "serious adverse event"
    nrs = outcome == _NRS
    unit = "NRS points" if nrs else "log-odds"

    def level(v: float) -> str:
        return (f"expected NRS reduction {v:+.2f} points" if nrs
                else f"log-odds {v:+.2f}, P({what}) {_sigmoid(v):.2f}")

    rows = [_text(8, 14, title, "strong"),
            _text(8, top - 8, f"average patient (bias): {level(bias)}", "muted")]
    for i, (label, size) in enumerate(steps):
        y = top + i * row_h
        start = ends[i]
        left, right = sorted((x(start), x(start + size)))
        color = _BAR_COLORS["up" if size > 0 else "down"]
        rows.append(_text(8, y + 15, label))
        rows.append(f'<rect x="{left:.1f}" y="{y + 3}" width="{max(right - left, 1):.1f}" '
                    f'height="{row_h - 6}" fill="{color}"><title>{html.escape(label)}: '
                    f'{size:+.3f} {unit}</title></rect>')
        rows.append(_text(right + 4, y + 15, f"{size:+.2f}"))
    total = float(ends[-1])
    y_end = top + len(steps) * row_h
    rows.append(f'<line x1="{x(bias):.1f}" y1="{top - 4}" x2="{x(bias):.1f}" y2="{y_end}" '
                'stroke="#888" stroke-dasharray="3,3"/>')
    rows.append(_text(8, y_end + 18, f"this patient: {level(total)}", "strong"))
    height = y_end + 30
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="waterfall" role="img" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<title>{html.escape(title)}</title>{"".join(rows)}</svg>')


def _text(x: float, y: float, content: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y}"{klass}>{html.escape(content)}</text>'


def _sigmoid(v: float) -> float:
    return float(1.0 / (1.0 + np.exp(-v)))


# --------------------------------------------------------------------------- the page

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>precision-pain recommendations: {{ meta.source }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto;
       max-width: 72rem; color: #222; line-height: 1.4; padding: 0 1rem; }
.notice { border: 2px solid #b03a2e; background: #fdf2f0; padding: .6rem .9rem; font-weight: 600; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.avoid { background: #fbe3e0; } .ineligible { color: #888; }
.flag { color: #b03a2e; font-weight: 600; }
.patient { border-top: 2px solid #444; margin-top: 2rem; padding-top: .5rem; }
.waterfall text { font-size: 12px; fill: #222; } .waterfall .muted { fill: #666; }
.waterfall .strong { font-weight: 700; }
.small { font-size: .85rem; color: #555; }
</style>
</head>
<body>
<p class="notice" role="note" id="research-notice">{{ notice }}</p>
<h1>Treatment recommendations</h1>
<p class="small">Input: {{ meta.source }} &middot; models: {{ meta.model_type }} ({{ meta.models }})
{% if meta.get("outcome") == "nrs_change" -%}
&middot; outcome: change in NRS pain (follow-up minus baseline; lower is better) &middot; net
benefit (NRS points) = expected reduction &minus; {{ meta.harm_weight }} &times;
{{ meta.adverse_event_nrs_points }} &times; P(serious adverse event)
{%- else -%}
&middot; net benefit = P(response) &minus; {{ meta.harm_weight }} &times; P(serious adverse event)
{%- endif %}
&middot; precision-pain {{ meta.version }}</p>

<section id="cohort">
<h2>Cohort: {{ n_patients }} patients</h2>
{% if evidence %}<p id="evaluation-evidence">{% if evidence[1] %}<strong>{{ evidence[0] }}</strong>
{%- else %}{{ evidence[0] }}{% endif %}</p>{% endif %}
<p>{{ shown_text }}</p>
<table id="cohort-summary">
<thead><tr><th>treatment</th><th>first choice</th><th>first choice, low confidence</th>
<th>eligible</th><th>low confidence (eligible)</th>
{% for a in flag_actions %}<th>{{ a.replace('_', ' ') }}</th>{% endfor %}</tr></thead>
<tbody>
{% for name, row in summary.iterrows() %}<tr><td>{{ label(name) }}</td>
<td class="num">{{ row.first_choice }}</td>
<td class="num">{{ row.first_choice_low_confidence }}</td>
<td class="num">{{ row.eligible }}</td><td class="num">{{ row.low_confidence }}</td>
{% for a in flag_actions %}<td class="num">{{ row[a] }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% if meta.get("treatments_not_modeled") %}<p id="not-modeled"><strong>Not ranked:</strong>
these models rank only the treatments their training data supported. Not modeled:
{% for a in meta["treatments_not_modeled"] %}{{ label(a.treatment) }} ({{ a.reason }}){% if not loop.last %};
{% endif %}{% endfor %}. A patient for whom one of these is a usual option may have a better
choice than the list below shows.</p>{% endif %}
<p class="small">Guideline actions are counted over eligible (patient, treatment) pairs.
<em>avoid</em> ranks a treatment below every allowed one; the other actions keep the model's
order and add a note. <em>not checked</em>: a phenotype was indeterminate, or a measurement
the check needs (eGFR, Opioid Risk Tool score) was not recorded, so a guideline check could
not be made. Low confidence: the patient lies outside what the treatment's models
saw in training, the response interval is wide, P(response) lies well outside its
calibration interval, or (with a propensity model) patients like this rarely received the
treatment. The calibrated range is an inductive Venn-Abers interval from held-out
predictions for the patients who received the treatment in training: where the model's
P(response) lies well outside it, those patients responded at another rate than predicted.
The range is not a better estimate: on cohorts with a known truth it was no closer to the
true probability than the model's own, and with a few hundred held-out patients it can be
further (docs/predictions.md). Read a flagged probability as uncertain.{% if meta.get("outcome") == "nrs_change" %} For the change in pain, the
bracket is a split-conformal prediction interval for the patient's own change (follow-up
minus baseline NRS), from the validation patients who received the treatment and whose
baseline pain was in the same severity band (mild, moderate, severe).{% endif %}</p>
</section>

{% for s in sections %}
<section class="patient" id="patient-{{ loop.index }}" data-patient-id="{{ s.patient_id }}">
<h2>Patient {{ s.patient_id }}</h2>
<table>
<thead><tr><th>rank</th><th>treatment</th>
<th>{{ 'expected NRS change [prediction interval]' if meta.get("outcome") == "nrs_change"
      else 'P(response) [calibrated range]' }}</th><th>P(adverse event)</th>
<th>net benefit</th><th>guideline</th><th>confidence</th></tr></thead>
<tbody>
{% for r in s.rows %}
<tr class="{{ 'avoid' if r.guideline_action == 'avoid' else '' }}
           {{- '' if r.eligible else ' ineligible' }}">
<td class="num">{{ r.rank }}</td>
<td>{{ label(r.treatment) }}
{%- if not r.eligible %} (not a usual option for this condition){% endif %}</td>
<td class="num">{% if r.p_response == r.p_response %}{{ '%.2f' % r.p_response }}
{%- if r.p_response_low == r.p_response_low %} [{{ '%.2f' % r.p_response_low -}}
&ndash;{{ '%.2f' % r.p_response_high }}]{% endif %}
{%- else %}{{ '%+.2f' % r.expected_nrs_change }}
{%- if r.expected_nrs_change_low == r.expected_nrs_change_low %}
 [{{ '%+.1f' % r.expected_nrs_change_low -}}
&ndash;{{ '%+.1f' % r.expected_nrs_change_high }}]{% endif %}{% endif %}</td>
<td class="num">{{ '%.3f' % r.p_adverse_event }}</td>
<td class="num">{{ '%.3f' % r.net_benefit }}</td>
<td>{% if r.guideline_action != 'none' -%}
<strong>{{ r.guideline_action.replace('_', ' ') }}</strong>: {{ r.guideline_note }}
{%- endif %}
{%- if r.dose_guidance %}<br><span class="small"><strong>dose:</strong> {{ r.dose_guidance }}</span>{% endif %}
{%- if r.projected_mme == r.projected_mme %}<br><span class="small">{{ '%.0f' % r.projected_mme }} MME/day with the typical dose
{%- if r.offer_naloxone %}; <strong>offer naloxone</strong>{% endif %}</span>{% endif %}
{%- if r.stewardship_note %}<br><span class="small">{{ r.stewardship_note }}</span>{% endif %}
{%- if r.excluded_by_preference %}<br><span class="small"><strong>declined by the patient</strong></span>{% endif %}</td>
<td>{% if r.low_confidence %}<span class="flag">low</span>: {{ r.confidence_reason }}
{%- else %}ok{% endif %}</td>
</tr>
{% endfor %}</tbody></table>
{% set first = s.rows[0] %}
{% if first.contrast -%}
<p><strong>Why this first choice:</strong> {{ first.contrast }}</p>
{%- endif %}
<ul class="explanations">
{% for r in s.rows %}{% if r.explanation %}
<li>{{ r.explanation }}.<br><span class="small">{{ r.adverse_event_explanation }}.</span></li>
{% endif %}{% endfor %}
</ul>
<div class="charts">{% for c in s.charts %}{{ c | safe }}{% endfor %}</div>
{% if s.plans is not none and s.plans|length %}
<h3>Treatment plans</h3>
<table class="plans">
<thead><tr><th>rank</th><th>plan (components)</th><th>P(response)</th><th>P(adverse event)</th>
<th>net benefit</th><th>vs best single treatment</th><th>checks</th></tr></thead>
<tbody>
{% for r in s.plans %}
<tr class="{{ 'avoid' if r.action == 'avoid' else '' }}">
<td class="num">{{ r.rank }}</td>
<td>{{ r.components }}{% if r.excluded_by_preference %}<br><span class="small"><strong>declined by the patient</strong></span>{% endif %}</td>
<td class="num">{{ '%.2f' % r.p_response }}</td>
<td class="num">{{ '%.3f' % r.p_adverse_event }}</td>
<td class="num">{{ '%.3f' % r.net_benefit }}</td>
<td class="num">{{ '%+.3f' % r.net_benefit_over_best_single }} ({{ r.best_single_treatment }})</td>
<td>{% if r.action != 'none' %}<strong>{{ r.action.replace('_', ' ') }}</strong>: {% endif %}{{ r.note }}
{%- if r.dose_guidance %}<br><span class="small"><strong>dose:</strong> {{ r.dose_guidance }}</span>{% endif %}
{%- if r.stewardship_note %}<br><span class="small">{{ r.stewardship_note }}</span>{% endif %}</td>
</tr>
{% endfor %}</tbody></table>
<ul class="plan-explanations">
{% for r in s.plans %}<li><strong>{{ r.components }}</strong>: {{ r.explanation }}.<br><span class="small">{{ r.adverse_event_explanation }}.</span></li>
{% endfor %}</ul>
{% endif %}
</section>
{% endfor %}
<p class="notice" role="note">{{ notice }}</p>
</body>
</html>
"""


def render_report(summary: pd.DataFrame | None, sections: Sequence[PatientSection],
                  n_patients: int, meta: Mapping[str, Any]) -> str:
    """The whole HTML page."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_TEMPLATE)
    summary = summary if summary is not None else pd.DataFrame(
        columns=["first_choice", "first_choice_low_confidence", "eligible", "low_confidence",
                 *FLAG_ACTIONS])
    return template.render(
        notice=RESEARCH_NOTICE, meta=meta, n_patients=n_patients,
        sections=[_as_records(s) for s in sections],
        summary=summary.sort_values("first_choice", ascending=False),
        flag_actions=FLAG_ACTIONS, label=lambda t: TREATMENTS[t].label,
        shown_text=_shown_text(len(sections), n_patients),
        evidence=(evidence_sentence(meta["evaluation"], lambda t: TREATMENTS[t].label
                                    if t in TREATMENTS else str(t))
                  if meta.get("evaluation") else None))


def _as_records(section: PatientSection) -> dict[str, Any]:
    """A section with its tables as lists of plain row dicts, which the template reads many
    times faster than pandas rows."""
    plans = None if section.plans is None else _records(section.plans)
    return {"patient_id": section.patient_id, "rows": _records(section.rows),
            "charts": section.charts, "plans": plans}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``frame.to_dict("records")`` (Python scalars), without pandas' per-column cost."""
    columns = list(frame.columns)
    return [dict(zip(columns, row)) for row in frame.to_numpy(dtype=object).tolist()]


def _shown_text(shown: int, total: int) -> str:
    if shown >= total:
        return f"One section per patient below ({total})."
    return (f"Patient sections are shown for the first {shown} of {total} patients "
            f"(predict.report_max_patients = {shown}); the table and JSON files hold all of "
            "them.")
