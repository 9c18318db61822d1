"""An independent second data-generating process for precision-pain benchmarks.

Writes a cohort in the data contract's format (docs/data-contract.md; it passes
``precision-pain prepare``) and a ground truth in the simulator's format
(``patient_id, treatment, eligible, p_response, p_adverse_event, p_usual_care``: one
row per patient x registry treatment). Deliberately unlike ``precision_pain.simulate``:

- Response is *not* a probit of a normally distributed NRS reduction with additive
  linear modifiers. Each treatment has a condition base rate that is moved by step
  functions (thresholds), hinge terms and interactions on the probability scale and
  clipped to [0.03, 0.92]. Examples: CBT works when catastrophizing (PCS >= 30) and
  anxiety are high together; duloxetine gains sharply at PHQ-9 >= 10; physical therapy
  works for active patients with BMI < 35 and fails for low activity + high PCS;
  epidural steroids only help radiculopathy of < 12 months; spinal cord stimulation
  only after surgery with > 24 months of pain; NSAIDs help knee osteoarthritis at BMI < 32.
- Non-additive genotype effects: CYP2D6 (effective, i.e. with a strong inhibitor
  counted as PM) poor metabolizers get almost nothing from tramadol; ultrarapid
  metabolizers get a sharply higher adverse-event risk from tramadol; CYP2C19
  ultrarapid/rapid metabolizers lose most of amitriptyline's benefit and CYP2D6 PMs
  get a much higher amitriptyline adverse-event risk; OPRM1 G/G halves oxycodone's
  benefit; CYP2C9 PM multiplies NSAID adverse events.
- Adverse events: multiplicative risk ratios with thresholds (eGFR < 45, age >= 70,
  ulcer AND anticoagulant together, ORT >= 8, ...), capped at 0.85.
- Usual care: physician preference clusters (4 unobserved physician styles, independent
  of the potential outcomes, so no unmeasured confounding) combined with threshold rules
  on pain severity (NRS >= 8 -> opioids), PHQ-9 >= 10 (antidepressants), age >= 70
  (avoid NSAIDs), radiculopathy (epidurals); every eligible option keeps >= 3 %.
- Outcomes: response ~ Bernoulli(p_response); a responder's relative NRS reduction is
  uniform on [0.32, 0.9], a non-responder's on [-0.2, 0.27], so the derived response at
  the default threshold 0.30 equals the drawn one exactly (the truth is valid for 0.30).
  The follow-up score is baseline x (1 - reduction), capped at 10; the truth's
  ``expected_nrs_change`` is its exact mean minus the baseline (for the continuous outcome,
  ``prepare.outcome: nrs_change``), so there the change in pain is a mixture, not the
  simulator's normal.

Usage::

    python benchmarks/alt_cohort.py --n 20000 --seed 1 --out cohort.csv --truth-out truth.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from precision_pain.data.pgx import annotate_pgx
from precision_pain.registry import CONDITIONS, TREATMENTS

ANCESTRIES = ("european", "african_american", "east_asian", "latino", "south_asian", "other")
ANCESTRY_MIX = (0.50, 0.18, 0.10, 0.15, 0.05, 0.02)
CONDITION_MIX = (0.28, 0.18, 0.10, 0.12, 0.16, 0.16)
# CYP2D6 alleles (activity 1, 1, 0, 0, 0.25, 0.25, 0.5, duplication) per ancestry.
D6_ALLELES = ("*1", "*2", "*4", "*5", "*10", "*41", "*17", "*1x2")
D6_FREQ = {
    "european": (0.36, 0.25, 0.20, 0.04, 0.02, 0.09, 0.00, 0.04),
    "african_american": (0.38, 0.20, 0.07, 0.06, 0.04, 0.04, 0.17, 0.04),
    "east_asian": (0.35, 0.12, 0.01, 0.06, 0.42, 0.02, 0.00, 0.02),
    "latino": (0.40, 0.25, 0.13, 0.03, 0.03, 0.06, 0.03, 0.07),
    "south_asian": (0.40, 0.25, 0.10, 0.04, 0.07, 0.12, 0.00, 0.02),
}
C9_ALLELES = ("*1", "*2", "*3")
C9_FREQ = {"european": (0.80, 0.12, 0.08), "african_american": (0.96, 0.02, 0.02),
           "east_asian": (0.95, 0.01, 0.04), "latino": (0.86, 0.08, 0.06),
           "south_asian": (0.83, 0.06, 0.11)}
C19_ALLELES = ("*1", "*2", "*17")
C19_FREQ = {"european": (0.63, 0.15, 0.22), "african_american": (0.57, 0.18, 0.25),
            "east_asian": (0.67, 0.30, 0.03), "latino": (0.75, 0.10, 0.15),
            "south_asian": (0.50, 0.32, 0.18)}
OPRM1_G = {"european": .15, "african_american": .03, "east_asian": .42, "latino": .22,
           "south_asian": .40}
COMT_MET = {"european": .50, "african_american": .30, "east_asian": .27, "latino": .38,
            "south_asian": .43}
MISSING_GENOTYPE = 0.03
EFFECT_SCALE = 0.6


def _freq(table: dict, ancestry: str) -> np.ndarray:
    if ancestry == "other":
        return np.mean([np.asarray(v, float) for v in table.values()], axis=0)
    return np.asarray(table[ancestry], float)


def _diplotypes(anc: np.ndarray, alleles: tuple[str, ...], table: dict,
                rng: np.random.Generator) -> np.ndarray:
    out = np.empty(len(anc), dtype=object)
    for a in np.unique(anc):
        rows = np.flatnonzero(anc == a)
        p = _freq(table, a)
        p = p / p.sum()
        first = rng.choice(len(alleles), len(rows), p=p)
        second = rng.choice(len(alleles), len(rows), p=p)
        lo, hi = np.minimum(first, second), np.maximum(first, second)
        out[rows] = [f"{alleles[i]}/{alleles[j]}" for i, j in zip(lo, hi)]
    return out


def _snp(anc: np.ndarray, table: dict, spelled: tuple[str, str, str],
         rng: np.random.Generator) -> np.ndarray:
    p = np.array([np.mean(list(table.values())) if a == "other" else table[a] for a in anc])
    return np.array(spelled, dtype=object)[rng.binomial(2, p)]


def _patients(n: int, rng: np.random.Generator) -> pd.DataFrame:
    cond = rng.choice(len(CONDITIONS), n, p=CONDITION_MIX)
    cname = np.array(CONDITIONS, dtype=object)[cond]
    anc = np.array(ANCESTRIES, dtype=object)[rng.choice(len(ANCESTRIES), n, p=ANCESTRY_MIX)]
    female = rng.random(n) < np.where(cname == "fibromyalgia", 0.8, 0.5)
    age_mean = np.select([cname == "knee_osteoarthritis", cname == "diabetic_neuropathy",
                          cname == "fibromyalgia"], [68, 64, 45], 54)
    age = np.clip(np.rint(rng.gamma(9.0, age_mean / 9.0)), 18, 90).astype(int)
    # psychology: a skewed (gamma) distress factor instead of a normal one
    distress = rng.gamma(2.0, 1.0, n)
    phq9 = np.clip(np.rint(2 + 2.6 * distress + rng.integers(-2, 3, n)), 0, 27).astype(int)
    gad7 = np.clip(np.rint(1.5 + 2.0 * distress + rng.integers(-3, 4, n)), 0, 21).astype(int)
    pcs = np.clip(np.rint(10 + 6.0 * distress + rng.uniform(-8, 8, n)), 0, 52).astype(int)
    bmi = np.round(np.clip(rng.lognormal(np.log(29) + 0.05 * (cname == "knee_osteoarthritis"),
                                         0.2, n), 15, 60), 1)
    act = np.where(rng.random(n) < 0.25, rng.integers(0, 3, n),
                   np.digitize(-0.05 * (bmi - 29) - 0.03 * (age - 55) - 0.25 * distress
                               + rng.normal(0, 0.7, n), [-0.9, 0.2]))
    duration = np.round(np.clip(rng.exponential(40, n) + 3, 3, 600), 1)
    pain = np.round(np.clip(rng.triangular(3, 7, 10, n) + 0.3 * (distress > 3), 1, 10), 1)
    surgery = (cname == "failed_back_surgery") | (rng.random(n) < 0.07)
    smoker = rng.random(n) < 0.12 + 0.06 * (distress > 2.5)
    ort = np.clip(rng.poisson(1.5 + 1.2 * smoker + 0.8 * (phq9 >= 10) + 1.5 * (age < 40)),
                  0, 26).astype(int)
    mme = np.where(rng.random(n) < 0.3 + 0.04 * (pain - 6),
                   np.round(np.clip(rng.lognormal(np.log(25), 0.8, n), 2.5, 400), 1), 0.0)
    egfr = np.round(np.clip(125 - 0.9 * (age - 25) - 18 * (cname == "diabetic_neuropathy")
                            + rng.normal(0, 18, n), 5, 150), 1)
    frame = pd.DataFrame({
        "age": age, "sex": np.where(female, "F", "M").astype(object), "ancestry": anc,
        "bmi": bmi, "condition": cname, "pain_duration_months": duration,
        "pain_baseline": pain, "pcs": pcs, "phq9": phq9, "gad7": gad7, "smoker": smoker,
        "activity_level": np.array(["low", "moderate", "high"], dtype=object)[act],
        "prior_spine_surgery": surgery, "baseline_mme": mme, "ort_score": ort, "egfr": egfr,
        "prior_gi_ulcer": rng.random(n) < 0.04 + 0.04 * (age >= 65),
        "anticoagulant": rng.random(n) < 0.03 + 0.07 * (age >= 70),
        "cyp2d6_inhibitor": rng.random(n) < np.where(phq9 >= 12, 0.15, 0.03),
        "CYP2D6": _diplotypes(anc, D6_ALLELES, D6_FREQ, rng),
        "CYP2C9": _diplotypes(anc, C9_ALLELES, C9_FREQ, rng),
        "CYP2C19": _diplotypes(anc, C19_ALLELES, C19_FREQ, rng),
        "OPRM1_rs1799971": _snp(anc, OPRM1_G, ("A/A", "A/G", "G/G"), rng),
        "COMT_rs4680": _snp(anc, COMT_MET, ("G/G", "G/A", "A/A"), rng),
    })
    return frame


# ------------------------------------------------------------------------- ground truth
# Condition base response probability per treatment (NaN = ineligible there).
BASE = {  # clbp, radic, fbss, fibro, dpn, koa
    "nsaid": (0.34, 0.22, 0.18, 0, 0, 0.38),
    "tramadol": (0.36, 0.33, 0.30, 0.26, 0.34, 0.34),
    "oxycodone": (0.40, 0.38, 0.36, 0, 0.36, 0.36),
    "duloxetine": (0.26, 0.24, 0.22, 0.34, 0.38, 0.28),
    "amitriptyline": (0.22, 0.26, 0.24, 0.36, 0.36, 0),
    "pregabalin": (0, 0.30, 0.28, 0.30, 0.44, 0),
    "physical_therapy": (0.30, 0.24, 0.18, 0.22, 0.14, 0.32),
    "cbt": (0.22, 0.16, 0.18, 0.30, 0.14, 0.16),
    "spinal_cord_stimulation": (0.14, 0.20, 0.30, 0, 0.28, 0),
    "epidural_steroid": (0.12, 0.26, 0.10, 0, 0, 0),
}
AE_BASE = {"nsaid": 0.05, "tramadol": 0.07, "oxycodone": 0.10, "duloxetine": 0.06,
           "amitriptyline": 0.07, "pregabalin": 0.06, "physical_therapy": 0.015, "cbt": 0.005,
           "spinal_cord_stimulation": 0.09, "epidural_steroid": 0.04}
# The treatments this generator simulates, in registry order. The registry may hold more
# (e.g. neurofeedback, an opt-in of the project's simulator); they are never given here.
SIMULATED = tuple(t for t in TREATMENTS if t in BASE)


def _truth(p: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, k) eligibility, P(response), P(adverse event) from the annotated cohort."""
    c = p["condition"].to_numpy()
    ci = np.array([CONDITIONS.index(x) for x in c])
    elig = np.array([[TREATMENTS[t].eligible(x) for t in SIMULATED] for x in CONDITIONS]
                    )[ci]
    age, bmi, pain = p["age"].to_numpy(float), p["bmi"].to_numpy(float), \
        p["pain_baseline"].to_numpy(float)
    phq, gad, pcs = (p[k].to_numpy(float) for k in ("phq9", "gad7", "pcs"))
    dur, egfr, ort = (p[k].to_numpy(float) for k in ("pain_duration_months", "egfr",
                                                      "ort_score"))
    mme = p["baseline_mme"].to_numpy(float)
    act = p["activity_level"].map({"low": 0, "moderate": 1, "high": 2}).to_numpy()
    smoker, ulcer, anticoag = (p[k].to_numpy(bool) for k in ("smoker", "prior_gi_ulcer",
                                                            "anticoagulant"))
    d6 = p["cyp2d6_effective_phenotype"].astype(str).to_numpy()
    c19 = p["cyp2c19_phenotype"].astype(str).to_numpy()
    c9 = p["cyp2c9_phenotype"].astype(str).to_numpy()
    oprm1_gg = p["oprm1_g_count"].to_numpy(float) == 2
    comt_mm = p["comt_met_count"].to_numpy(float) == 2
    fibro, koa = c == "fibromyalgia", c == "knee_osteoarthritis"
    radic, fbss = c == "lumbar_radiculopathy", c == "failed_back_surgery"
    dpn = c == "diabetic_neuropathy"
    opioid_tolerant = mme >= 50

    base = np.array([BASE[t] for t in SIMULATED]).T[ci]  # (n, k)
    r: dict[str, np.ndarray] = {t: base[:, j].copy() for j, t in enumerate(SIMULATED)}
    # NSAID: knee OA with BMI < 32 responds well; high pain blunts it.
    r["nsaid"] += 0.22 * (koa & (bmi < 32)) - 0.10 * (pain >= 8) + 0.06 * (age < 50)
    # Tramadol: prodrug; effective CYP2D6 PM -> almost useless, IM -> reduced.
    r["tramadol"] = np.where(d6 == "PM", 0.05, np.where(d6 == "IM", 0.7, 1.0) * r["tramadol"])
    r["tramadol"] += 0.08 * (pain >= 7) * (d6 != "PM")
    # Oxycodone: OPRM1 G/G halves the benefit; opioid-tolerant patients gain little more.
    r["oxycodone"] = r["oxycodone"] * np.where(oprm1_gg, 0.5, 1.0) \
        * np.where(opioid_tolerant, 0.55, 1.0) + 0.10 * (pain >= 8)
    # Duloxetine: a step at PHQ-9 >= 10 and a second one at >= 15.
    r["duloxetine"] += 0.20 * (phq >= 10) + 0.08 * (phq >= 15) - 0.06 * (age >= 75)
    # Amitriptyline: CYP2C19 UM/RM lose most of the benefit; sleep (fibro) helps.
    r["amitriptyline"] = np.where(np.isin(c19, ["UM", "RM"]), 0.4, 1.0) * \
        (r["amitriptyline"] + 0.10 * (fibro & (age < 60)))
    # Pregabalin: neuropathic (DPN) and younger fibromyalgia; hinge in duration.
    r["pregabalin"] += 0.12 * (dpn & (egfr >= 60)) + 0.002 * np.clip(60 - dur, 0, 60)
    # Physical therapy: active and BMI < 35 works; low activity AND high PCS fails.
    r["physical_therapy"] += 0.24 * ((act >= 1) & (bmi < 35)) + 0.08 * (act == 2) \
        - 0.18 * ((act == 0) & (pcs >= 25))
    # CBT: interaction of catastrophizing and anxiety.
    r["cbt"] += 0.34 * ((pcs >= 30) & (gad >= 8)) + 0.10 * (pcs >= 30) - 0.06 * (age >= 70)
    # Spinal cord stimulation: after surgery with long pain only.
    r["spinal_cord_stimulation"] += 0.30 * (fbss & (dur > 24)) + 0.15 * (dpn & (pain >= 8))
    # Epidural steroid: recent radicular pain only.
    r["epidural_steroid"] += 0.38 * (radic & (dur < 12)) + 0.10 * (radic & (dur < 24))
    raw = np.column_stack([r[t] for t in SIMULATED])
    # Shrink every contrast between a patient's options toward the patient's mean over
    # eligible options (EFFECT_SCALE), so the oracle's gain over the best single treatment
    # is of the default simulator's order (~0.07-0.10) rather than twice it.
    center = np.nanmean(np.where(elig, raw, np.nan), axis=1, keepdims=True)
    p_resp = np.clip(center + EFFECT_SCALE * (raw - center), 0.03, 0.92)

    rr: dict[str, np.ndarray] = {t: np.full(len(p), AE_BASE[t]) for t in SIMULATED}
    rr["nsaid"] *= np.where(ulcer & anticoag, 8.0, np.where(ulcer | anticoag, 2.5, 1.0)) \
        * np.where(egfr < 45, 3.0, 1.0) * np.where(c9 == "PM", 2.5, 1.0) \
        * np.where(age >= 70, 1.6, 1.0)
    rr["tramadol"] *= np.where(d6 == "UM", 5.0, 1.0) * np.where(age >= 75, 1.8, 1.0) \
        * np.where(ort >= 8, 2.0, 1.0)
    rr["oxycodone"] *= np.where(ort >= 8, 3.5, np.where(ort >= 4, 1.6, 1.0)) \
        * np.where(age >= 75, 1.7, 1.0) * np.where(comt_mm, 0.7, 1.0)
    rr["duloxetine"] *= np.where(age >= 70, 1.8, 1.0) * np.where(egfr < 30, 3.0, 1.0)
    rr["amitriptyline"] *= np.where(d6 == "PM", 4.0, 1.0) * np.where(age >= 65, 2.5, 1.0)
    rr["pregabalin"] *= np.where(egfr < 60, 2.5, 1.0) * np.where(age >= 70, 1.8, 1.0)
    rr["spinal_cord_stimulation"] *= np.where(smoker | (bmi >= 35), 2.5, 1.0)
    rr["epidural_steroid"] *= np.where(anticoag, 3.0, 1.0)
    rr["physical_therapy"] *= np.where(age >= 75, 3.0, 1.0)
    p_ae = np.clip(np.column_stack([rr[t] for t in SIMULATED]), 0.002, 0.85)
    return elig, np.where(elig, p_resp, np.nan), np.where(elig, p_ae, np.nan)


def _usual_care(p: pd.DataFrame, elig: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Physician styles x threshold rules; every eligible option keeps >= 3 %."""
    n, k = elig.shape
    col = {t: j for j, t in enumerate(SIMULATED)}
    style = rng.integers(0, 4, n)  # unobserved physician, independent of outcomes
    prefs = np.zeros((4, k))
    prefs[0, [col["nsaid"], col["tramadol"], col["oxycodone"]]] = 1.5  # prescribes drugs
    prefs[1, [col["physical_therapy"], col["cbt"]]] = 1.5  # rehab-minded
    prefs[2, [col["epidural_steroid"], col["spinal_cord_stimulation"]]] = 1.8  # interventional
    prefs[3, [col["duloxetine"], col["amitriptyline"], col["pregabalin"]]] = 1.4
    score = prefs[style]
    pain, phq, age = (p[c].to_numpy(float) for c in ("pain_baseline", "phq9", "age"))
    score[:, col["oxycodone"]] += 1.5 * (pain >= 8)
    score[:, col["tramadol"]] += 0.8 * (pain >= 6)
    score[:, col["duloxetine"]] += 1.3 * (phq >= 10)
    score[:, col["amitriptyline"]] += 0.8 * (phq >= 10) - 1.0 * (age >= 70)
    score[:, col["nsaid"]] -= 1.5 * (age >= 70)
    score[:, col["epidural_steroid"]] += 1.2 * (p["condition"] == "lumbar_radiculopathy")
    score[:, col["cbt"]] += 0.9 * (p["pcs"].to_numpy() >= 30)
    w = np.where(elig, np.exp(score), 0.0)
    soft = w / w.sum(axis=1, keepdims=True)
    m = elig.sum(axis=1, keepdims=True)
    mix = 0.03 * m
    # P(usual care) averaged over the physician-style distribution is what the truth reports
    return soft, mix, style


def generate(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cohort in the data contract's format, ground truth in the simulator's format)."""
    rng = np.random.default_rng(seed)
    patients = _patients(n, rng)
    width = max(7, len(str(n)))
    ids = np.char.add("A", np.char.zfill(np.arange(1, n + 1).astype(str), width)).astype(object)
    patients.insert(0, "patient_id", ids)
    annotated = annotate_pgx(patients)
    elig, p_resp, p_ae = _truth(annotated)
    pain = patients["pain_baseline"].to_numpy(float)
    change = (p_resp * _mean_capped(pain, 0.32, 0.9)
              + (1 - p_resp) * _mean_capped(pain, -0.2, 0.27) - pain[:, None])
    soft, mix, _ = _usual_care(annotated, elig, rng)
    m = elig.sum(axis=1, keepdims=True)
    p_uc = (1 - mix) * soft + mix * elig / m
    cdf = np.cumsum(p_uc, axis=1)
    cdf /= cdf[:, -1:]
    got = (rng.random(n)[:, None] >= cdf).sum(axis=1)
    rows = np.arange(n)
    responded = rng.random(n) < p_resp[rows, got]
    reduction = np.where(responded, rng.uniform(0.32, 0.9, n), rng.uniform(-0.2, 0.27, n))
    follow = np.clip(np.round(pain * (1 - reduction), 3), 0, 10)
    adverse = rng.random(n) < p_ae[rows, got]
    # genotypes reported missing at random ('' or 'unknown'); the truth used the full ones
    cohort = patients.copy()
    for column in ("CYP2D6", "CYP2C9", "CYP2C19", "OPRM1_rs1799971", "COMT_rs4680"):
        miss = rng.random(n) < MISSING_GENOTYPE
        cohort.loc[miss, column] = "unknown" if column.startswith("CYP") else ""
    cohort["treatment"] = np.array(SIMULATED, dtype=object)[got]
    cohort["pain_followup"] = follow
    cohort["adverse_event"] = adverse
    k = len(SIMULATED)
    truth = pd.DataFrame({
        "patient_id": np.repeat(ids, k),
        "treatment": np.tile(np.array(SIMULATED, dtype=object), n),
        "eligible": elig.ravel(),
        "p_response": p_resp.ravel(),
        "p_adverse_event": p_ae.ravel(),
        "p_usual_care": p_uc.ravel(),
        "expected_nrs_change": change.ravel(),
    })
    return cohort, truth


def _mean_capped(pain: np.ndarray, low: float, high: float) -> np.ndarray:
    """(n, 1) E[min(pain * (1 - U), 10)] for U uniform on [low, high]: pain * (1 - U) is
    uniform on [a, b] = [pain (1 - high), pain (1 - low)], and the mean of its minimum with
    10 is ((100 - a^2) / 2 + 10 (b - 10)) / (b - a) where a < 10 < b."""
    a, b = pain * (1 - high), pain * (1 - low)
    straddle = ((100 - a ** 2) / 2 + 10 * (b - 10)) / np.maximum(b - a, 1e-12)
    mean = np.where(b <= 10, (a + b) / 2, np.where(a >= 10, 10.0, straddle))
    return mean[:, None]


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--truth-out", type=Path, required=True)
    args = parser.parse_args()
    cohort, truth = generate(args.n, args.seed)
    _write(cohort, args.out)
    _write(truth, args.truth_out)
    print(f"wrote {args.out} ({len(cohort)} rows) and {args.truth_out} ({len(truth)} rows)")


if __name__ == "__main__":
    main()
