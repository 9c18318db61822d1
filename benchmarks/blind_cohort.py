"""A third, *blind* synthetic cohort with known ground truth (one episode per patient).

Written without reading the project's simulator (``data.simulate``), its models or the other
benchmark generators: only the data contract (docs/data-contract.md), the treatment registry
and the published facts of docs/domain.md were used. Its functional forms are its own, so
scoring the project's models on it checks that they learn structure they were not built
around.

The data-generating process, in plain words:

* **Patients.** Condition first; age, sex, BMI, pain duration, baseline pain and opioid use
  depend on it. One latent distress factor drives the Pain Catastrophizing Scale, PHQ-9 and
  GAD-7 (correlated scores), smoking, low activity and the Opioid Risk Tool score. eGFR falls
  with age and diabetes. Diplotypes are two alleles drawn from ancestry-specific allele
  frequencies (docs/domain.md), with activity values from the CPIC tables.
* **A latent subtype.** Each patient is "centrally sensitised" (nociplastic pain) with a
  probability that rises with fibromyalgia, catastrophizing, anxiety, depression, female sex
  and pain duration. The subtype is drawn but not written to the cohort; the truth averages
  over it (it is part of the outcome's randomness given the recorded features).
* **Response.** Follow-up pain = min(baseline x exp(Z), 10), Z a two-class normal mixture:
  with probability pi (a logistic function of patient x treatment x subtype) the patient is
  a *responder* (Z centred at log(1 - r), r about 0.45-0.6, the treatment's typical relief),
  else a *non-responder* (Z centred near a small placebo-like drop that is larger at high
  baseline pain and at younger ages). pi holds the heterogeneity: condition x treatment
  indications; the subtype (it helps duloxetine, amitriptyline, pregabalin and CBT, hurts
  NSAIDs, opioids, epidurals and spinal cord stimulation); CYP2D6 activity (saturating) for
  tramadol, CYP2C19/CYP2D6 for amitriptyline, OPRM1 G and COMT Met for opioids; tolerance
  from the current opioid dose; smoking (CYP1A2 induction) against duloxetine; depression
  for duloxetine, catastrophizing and anxiety for CBT, anxiety for pregabalin; U-shaped age
  and BMI for physical therapy; shorter pain duration for epidurals; severity, psychology and
  duration for stimulation; and products such as depression x severity in the prognosis.
  ``p_response`` = P(relative reduction >= 0.30) = P(Z <= log 0.7), exact from the normal
  CDF; ``expected_nrs_change`` = E[min(b e^Z, 10)] - b, exact (truncated log-normal mean).
* **Adverse events.** Competing causes with additive hazards: P(event) = 1 - exp(-sum of
  cause rates). NSAID: GI bleeding (prior ulcer, anticoagulant, age, CYP2C9 activity) and
  kidney injury (eGFR); tramadol: CYP2D6 ultrarapid toxicity, misuse (ORT), serotonergic or
  seizure risk with an inhibiting antidepressant; oxycodone: misuse (ORT, smoking) and
  sedation/respiratory events (current dose, age); duloxetine, pregabalin (eGFR), and
  amitriptyline (age, CYP2D6 and CYP2C19 poor metabolism, inhibitor): intolerance;
  procedures and therapies low but nonzero (infection, bleeding with anticoagulants,
  injury). The latent subtype raises drug intolerance (nocebo).
* **Usual care.** A multinomial logit of severity, depression, anxiety, catastrophizing,
  age, prior surgery, current opioid dose, NSAID risk factors (clinicians avoid them),
  plus a clinic effect and a calendar-year trend (fewer opioids, more stimulators), both
  drawn per patient, not written to the cohort and independent of the outcomes; mixed
  with a 2 % floor per eligible treatment (positivity).
* **Missing measurements** depend on recorded features: eGFR is missing about half the time
  under 50 and about one time in ten over 65 (less with diabetes or anticoagulants); PCS
  and the Opioid Risk Tool are often not recorded (ORT mostly recorded when the patient is
  on opioids), PHQ-9, GAD-7, BMI and activity have gaps; the genotype panel is sometimes
  missing ("unknown" CYP diplotypes, empty SNP cells). The truth always uses true values.

Every draw comes from ``np.random.default_rng(seed)``: the same (n, seed) gives identical
frames. Run: ``python benchmarks/blind_cohort.py --n 20000 --seed 1 --out blind.parquet
--truth-out blind_truth.parquet [--summary]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr

from precision_pain.registry import CONDITIONS, eligibility

SIMULATED: tuple[str, ...] = (
    "nsaid", "tramadol", "oxycodone", "duloxetine", "amitriptyline", "pregabalin",
    "physical_therapy", "cbt", "spinal_cord_stimulation", "epidural_steroid",
)
THRESHOLD = 0.30  # IMMPACT moderate relief
LOG_KEEP = np.log(1.0 - THRESHOLD)  # responder iff Z <= log(0.7)
NRS_MAX = 10.0
SD_RESPONDER = 0.30
SD_NONRESPONDER = 0.22
FLOOR = 0.02  # usual-care probability floor per eligible treatment
N_SITES = 14

ANCESTRIES = ("european", "african_american", "east_asian", "latino", "south_asian", "other")
ANCESTRY_P = (0.58, 0.14, 0.06, 0.13, 0.04, 0.05)
CONDITION_P = {"chronic_low_back_pain": 0.30, "lumbar_radiculopathy": 0.17,
               "failed_back_surgery": 0.08, "fibromyalgia": 0.14,
               "diabetic_neuropathy": 0.13, "knee_osteoarthritis": 0.18}
# per condition: mean age, sd age, P(female), log-median BMI, median duration (months),
# mean baseline NRS, P(on opioids)
CONDITION_PROFILE = {
    "chronic_low_back_pain": (52, 14, 0.54, np.log(28.5), 30, 6.1, 0.22),
    "lumbar_radiculopathy": (50, 12, 0.48, np.log(28.5), 14, 6.7, 0.25),
    "failed_back_surgery": (58, 11, 0.50, np.log(29.5), 60, 7.0, 0.55),
    "fibromyalgia": (48, 12, 0.88, np.log(29.0), 60, 6.6, 0.20),
    "diabetic_neuropathy": (63, 10, 0.45, np.log(32.0), 36, 6.0, 0.15),
    "knee_osteoarthritis": (66, 9, 0.62, np.log(31.0), 48, 5.9, 0.18),
}

# Allele frequencies by ancestry (european, african_american, east_asian, latino,
# south_asian; "other" is their mean); docs/domain.md section 2, the normal-function
# remainder split 60/40 between *1 and *2 for CYP2D6.
_CYP2D6_ALLELES = ("*3", "*4", "*5", "*6", "*9", "*10", "*17", "*29", "*41", "*1x2", "*2x2")
_CYP2D6_ACTIVITY = {"*1": 1.0, "*2": 1.0, "*3": 0.0, "*4": 0.0, "*5": 0.0, "*6": 0.0,
                    "*9": 0.25, "*10": 0.25, "*17": 0.5, "*29": 0.5, "*41": 0.25,
                    "*1x2": 2.0, "*2x2": 2.0}
_CYP2D6_FREQ = (
    (.013, .185, .029, .010, .020, .016, .004, .001, .092, .009, .008),
    (.003, .048, .054, .002, .002, .038, .169, .087, .037, .014, .013),
    (.000, .005, .048, .000, .000, .428, .000, .000, .023, .004, .004),
    (.007, .121, .029, .005, .010, .026, .023, .015, .051, .014, .013),
    (.002, .090, .042, .002, .005, .076, .000, .002, .119, .007, .006),
)
_CYP2C9_ALLELES = ("*2", "*3", "*8", "*11")
_CYP2C9_ACTIVITY = {"*1": 1.0, "*2": 0.5, "*3": 0.0, "*8": 0.5, "*11": 0.5}
_CYP2C9_FREQ = ((.13, .07, 0, 0), (.01, .01, .06, .025), (.001, .035, 0, 0),
                (.07, .04, .005, 0), (.04, .11, 0, 0))
_CYP2C19_ALLELES = ("*2", "*3", "*17")
_CYP2C19_FREQ = ((.18, .005, .22), (.18, .003, .24), (.31, .067, .015),
                 (.10, .003, .12), (.34, .005, .14))
_OPRM1_G = (0.15, 0.03, 0.45, 0.20, 0.40)
_COMT_MET = (0.50, 0.33, 0.27, 0.40, 0.45)


def _full_table(freqs, normal=("*1",), split=(1.0,)):
    """(6, K) allele probabilities: the listed alleles, the normal remainder, 'other' row."""
    rows = []
    for row in freqs:
        rest = 1.0 - sum(row)
        rows.append([rest * s for s in split] + list(row))
    table = np.array(rows, dtype=float)
    table = np.vstack([table, table.mean(axis=0)])
    return table / table.sum(axis=1, keepdims=True)


def _draw_alleles(rng, ancestry, table, names):
    """Two alleles per patient (columns) from the ancestry's row of ``table``."""
    cum = np.cumsum(table, axis=1)[ancestry]  # (n, K)
    u = rng.random((len(ancestry), 2))
    idx = (u[:, :, None] > cum[:, None, :]).sum(axis=2)
    idx = np.minimum(idx, len(names) - 1)
    return np.asarray(names, dtype=object)[idx]


def _allele_key(allele: str) -> tuple[int, str]:
    return int(allele[1:].split("x")[0]), allele


def _diplotype(pairs: np.ndarray) -> np.ndarray:
    """'a/b' strings, alleles in star-number order (pairs: (n, 2) allele names)."""
    out = np.empty(len(pairs), dtype=object)
    codes, uniques = pd.factorize(pd.Series(pairs[:, 0] + "|" + pairs[:, 1]))
    table = []
    for u in uniques:
        a, b = sorted(u.split("|"), key=_allele_key)
        table.append(f"{a}/{b}")
    out[:] = np.asarray(table, dtype=object)[codes]
    return out


def _snp(rng, ancestry, freq, minor: str, major: str) -> tuple[np.ndarray, np.ndarray]:
    """Genotype strings like 'A/G' and the minor-allele count."""
    p = np.asarray(freq + (float(np.mean(freq)),))[ancestry]
    alleles = rng.random((len(ancestry), 2)) < p[:, None]
    count = alleles.sum(axis=1)
    letters = np.where(alleles, minor, major)
    return np.char.add(np.char.add(letters[:, 0], "/"), letters[:, 1]).astype(object), count


def _patients(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """True patient features (no missing values), as arrays."""
    conds = np.array(list(CONDITION_P))
    cond = conds[rng.choice(len(conds), size=n, p=list(CONDITION_P.values()))]
    prof = np.array([CONDITION_PROFILE[c] for c in cond], dtype=float)
    anc = rng.choice(len(ANCESTRIES), size=n, p=ANCESTRY_P)

    age_raw = prof[:, 0] + prof[:, 1] * rng.standard_normal(n)
    age = np.clip(np.rint(age_raw), 18, 95).astype(int)
    age = np.minimum(age, 90)  # HIPAA top-coding: 90 means 90 or older
    female = rng.random(n) < prof[:, 2]
    distress = rng.standard_normal(n)  # latent psychological distress
    bmi = np.exp(prof[:, 3] + 0.17 * rng.standard_normal(n) - 0.02 * female)
    bmi = np.round(np.clip(bmi, 15.5, 65.0), 1)
    duration = np.exp(np.log(prof[:, 4]) + 0.9 * rng.standard_normal(n))
    duration = np.round(np.clip(duration, 3.0, 600.0), 1)
    baseline = prof[:, 5] + 0.35 * distress + 1.4 * rng.standard_normal(n)
    baseline = np.clip(np.round(baseline * 2) / 2, 2.0, 10.0)

    def score(mean, sd, top, load):
        latent = load * distress + np.sqrt(1 - load**2) * rng.standard_normal(n)
        raw = mean * np.exp(sd * latent - sd**2 / 2)  # right-skewed, as the scales are
        return np.clip(np.rint(raw), 0, top).astype(int)

    fibro = cond == "fibromyalgia"
    pcs = score(19.0 + 3 * fibro, 0.55, 52, 0.75)
    phq9 = score(8.0 + 2 * fibro, 0.65, 27, 0.8)
    gad7 = score(6.5 + 1.5 * fibro, 0.7, 21, 0.7)
    smoker = rng.random(n) < expit(-1.55 + 0.35 * distress - 0.025 * (age - 50)
                                    + 0.35 * np.isin(cond, ["failed_back_surgery",
                                                            "chronic_low_back_pain"]))
    act_latent = (-0.03 * (age - 55) - 0.06 * (bmi - 29) - 0.35 * distress
                  - 0.4 * smoker + rng.standard_normal(n))
    activity = np.where(act_latent < -0.6, "low",
                        np.where(act_latent < 0.9, "moderate", "high")).astype(object)
    surgery = np.where(cond == "failed_back_surgery", True,
                       rng.random(n) < np.select(
                           [cond == "lumbar_radiculopathy", cond == "chronic_low_back_pain"],
                           [0.15, 0.08], 0.03))
    on_opioid = rng.random(n) < expit(np.log(prof[:, 6] / (1 - prof[:, 6]))
                                      + 0.25 * (baseline - 6.5) + 0.2 * distress)
    mme = np.where(on_opioid, np.exp(np.log(30) + 0.7 * rng.standard_normal(n)), 0.0)
    mme = np.round(np.clip(mme, 0.0, 300.0), 0)
    ort_mean = np.exp(1.05 + 0.3 * distress + 0.35 * smoker - 0.015 * (age - 50)
                      + 0.15 * ~female)
    ort = np.minimum(rng.poisson(ort_mean), 26).astype(int)
    diabetic = cond == "diabetic_neuropathy"
    egfr = 118 - 0.85 * (age - 20) - 14 * diabetic + 14 * rng.standard_normal(n)
    egfr = np.round(np.clip(egfr, 6.0, 145.0), 0)
    ulcer = rng.random(n) < 0.03 + 0.001 * np.maximum(age - 40, 0) + 0.02 * smoker
    anticoag = rng.random(n) < expit(-4.2 + 0.06 * (age - 40) + 0.5 * diabetic)
    inhibitor = rng.random(n) < 0.025 + 0.06 * (phq9 >= 10) + 0.03 * (gad7 >= 10)

    d6 = _draw_alleles(rng, anc, _full_table(_CYP2D6_FREQ, ("*1", "*2"), (0.6, 0.4)),
                       ("*1", "*2", *_CYP2D6_ALLELES))
    c9 = _draw_alleles(rng, anc, _full_table(_CYP2C9_FREQ), ("*1", *_CYP2C9_ALLELES))
    c19 = _draw_alleles(rng, anc, _full_table(_CYP2C19_FREQ), ("*1", *_CYP2C19_ALLELES))
    oprm1, g_count = _snp(rng, anc, _OPRM1_G, "G", "A")
    comt, met_count = _snp(rng, anc, _COMT_MET, "A", "G")

    d6_as = np.vectorize(_CYP2D6_ACTIVITY.get, otypes=[float])(d6).sum(axis=1)
    c9_as = np.vectorize(_CYP2C9_ACTIVITY.get, otypes=[float])(c9).sum(axis=1)
    c19_none = np.isin(c19, ["*2", "*3"]).sum(axis=1)
    c19_inc = (c19 == "*17").sum(axis=1)
    c19_pheno = np.select([c19_none == 2, c19_none == 1, c19_inc == 2, c19_inc == 1],
                          ["PM", "IM", "UM", "RM"], "NM")
    return {
        "condition": cond, "ancestry": anc, "age": age, "female": female,
        "distress": distress, "bmi": bmi, "duration": duration, "baseline": baseline,
        "pcs": pcs, "phq9": phq9, "gad7": gad7, "smoker": smoker, "activity": activity,
        "surgery": surgery, "mme": mme, "ort": ort, "egfr": egfr, "ulcer": ulcer,
        "anticoag": anticoag, "inhibitor": inhibitor,
        "CYP2D6": _diplotype(d6), "CYP2C9": _diplotype(c9), "CYP2C19": _diplotype(c19),
        "OPRM1": oprm1, "COMT": comt, "g_count": g_count, "met_count": met_count,
        "d6_eff": np.where(inhibitor, 0.0, d6_as), "c9_as": c9_as, "c19": c19_pheno,
    }


# --- response -------------------------------------------------------------------------
# Responder-class logit: treatment intercepts, condition x treatment indications and the
# latent subtype's shift (columns in SIMULATED order).
_BASE = np.array([-0.55, -0.60, -0.35, -0.75, -0.80, -0.75, -0.45, -0.95, -0.40, -0.65])
_CONDITION_SHIFT = {
    "chronic_low_back_pain": (0.10, 0.0, 0.0, 0.0, -0.20, 0.0, 0.30, 0.0, -0.30, -0.60),
    "lumbar_radiculopathy": (-0.20, 0.0, 0.0, 0.0, 0.10, 0.15, 0.0, 0.0, -0.10, 0.40),
    "failed_back_surgery": (-0.30, 0.0, 0.0, 0.0, 0.0, 0.10, -0.30, 0.0, 0.55, -0.40),
    "fibromyalgia": (0.0, -0.10, 0.0, 0.35, 0.35, 0.25, 0.20, 0.30, 0.0, 0.0),
    "diabetic_neuropathy": (0.0, 0.20, 0.0, 0.40, 0.40, 0.35, -0.50, -0.20, 0.30, 0.0),
    "knee_osteoarthritis": (0.45, -0.10, -0.30, 0.10, 0.0, 0.0, 0.35, -0.20, 0.0, 0.0),
}
_SUBTYPE_SHIFT = np.array([-0.70, -0.20, -0.90, 0.50, 0.50, 0.35, -0.15, 0.60, -0.80, -0.70])
# Typical relative relief of a responder, per treatment.
_RELIEF = np.array([0.45, 0.48, 0.50, 0.50, 0.50, 0.48, 0.50, 0.45, 0.58, 0.50])


def _std(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "a": (f["age"] - 55) / 15.0, "pcs": (f["pcs"] - 20) / 11.0,
        "phq": (f["phq9"] - 8) / 6.0, "gad": (f["gad7"] - 7) / 5.0,
        "dur": np.log(f["duration"] / 24.0), "bmi": (f["bmi"] - 29) / 6.0,
        "b": (f["baseline"] - 6.5) / 1.5, "mme": np.log1p(f["mme"] / 10.0),
    }


def _subtype_probability(f, z) -> np.ndarray:
    """P(centrally sensitised | features)."""
    cond = f["condition"]
    return expit(-1.35 + 1.7 * (cond == "fibromyalgia") - 0.9 * (cond == "knee_osteoarthritis")
                 - 0.4 * (cond == "lumbar_radiculopathy") + 0.55 * z["pcs"]
                 + 0.35 * z["gad"] + 0.25 * z["phq"] + 0.3 * f["female"] + 0.25 * z["dur"])


def _responder_logit(f, z) -> np.ndarray:
    """(n, T, 2) logit of the responder class; last axis: subtype 0 / 1."""
    n = len(f["age"])
    shift = np.array([_CONDITION_SHIFT[c] for c in CONDITIONS])
    cond_idx = pd.Categorical(f["condition"], categories=CONDITIONS).codes
    eta = np.tile(_BASE, (n, 1)) + shift[cond_idx]
    prognosis = (-0.22 * z["phq"] - 0.18 * z["pcs"] - 0.10 * z["gad"] - 0.25 * f["smoker"]
                 - 0.12 * z["dur"] - 0.15 * np.maximum(z["bmi"], 0) - 0.10 * z["phq"] * z["b"])
    eta += prognosis[:, None]
    d6 = np.minimum(f["d6_eff"], 3.0)
    saturating = d6 / (d6 + 0.4)
    c19 = f["c19"]
    low_activity = f["activity"] == "low"
    high_activity = f["activity"] == "high"
    mods = [
        -0.20 * z["a"] - 0.15 * z["dur"],  # nsaid
        1.1 * (saturating - 2 / 2.4) - 0.25 * f["g_count"] + 0.12 * f["met_count"]
        + 0.15 * z["b"],  # tramadol
        -0.30 * f["g_count"] + 0.15 * f["met_count"] - 0.35 * z["mme"] + 0.20 * z["b"]
        - 0.20 * z["pcs"],  # oxycodone
        0.30 * z["phq"] + 0.10 * z["gad"] - 0.45 * f["smoker"],  # duloxetine
        np.select([c19 == "UM", c19 == "RM", c19 == "IM", c19 == "PM"],
                  [-0.45, -0.25, 0.05, 0.10], 0.0)
        - 0.40 * (f["d6_eff"] > 2.25) - 0.20 * z["a"],  # amitriptyline
        0.25 * z["gad"] + 0.10 * z["b"],  # pregabalin
        -0.25 * (z["a"] + 0.3) ** 2 - 0.20 * z["bmi"] ** 2 - 0.10 * z["bmi"]
        + 0.25 * low_activity - 0.25 * high_activity - 0.30 * z["pcs"]
        - 0.10 * z["dur"],  # physical therapy
        0.45 * z["pcs"] + 0.20 * z["gad"] - 0.15 * z["a"],  # cbt
        0.25 * z["b"] - 0.30 * z["phq"] - 0.25 * z["pcs"] - 0.25 * z["dur"] - 0.20 * z["a"]
        + 0.30 * f["surgery"] * (f["condition"] != "failed_back_surgery"),  # SCS
        -0.45 * z["dur"] - 0.35 * f["surgery"] + 0.10 * z["b"] - 0.10 * z["a"],  # epidural
    ]
    eta += np.column_stack(mods)
    return np.stack([eta, eta + _SUBTYPE_SHIFT], axis=2)


def _outcome_components(f, z):
    """Mixture pieces: responder probability (n,T,2), responder and non-responder log-ratio
    means ((n,T,2) and (n,1,2))."""
    pi = expit(_responder_logit(f, z))
    relief = np.clip(_RELIEF + 0.03 * z["b"][:, None], 0.3, 0.75)
    relief = np.stack([relief, relief - 0.03], axis=2)  # subtype: slightly less relief
    m_resp = np.log(1.0 - relief)
    placebo = (0.06 + 0.025 * z["b"] + 0.04 * expit((40 - f["age"]) / 8.0))
    placebo = np.stack([placebo, placebo - 0.03], axis=1)  # subtype: worse without response
    m_non = np.log(1.0 - placebo)[:, None, :]
    return pi, m_resp, m_non


def _mean_capped(b: np.ndarray, m: np.ndarray, s: float) -> np.ndarray:
    """E[min(b exp(Z), 10)] for Z ~ N(m, s^2) (b broadcast against m)."""
    cap = np.log(NRS_MAX / b)
    below = b * np.exp(m + s**2 / 2) * ndtr((cap - m - s**2) / s)
    return below + NRS_MAX * ndtr(-(cap - m) / s)


# --- adverse events -------------------------------------------------------------------
def _hazards(f, z) -> np.ndarray:
    """(n, T, 2) summed cause-specific hazards; P(event) = 1 - exp(-hazard)."""
    age = f["age"].astype(float)
    egfr = f["egfr"]
    c9 = f["c9_as"]
    c9_factor = np.select([c9 >= 2, c9 >= 1.5, c9 >= 1.0, c9 >= 0.5], [1.0, 1.25, 1.7, 2.3], 3.0)
    d6 = f["d6_eff"]
    renal = np.exp(np.clip((60 - egfr) / 15.0, -2.0, 4.0))
    older = np.exp(0.02 * (age - 55))
    opioid_now = f["mme"] > 0
    nsaid = (0.018 * c9_factor * (1 + 2.5 * f["ulcer"]) * (1 + 1.2 * f["anticoag"])
             * np.exp(0.035 * np.maximum(age - 50, 0)) + 0.010 * renal)
    tramadol = (0.035 * older * np.where(d6 > 2.25, 3.0, 1.0)
                + 0.012 * np.exp(0.15 * np.minimum(f["ort"] - 4, 10)) + 0.03 * f["inhibitor"])
    oxycodone = (0.025 * np.exp(0.15 * np.minimum(f["ort"] - 4, 10)) * (1 + 0.4 * f["smoker"])
                 + 0.02 * (1 + f["mme"] / 40.0) * np.exp(0.03 * np.maximum(age - 60, 0)))
    duloxetine = 0.04 * older + 0.06 * (egfr < 30) + 0.015 * (age >= 65)
    amitriptyline = (0.04 * np.exp(0.035 * (age - 55))
                     * np.select([d6 == 0, d6 < 1.25, d6 > 2.25], [2.2, 1.3, 0.9], 1.0)
                     * np.select([f["c19"] == "PM", f["c19"] == "IM"], [1.5, 1.15], 1.0))
    pregabalin = (0.035 * np.exp(0.025 * (age - 55)) * (60 / np.minimum(egfr, 60)) ** 0.9
                  * (1 + 0.3 * (f["bmi"] > 35)) + 0.015 * opioid_now * (1 + f["mme"] / 50))
    pt = 0.008 * older * (1 + 0.5 * (f["bmi"] > 35)) * (1 + 0.5 * (f["activity"] == "low"))
    cbt = 0.004 * (1 + 0.3 * np.maximum(z["phq"], 0))
    diabetic = f["condition"] == "diabetic_neuropathy"
    scs = (0.035 * (1 + 0.8 * f["smoker"]) * (1 + 0.6 * diabetic) * (1 + 0.8 * f["anticoag"])
           + 0.01 * np.maximum(z["bmi"], 0))
    epidural = 0.012 * (1 + 1.5 * f["anticoag"]) * (1 + 1.0 * diabetic) + 0.005 * f["surgery"]
    lam = np.column_stack([nsaid, tramadol, oxycodone, duloxetine, amitriptyline, pregabalin,
                           pt, cbt, scs, epidural]).astype(float)
    nocebo = np.array([1.35] * 6 + [1.0] * 4)  # subtype: drug intolerance
    return np.stack([lam, lam * nocebo], axis=2)


# --- usual care -----------------------------------------------------------------------
_UC_INTERCEPT = np.array([1.2, 0.3, 0.0, 0.2, -0.5, 0.6, 1.2, -1.3, -2.3, -0.3])


def _usual_care(rng, f, z, eligible) -> np.ndarray:
    """(n, T) treatment probabilities: a multinomial logit with clinic and year effects,
    mixed with a floor of FLOOR per eligible treatment."""
    n = len(f["age"])
    site_effect = rng.normal(0.0, 0.6, size=(N_SITES, len(SIMULATED)))
    site = rng.choice(N_SITES, size=n, p=rng.dirichlet(np.full(N_SITES, 2.0)))
    year = (rng.integers(2014, 2025, size=n) - 2019) / 3.0
    trend = np.array([0.0, -0.2, -0.5, 0.15, -0.1, 0.1, 0.1, 0.2, 0.4, 0.0])
    on_opioid = (f["mme"] > 0).astype(float)
    old = (f["age"] > 65).astype(float)
    u = np.column_stack([
        -0.8 * old - 1.0 * f["ulcer"] - 1.2 * f["anticoag"] - 1.0 * (f["egfr"] < 45)
        - 0.3 * on_opioid,
        0.3 * z["b"] + 0.4 * on_opioid,
        0.5 * z["b"] + 1.5 * on_opioid + 0.4 * f["surgery"] - 0.04 * f["ort"],
        0.5 * z["phq"] + 0.2 * z["gad"],
        -0.6 * z["a"] + 0.2 * (f["condition"] == "fibromyalgia"),
        0.2 * z["gad"] - 0.5 * (f["egfr"] < 30),
        -0.3 * z["a"] - 0.2 * z["bmi"] - 0.3 * z["b"],
        0.5 * z["pcs"] + 0.3 * z["phq"] - 0.4 * z["a"],
        0.6 * z["b"] + 0.8 * f["surgery"] + 0.4 * z["dur"],
        0.3 * z["b"] - 0.2 * z["dur"],
    ]).astype(float)
    u += _UC_INTERCEPT + site_effect[site] + year[:, None] * trend
    u = np.where(eligible, u, -np.inf)
    soft = np.exp(u - u.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    k = eligible.sum(axis=1, keepdims=True)
    return np.where(eligible, FLOOR + (1.0 - FLOOR * k) * soft, 0.0)


def _missing(rng, f) -> dict[str, np.ndarray]:
    """Which measurements are not recorded (True = missing); depends on recorded features."""
    n = len(f["age"])
    age = f["age"]
    routine_labs = (f["condition"] == "diabetic_neuropathy") | f["anticoag"]
    p_egfr = (0.08 + 0.5 * expit(-(age - 52) / 5.0)) * np.where(routine_labs, 0.35, 1.0)
    p_pcs = np.where(np.isin(f["condition"], ["fibromyalgia", "failed_back_surgery"]), 0.15,
                     0.30) + 0.15 * (age > 70)
    p_ort = np.where(f["mme"] > 0, 0.12, 0.45)
    p_phq = 0.08 + 0.06 * (age > 70)
    miss_phq = rng.random(n) < p_phq
    panel = rng.random(n) < 0.035  # no genotype panel
    return {
        "egfr": rng.random(n) < p_egfr,
        "pcs": rng.random(n) < p_pcs,
        "ort": rng.random(n) < p_ort,
        "phq9": miss_phq,
        "gad7": rng.random(n) < np.where(miss_phq, 0.8, 0.10),
        "bmi": rng.random(n) < 0.04 + 0.04 * f["smoker"],
        "activity": rng.random(n) < 0.10,
        "CYP2D6": panel | (rng.random(n) < 0.02),
        "CYP2C9": panel | (rng.random(n) < 0.01),
        "CYP2C19": panel | (rng.random(n) < 0.01),
        "OPRM1": panel | (rng.random(n) < 0.015),
        "COMT": panel | (rng.random(n) < 0.015),
    }


def _truth_arrays(f):
    """Per patient x treatment: p_response, p_adverse_event, expected change (n, T) and the
    mixture pieces used to draw outcomes."""
    z = _std(f)
    w1 = _subtype_probability(f, z)
    w = np.stack([1 - w1, w1], axis=1)[:, None, :]  # (n, 1, 2)
    pi, m_resp, m_non = _outcome_components(f, z)
    p_resp_r = ndtr((LOG_KEEP - m_resp) / SD_RESPONDER)
    p_resp_n = ndtr((LOG_KEEP - m_non) / SD_NONRESPONDER)
    p_response = (w * (pi * p_resp_r + (1 - pi) * p_resp_n)).sum(axis=2)
    b = f["baseline"][:, None, None]
    mean_r = _mean_capped(b, m_resp, SD_RESPONDER)
    mean_n = _mean_capped(b, m_non, SD_NONRESPONDER)
    expected = (w * (pi * mean_r + (1 - pi) * mean_n)).sum(axis=2) - f["baseline"][:, None]
    lam = _hazards(f, z)
    p_ae = (w * -np.expm1(-lam)).sum(axis=2)
    return z, w1, pi, m_resp, m_non, lam, p_response, p_ae, expected


def generate(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cohort, truth): ``n`` patients, one episode each, and the exact per-treatment truth."""
    rng = np.random.default_rng(seed)
    f = _patients(rng, n)
    eligible = eligibility(f["condition"], SIMULATED)
    z, w1, pi, m_resp, m_non, lam, p_response, p_ae, expected = _truth_arrays(f)
    p_uc = _usual_care(rng, f, z, eligible)

    # usual care, then the outcomes of the received treatment
    cum = np.cumsum(p_uc, axis=1)
    t = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), len(SIMULATED) - 1)
    t = np.where(eligible[np.arange(n), t], t, np.argmax(eligible * p_uc, axis=1))
    rows = np.arange(n)
    subtype = (rng.random(n) < w1).astype(int)
    responder = rng.random(n) < pi[rows, t, subtype]
    mean = np.where(responder, m_resp[rows, t, subtype], m_non[rows, 0, subtype])
    sd = np.where(responder, SD_RESPONDER, SD_NONRESPONDER)
    log_ratio = mean + sd * rng.standard_normal(n)
    followup = np.minimum(f["baseline"] * np.exp(log_ratio), NRS_MAX)
    adverse = rng.random(n) < -np.expm1(-lam[rows, t, subtype])

    miss = _missing(rng, f)
    ids = np.char.add("B", np.char.zfill(np.arange(1, n + 1).astype(str), 7)).astype(object)

    def masked(values, key, dtype):
        series = pd.Series(values)
        series = series.astype(dtype)
        return series.mask(miss[key])

    def genotype(values, key, empty):
        return pd.Series(np.where(miss[key], empty, values), dtype=object)

    cohort = pd.DataFrame({
        "patient_id": ids,
        "age": f["age"].astype(int),
        "sex": np.where(f["female"], "F", "M").astype(object),
        "ancestry": np.asarray(ANCESTRIES, dtype=object)[f["ancestry"]],
        "bmi": masked(f["bmi"], "bmi", float),
        "condition": f["condition"].astype(object),
        "pain_duration_months": f["duration"],
        "pain_baseline": f["baseline"],
        "pcs": masked(f["pcs"], "pcs", "Int64"),
        "phq9": masked(f["phq9"], "phq9", "Int64"),
        "gad7": masked(f["gad7"], "gad7", "Int64"),
        "smoker": f["smoker"].astype(bool),
        "activity_level": pd.Series(f["activity"], dtype=object).mask(miss["activity"]),
        "prior_spine_surgery": f["surgery"].astype(bool),
        "baseline_mme": f["mme"],
        "ort_score": masked(f["ort"], "ort", "Int64"),
        "egfr": masked(f["egfr"], "egfr", float),
        "prior_gi_ulcer": f["ulcer"].astype(bool),
        "anticoagulant": f["anticoag"].astype(bool),
        "cyp2d6_inhibitor": f["inhibitor"].astype(bool),
        "CYP2D6": genotype(f["CYP2D6"], "CYP2D6", "unknown"),
        "CYP2C9": genotype(f["CYP2C9"], "CYP2C9", "unknown"),
        "CYP2C19": genotype(f["CYP2C19"], "CYP2C19", "unknown"),
        "OPRM1_rs1799971": genotype(f["OPRM1"], "OPRM1", None),
        "COMT_rs4680": genotype(f["COMT"], "COMT", None),
        "treatment": np.asarray(SIMULATED, dtype=object)[t],
        "pain_followup": followup,
        "adverse_event": adverse.astype(bool),
    })

    n_t = len(SIMULATED)
    truth = pd.DataFrame({
        "patient_id": np.repeat(ids, n_t),
        "treatment": np.tile(np.asarray(SIMULATED, dtype=object), n),
        "eligible": eligible.reshape(-1),
        "p_response": p_response.reshape(-1),
        "p_adverse_event": p_ae.reshape(-1),
        "p_usual_care": p_uc.reshape(-1),
        "expected_nrs_change": expected.reshape(-1),
    })
    return cohort, truth


# --- summary and CLI ------------------------------------------------------------------
def summarize(cohort: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per treatment: episodes, share, observed response and adverse-event rates; prints the
    heterogeneity of the true best treatment (net benefit = p_response - p_adverse_event)."""
    response = (cohort["pain_baseline"] - cohort["pain_followup"]) / cohort["pain_baseline"]
    table = (cohort.assign(response=response >= THRESHOLD)
             .groupby("treatment")
             .agg(episodes=("patient_id", "size"), response=("response", "mean"),
                  adverse_event=("adverse_event", "mean"))
             .reindex(list(SIMULATED)))
    table.insert(1, "share", table["episodes"] / len(cohort))
    net = truth.assign(net=truth["p_response"] - truth["p_adverse_event"])
    wide = net.pivot(index="patient_id", columns="treatment", values="net")
    elig = net.pivot(index="patient_id", columns="treatment", values="eligible")
    wide = wide.loc[cohort["patient_id"], list(SIMULATED)]
    elig = elig.loc[cohort["patient_id"], list(SIMULATED)].to_numpy(bool)
    values = np.where(elig, wide.to_numpy(), -np.inf)
    best = values.argmax(axis=1)
    best_value = values.max(axis=1)
    common = np.bincount(best, minlength=len(SIMULATED)).argmax()
    cond = cohort["condition"].to_numpy()
    differs_cond = np.zeros(len(cohort), bool)
    gain_cond = np.zeros(len(cohort))
    for c in np.unique(cond):
        rows = cond == c
        top = np.bincount(best[rows], minlength=len(SIMULATED)).argmax()
        differs_cond[rows] = best[rows] != top
        means = np.where(elig[rows].all(axis=0), values[rows].mean(axis=0), -np.inf)
        gain_cond[rows] = best_value[rows] - values[rows, means.argmax()]
    everyone = elig.all(axis=0)
    means = np.where(everyone, values.mean(axis=0), -np.inf)
    gain_all = best_value - values[:, means.argmax()]
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"best treatment (net benefit) differs from the most common best "
          f"({SIMULATED[common]}): {np.mean(best != common):.3f}; "
          f"from the most common best of the patient's condition: {differs_cond.mean():.3f}")
    print(f"mean gain of each patient's best over the best one-size-fits-all treatment: "
          f"{gain_all.mean():.4f} (one treatment for everyone: {SIMULATED[means.argmax()]}), "
          f"{gain_cond.mean():.4f} (one treatment per condition)")
    return table


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="patients (one episode each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("data/blind_cohort.parquet"),
                        help="cohort file (.csv or .parquet)")
    parser.add_argument("--truth-out", type=Path,
                        default=Path("data/blind_cohort_truth.parquet"),
                        help="ground-truth file (.csv or .parquet)")
    parser.add_argument("--summary", action="store_true",
                        help="print rates per treatment and the heterogeneity of the truth")
    args = parser.parse_args(argv)
    cohort, truth = generate(args.n, args.seed)
    _write(cohort, args.out)
    _write(truth, args.truth_out)
    print(f"wrote {len(cohort)} episodes to {args.out} and {len(truth)} truth rows "
          f"to {args.truth_out}")
    if args.summary:
        summarize(cohort, truth)


if __name__ == "__main__":
    main()
