"""Synthetic chronic-pain cohort with a known ground truth.

The generator draws patients (features, genotypes), computes every patient's true
probability of response and of a serious adverse event under every registry
treatment from a structural model, assigns one treatment per patient with a
confounded usual-care policy, and draws that episode's outcome from the truth.
One episode per patient. Effect sizes, their sources and the simplifications are
documented in docs/synthetic-cohort.md; the sources are cited beside each table.

Outcome model: relative NRS reduction ``r ~ Normal(mu[i, t], response_sd)``, so
``p_response = P(r >= threshold) = Phi((mu - threshold) / response_sd)`` exactly;
``pain_followup = clip(pain_baseline * (1 - r), 0, 10)`` keeps ``r >= threshold``
equivalent to the derived response for any threshold in (0, 1). The truth also holds
``expected_nrs_change = E[pain_followup] - pain_baseline`` under every treatment (the
continuous outcome; negative = less pain), exact for the clipped normal
(:func:`expected_clipped_change`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy.special import expit, logit, ndtr

from precision_pain.config import SimulateParams
from precision_pain.data import pgx
from precision_pain.registry import CONDITIONS, TREATMENT_NAMES, eligibility

ANCESTRIES: tuple[str, ...] = (
    "european", "african_american", "east_asian", "latino", "south_asian", "other",
)
_REFERENCE_ANCESTRIES = ANCESTRIES[:5]  # 'other' = equal-weight blend of these five

COHORT_COLUMNS: tuple[str, ...] = (
    "patient_id", "age", "sex", "ancestry", "bmi", "condition", "pain_duration_months",
    "pain_baseline", "pcs", "phq9", "gad7", "smoker", "activity_level",
    "prior_spine_surgery", "baseline_mme", "ort_score", "egfr", "prior_gi_ulcer",
    "anticoagulant", "cyp2d6_inhibitor", "CYP2D6", "CYP2C9", "CYP2C19",
    "OPRM1_rs1799971", "COMT_rs4680", "treatment", "pain_followup", "adverse_event",
)
TRUTH_COLUMNS: tuple[str, ...] = (
    "patient_id", "treatment", "eligible", "p_response", "p_adverse_event", "p_usual_care",
    "expected_nrs_change",
)

_F = MappingProxyType  # read-only tables


def _freeze(table: dict) -> Mapping:
    return _F({k: _F(v) if isinstance(v, dict) else v for k, v in table.items()})


# ----------------------------------------------------------------------------- genotypes
# Allele frequencies per reference ancestry. The allele named in _REMAINDER takes
# whatever share is left. CYP2D6: *4, *5, *10, *17, *29, *41 and the *1x2/*2x2 total
# are the CPIC CYP2D6 frequency-table values (Gaedigk 2017, Genet Med 19:69); the
# other no-function alleles (*3/*6/*4x2/*40/*36), *9, the duplication total and the
# share of CPIC "uncertain function" alleles (*22, *43 -> indeterminate) were solved
# so that, with the default 2 % missing genotypes, the phenotype mix reproduces the
# CPIC frequency table's PM/IM/NM/UM shares exactly (docs/synthetic-cohort.md shows
# the fit).
_REMAINDER = "*1"

CYP2D6_FREQ = _freeze({
    "european": {"*2": .25, "*35": .02, "*3": .0174, "*4": .185, "*4x2": .0087, "*5": .029,
                 "*6": .0174, "*9": .0339, "*10": .016, "*17": .004, "*29": .001, "*41": .092,
                 "*1x2": .0102, "*2x2": .0101, "*22": .0057, "*43": .0056},
    "african_american": {"*2": .20, "*3": .0102, "*4": .048, "*4x2": .0102, "*5": .054,
                         "*6": .0102, "*40": .0206, "*9": .0141, "*10": .038, "*17": .169,
                         "*29": .087, "*41": .037, "*1x2": .0143, "*2x2": .0142,
                         "*22": .0041, "*43": .0041},
    "east_asian": {"*2": .12, "*4": .005, "*5": .048, "*6": .0056, "*36": .0318, "*9": .028,
                   "*10": .428, "*41": .023, "*1x2": .0057, "*2x2": .0057, "*22": .0111,
                   "*43": .0111},
    "latino": {"*2": .25, "*35": .02, "*3": .0112, "*4": .121, "*4x2": .0055, "*5": .029,
               "*6": .0112, "*9": .0166, "*10": .026, "*17": .023, "*29": .015, "*41": .051,
               "*1x2": .0149, "*2x2": .0148, "*22": .0046, "*43": .0046},
    "south_asian": {"*2": .25, "*3": .0098, "*4": .090, "*4x2": .0049, "*5": .042,
                    "*6": .0098, "*9": .0003, "*10": .076, "*29": .002, "*41": .119,
                    "*1x2": .0064, "*2x2": .0064, "*22": .0211, "*43": .0211},
})
# CYP2C9: *2, *3 from Cespedes-Garro 2015 (Expert Opin Drug Metab Toxicol 11:1893);
# African-ancestry *5/*6/*8/*11 and the Latino/South Asian *2 are approx. CPIC
# frequency-table values.
CYP2C9_FREQ = _freeze({
    "european": {"*2": .14, "*3": .07},
    "african_american": {"*2": .01, "*3": .005, "*5": .01, "*6": .006, "*8": .06, "*11": .024},
    "east_asian": {"*2": .001, "*3": .03},
    "latino": {"*2": .08, "*3": .04},
    "south_asian": {"*2": .04, "*3": .12},
})
# CYP2C19 (PMC5872082 Table 3, EUR/AFR/EAS/SAS/AMR): *2 18/18/31/34/10 %,
# *3 6.7 % East Asian (<0.5 % elsewhere), *17 22/24/1.5/14/12 %.
CYP2C19_FREQ = _freeze({
    "european": {"*2": .18, "*3": .002, "*17": .22},
    "african_american": {"*2": .18, "*3": .003, "*17": .24},
    "east_asian": {"*2": .31, "*3": .067, "*17": .015},
    "latino": {"*2": .10, "*3": .002, "*17": .12},
    "south_asian": {"*2": .34, "*3": .004, "*17": .14},
})
# Minor-allele frequencies: OPRM1 rs1799971 G (Hwang 2014: ~15 % European, 40-60 %
# East Asian carriers); COMT rs4680 A = Met (Rakvag 2005: ~50 % European, 20-30 %
# East Asian). Other ancestries approx. (1000 Genomes scale).
OPRM1_G_FREQ = _F({"european": .15, "african_american": .03, "east_asian": .42,
                   "latino": .22, "south_asian": .40})
COMT_MET_FREQ = _F({"european": .50, "african_american": .30, "east_asian": .27,
                    "latino": .38, "south_asian": .43})
# Genotype spelling by allele count: OPRM1 by count of G, COMT by count of A (Met).
_OPRM1_BY_G = np.array(["A/A", "A/G", "G/G"], dtype=object)
_COMT_BY_MET = np.array(["G/G", "G/A", "A/A"], dtype=object)


def _allele_table(freqs: Mapping[str, Mapping[str, float]]) -> tuple[list[str], np.ndarray]:
    """Allele names and an (ancestry x allele) probability matrix; 'other' = mean of five."""
    alleles = [_REMAINDER, *sorted({a for f in freqs.values() for a in f} - {_REMAINDER})]
    rows = []
    for ancestry in _REFERENCE_ANCESTRIES:
        row = np.array([freqs[ancestry].get(a, 0.0) for a in alleles])
        row[alleles.index(_REMAINDER)] = 1.0 - row.sum()
        rows.append(row)
    matrix = np.vstack([*rows, np.mean(rows, axis=0)])
    if (matrix < 0).any():
        raise ValueError("allele frequencies exceed 1 for some ancestry")
    return alleles, matrix


def _draw_diplotypes(anc: np.ndarray, freqs: Mapping, rng: np.random.Generator) -> np.ndarray:
    """Two alleles per patient from the ancestry's frequencies, as canonical strings."""
    alleles, matrix = _allele_table(freqs)
    cdf = np.cumsum(matrix, axis=1)[anc]
    k = len(alleles)
    pick = [np.minimum((rng.random(len(anc))[:, None] > cdf).sum(1), k - 1) for _ in range(2)]
    pairs = np.array(["/".join(pgx.normalize_diplotype(f"{a}/{b}") or ())
                      for a in alleles for b in alleles], dtype=object)
    return pairs[pick[0] * k + pick[1]]


def _draw_snp(anc: np.ndarray, freq: Mapping[str, float], rng: np.random.Generator
              ) -> np.ndarray:
    p = np.array([*(freq[a] for a in _REFERENCE_ANCESTRIES),
                  np.mean([freq[a] for a in _REFERENCE_ANCESTRIES])])[anc]
    return rng.binomial(2, p)


def draw_genotypes(ancestry: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Complete genotype columns (no missing values) for ancestry codes (index into ANCESTRIES)."""
    return pd.DataFrame({
        "CYP2D6": _draw_diplotypes(ancestry, CYP2D6_FREQ, rng),
        "CYP2C9": _draw_diplotypes(ancestry, CYP2C9_FREQ, rng),
        "CYP2C19": _draw_diplotypes(ancestry, CYP2C19_FREQ, rng),
        "OPRM1_rs1799971": _OPRM1_BY_G[_draw_snp(ancestry, OPRM1_G_FREQ, rng)],
        "COMT_rs4680": _COMT_BY_MET[_draw_snp(ancestry, COMT_MET_FREQ, rng)],
    })


def mask_genotypes(genotypes: pd.DataFrame, rate: float, rng: np.random.Generator
                   ) -> pd.DataFrame:
    """Genotypes as reported: a new frame with a share ``rate`` per column missing."""
    out = {}
    for column in genotypes.columns:
        values = genotypes[column].to_numpy(copy=True)
        missing = rng.random(len(values)) < rate
        star = column.startswith("CYP")
        token = np.where(rng.random(len(values)) < 0.5, "unknown", "") if star else ""
        values[missing] = token[missing] if star else token
        out[column] = values
    return pd.DataFrame(out, index=genotypes.index)


def mask_measurements(cohort: pd.DataFrame, rates: dict[str, float], seed: int,
                      mechanism: str = "mcar") -> pd.DataFrame:
    """The cohort with a share ``rates[column]`` of each measurement not recorded (NaN).

    ``mechanism`` "mcar": missing completely at random; "mar": missing at random given the
    recorded features (:data:`RECORDING_DRIVERS`: who goes unrecorded follows age, the
    condition, the opioid dose or the pain severity), each column's share still
    ``rates[column]`` on average. Drawn from a stream of its own (seeded by ``seed``), so the
    cohort is otherwise unchanged; the ground truth keeps the true values.
    """
    if mechanism not in MISSINGNESS_MECHANISMS:
        raise ValueError(f"unknown missingness mechanism {mechanism!r}; valid: "
                         f"{', '.join(MISSINGNESS_MECHANISMS)}")
    if not any(rates.values()):
        return cohort
    rng = np.random.default_rng([seed, _MEASUREMENT_STREAM])
    out = cohort.copy()
    for column in sorted(rates):
        u = rng.random(len(out))
        if mechanism == "mar":
            missing = u < _recording_gaps(cohort, column, rates[column])
        else:
            missing = u < rates[column]
        values = out[column]
        numeric = pd.api.types.is_numeric_dtype(values)
        out[column] = (values.astype("float64") if numeric else values).mask(missing)
    return out


MISSINGNESS_MECHANISMS: tuple[str, ...] = ("mcar", "mar")

# simulate.missing_measurement_mechanism "mar": per measurement, a shift of the log-odds of
# the value going unrecorded, from features that are always recorded. Tests and scores are
# taken when clinically prompted, so their absence tells something about the patient
# ("informative presence"; Agniel, Kohane & Weber, BMJ 2018;361:k1479): eGFR is ordered for
# older and diabetic patients, the Opioid Risk Tool when opioids are in question, the
# psychological questionnaires and the activity level when pain is severe; BMI is missing a
# little more often for younger patients. The directions are plausible patterns, not
# estimates from data; the sizes are this project's choice.
RECORDING_DRIVERS: Mapping[str, Callable[[pd.DataFrame], np.ndarray]] = _freeze({
    "egfr": lambda c: -(c["age"].to_numpy(float) - 55) / 12
    - 1.0 * (c["condition"] == "diabetic_neuropathy").to_numpy(),
    "ort_score": lambda c: 1.5 * (c["baseline_mme"].to_numpy(float) <= 0),
    "pcs": lambda c: -(c["pain_baseline"].to_numpy(float) - 6) / 1.5,
    "phq9": lambda c: -(c["pain_baseline"].to_numpy(float) - 6) / 1.5,
    "gad7": lambda c: -(c["pain_baseline"].to_numpy(float) - 6) / 1.5,
    "activity_level": lambda c: -(c["pain_baseline"].to_numpy(float) - 6) / 3,
    "bmi": lambda c: -(c["age"].to_numpy(float) - 55) / 24,
})


def _recording_gaps(cohort: pd.DataFrame, column: str, rate: float) -> np.ndarray:
    """(n,) P(``column`` not recorded) = expit(b + driver), with b set (by bisection) so that
    the mean is ``rate``."""
    if rate <= 0:
        return np.zeros(len(cohort))
    shift = np.asarray(RECORDING_DRIVERS[column](cohort), dtype=float)
    low, high = -30.0, 30.0
    for _ in range(100):
        mid = (low + high) / 2
        if expit(mid + shift).mean() < rate:
            low = mid
        else:
            high = mid
    return expit((low + high) / 2 + shift)


_MEASUREMENT_STREAM = 0x6E6F7472  # "notr": not recorded


# ------------------------------------------------------------------------------ patients
# Condition mix of a chronic-pain clinic (approx.) and, per condition, share female,
# mean age and share with prior spine surgery (failed back surgery = all, by definition).
CONDITION_PROFILE = _freeze({
    #                         share  female  age  prior_surgery
    "chronic_low_back_pain": (0.33, 0.55, 52, 0.06),
    "lumbar_radiculopathy": (0.15, 0.48, 50, 0.15),
    "failed_back_surgery": (0.08, 0.50, 57, 1.00),
    "fibromyalgia": (0.14, 0.85, 47, 0.03),
    "diabetic_neuropathy": (0.14, 0.45, 63, 0.03),
    "knee_osteoarthritis": (0.16, 0.60, 66, 0.03),
})


def _check_ancestry_mix(mix: Mapping[str, float]) -> None:
    unknown = sorted(set(mix) - set(ANCESTRIES))
    if unknown:
        raise ValueError(f"simulate.ancestry_mix: unknown ancestry {', '.join(unknown)}; "
                         f"valid: {', '.join(ANCESTRIES)}")


def _draw_demographics(n: int, mix: Mapping[str, float], rng: np.random.Generator
                       ) -> dict[str, np.ndarray]:
    _check_ancestry_mix(mix)
    profile = np.array([CONDITION_PROFILE[c] for c in CONDITIONS])
    shares = [mix.get(a, 0.0) for a in ANCESTRIES]
    cond = rng.choice(len(CONDITIONS), n, p=profile[:, 0] / profile[:, 0].sum())
    age_raw = rng.normal(profile[cond, 2], 13.0)
    return {
        "cond": cond,
        "ancestry": rng.choice(len(ANCESTRIES), n, p=np.array(shares) / sum(shares)),
        "female": rng.random(n) < profile[cond, 1],
        "age": np.clip(np.rint(age_raw), 18, 90).astype(np.int64),  # 90 = 90 or older
        "prior_spine_surgery": rng.random(n) < profile[cond, 3],
    }


def _clip_int(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


def _draw_psychology(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """PHQ-9, GAD-7 and PCS share a latent distress factor (correlation about 0.5-0.6)."""
    distress = rng.normal(size=n)
    return {
        "distress": distress,
        "phq9": _clip_int(7 + 4.5 * distress + rng.normal(0, 3.0, n), 0, 27),
        "gad7": _clip_int(6 + 3.5 * distress + rng.normal(0, 2.8, n), 0, 21),
        "pcs": _clip_int(22 + 8.0 * distress + rng.normal(0, 7.0, n), 0, 52),
    }


def _draw_clinical(d: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, age, cond = len(d["age"]), d["age"], d["cond"]
    dpn = cond == CONDITIONS.index("diabetic_neuropathy")
    koa = cond == CONDITIONS.index("knee_osteoarthritis")
    bmi = np.exp(rng.normal(np.log(28.5) + 0.08 * dpn + 0.06 * koa, 0.18, n))
    activity_latent = rng.normal(size=n) - 0.06 * (bmi - 28) - 0.02 * (age - 50) \
        - 0.3 * d["distress"]
    smoker = rng.random(n) < expit(-1.5 + 0.35 * d["distress"] - 0.02 * (age - 50))
    duration = np.exp(rng.normal(np.log(30) + 0.01 * (age - 50), 0.9, n))
    baseline = _clip_int(6.3 + 0.45 * d["distress"] + rng.normal(0, 1.4, n), 3, 10)
    return {
        "bmi": np.round(np.clip(bmi, 15, 60), 1),
        "activity": np.digitize(activity_latent, [-0.6, 0.8]),  # 0 low, 1 moderate, 2 high
        "smoker": smoker,
        "duration": np.round(np.clip(duration, 3, 600), 1),
        "baseline": baseline.astype(float),
        # eGFR falls about 1 mL/min per year after 40; diabetes lowers it further (approx.)
        "egfr": np.round(np.clip(rng.normal(118 - 0.95 * (age - 30) - 15 * dpn, 16), 5, 150), 1),
    }


def _draw_ort(d: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Opioid Risk Tool (Webster 2005) from simulated item histories, sex-specific weights."""
    n, female = len(d["age"]), d["female"]
    own_abuse = rng.random(n) < expit(-1.9 + 0.9 * d["smoker"] + 0.5 * d["distress"])
    second_substance = own_abuse & (rng.random(n) < 0.3)
    family_abuse = rng.random(n) < 0.25
    other_psych = rng.random(n) < 0.08  # ADD, OCD, bipolar, schizophrenia
    abuse_as_child = female & (rng.random(n) < 0.08)
    family_points = np.where(female, rng.choice([1, 2, 4], n), rng.choice([3, 3, 4], n))
    return (own_abuse * rng.choice([3, 4, 5], n) + second_substance * rng.choice([3, 4], n)
            + family_abuse * family_points + ((d["age"] >= 16) & (d["age"] <= 45))
            + 3 * abuse_as_child + np.maximum(1 * (d["phq9"] >= 10), 2 * other_psych)
            ).astype(np.int64)


def _draw_medication(d: dict[str, np.ndarray], rng: np.random.Generator
                     ) -> dict[str, np.ndarray]:
    """Current opioid dose rising with ORT and pain, ulcer/anticoagulant, co-medication."""
    n, age, ort = len(d["age"]), d["age"], _draw_ort(d, rng)
    on_opioid = rng.random(n) < expit(-0.9 + 0.25 * (d["baseline"] - 6.3) + 0.15 * (ort - 3)
                                      + 0.6 * d["prior_spine_surgery"])
    mme = np.exp(rng.normal(np.log(22) + 0.08 * ort + 0.2 * np.log(d["duration"] / 30), 0.7, n))
    return {
        "ort": np.clip(ort, 0, 26),
        "mme": np.where(on_opioid, np.round(np.clip(mme, 2.5, 400), 1), 0.0),
        "ulcer": rng.random(n) < expit(-3.4 + 0.03 * (age - 50) + 0.5 * d["smoker"]),
        "anticoag": rng.random(n) < expit(-3.3 + 0.06 * (age - 50)),
        # strong CYP2D6 inhibitors are mostly antidepressants (fluoxetine, paroxetine,
        # bupropion; Cicali 2021, Clin Pharmacol Ther 110:677): more likely with depression
        "inhibitor": rng.random(n) < expit(-3.0 + 0.15 * (d["phq9"] - 7)),
    }


def _draw_patients(n: int, params: SimulateParams, rng: np.random.Generator) -> pd.DataFrame:
    """Patient features and complete (unmasked) genotypes, contract column names."""
    d = _draw_demographics(n, params.ancestry_mix, rng)
    d |= _draw_psychology(n, rng)
    d |= _draw_clinical(d, rng)
    d |= _draw_medication(d, rng)
    width = max(7, len(str(n)))
    features = pd.DataFrame({
        "patient_id": np.char.add("P", np.char.zfill(np.arange(1, n + 1).astype(str), width)
                                  ).astype(object),
        "age": d["age"],
        "sex": np.where(d["female"], "F", "M").astype(object),
        "ancestry": np.array(ANCESTRIES, dtype=object)[d["ancestry"]],
        "bmi": d["bmi"],
        "condition": np.array(CONDITIONS, dtype=object)[d["cond"]],
        "pain_duration_months": d["duration"],
        "pain_baseline": d["baseline"],
        "pcs": d["pcs"], "phq9": d["phq9"], "gad7": d["gad7"],
        "smoker": d["smoker"],
        "activity_level": np.array(["low", "moderate", "high"], dtype=object)[d["activity"]],
        "prior_spine_surgery": d["prior_spine_surgery"],
        "baseline_mme": d["mme"], "ort_score": d["ort"], "egfr": d["egfr"],
        "prior_gi_ulcer": d["ulcer"], "anticoagulant": d["anticoag"],
        "cyp2d6_inhibitor": d["inhibitor"],
    })
    return pd.concat([features, draw_genotypes(d["ancestry"], rng)], axis=1)


# ------------------------------------------------------------------------ structural model
def _pgx_modifiers(p: pd.DataFrame) -> dict[str, pd.Series]:
    """Pharmacogenomic modifiers; CYP2D6 uses the phenoconverted (effective) phenotype."""
    eff, c19, c9 = p["cyp2d6_effective_phenotype"], p["cyp2c19_phenotype"], p["cyp2c9_phenotype"]
    return {
        "d6_pm": eff == "PM", "d6_im": eff == "IM", "d6_um": eff == "UM",
        "c19_pm": c19 == "PM", "c19_rapid": c19.isin(["RM", "UM"]),
        "c9_pm": c9 == "PM", "c9_im": c9 == "IM",
        "oprm1_g": p["oprm1_g_count"].fillna(0), "comt_metmet": p["comt_met_count"] == 2,
    }


def _clinical_modifiers(p: pd.DataFrame) -> dict[str, pd.Series]:
    """Clinical modifiers (0/1 flags) and centred continuous prognostic terms."""
    age, egfr, mme, ort = p["age"], p["egfr"], p["baseline_mme"], p["ort_score"]
    activity = p["activity_level"]
    return {
        "pcs_high": p["pcs"] > 30, "depressed": p["phq9"] >= 10, "anxious": p["gad7"] >= 10,
        "low_activity": activity == "low", "high_activity": activity == "high",
        "obese": p["bmi"] >= 35, "smoker": p["smoker"], "surgery": p["prior_spine_surgery"],
        "on_opioid": mme > 0, "mme_50_99": (mme >= 50) & (mme < 100), "mme_100": mme >= 100,
        "ort_moderate": (ort >= 4) & (ort <= 7), "ort_high": ort >= 8,
        "ulcer": p["prior_gi_ulcer"], "anticoag": p["anticoagulant"],
        "age_over_70": age > 70, "egfr_lt60": egfr < 60, "egfr_lt30": egfr < 30,
        "long_duration": p["pain_duration_months"] >= 60,
        "baseline_c": p["pain_baseline"] - 6.5, "young_c": (50 - age) / 10,
        "phq9_c": (p["phq9"] - 7) / 5, "gad7_c": (p["gad7"] - 6) / 5,
        "pcs_c": (p["pcs"] - 22) / 10, "log_duration_c": np.log2(p["pain_duration_months"] / 30),
    }


def _modifiers(patients: pd.DataFrame) -> pd.DataFrame:
    """Effect-modifier features, derived from contract columns only, as floats."""
    annotated = pgx.annotate_pgx(patients)
    cols = _pgx_modifiers(annotated) | _clinical_modifiers(annotated)
    return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in cols.items()},
                        index=patients.index)


# Placebo-like mean relative NRS reduction and prognostic modifiers, shared by every
# treatment: placebo >= 50 % relief 14-26 % (Freeman 2015, Hauser 2011), larger when
# younger and at higher baseline pain; depression, anxiety, catastrophizing, smoking,
# obesity, long duration and prior spine surgery predict worse outcomes (Williams 2012,
# Cochrane CD007407; sizes approx.).
PLACEBO_MEAN = 0.12
PROGNOSTIC = _F({
    "baseline_c": 0.02, "young_c": 0.012, "phq9_c": -0.03, "gad7_c": -0.015, "pcs_c": -0.012,
    "smoker": -0.03, "obese": -0.02, "log_duration_c": -0.015, "surgery": -0.03,
})

# Mean gain in relative NRS reduction over placebo, by treatment and condition (order of
# CONDITIONS: CLBP, radiculopathy, failed back surgery, fibromyalgia, diabetic
# neuropathy, knee OA). With response_sd 0.3, +0.1 adds about 13 points of response.
BENEFIT = _F({
    # Enthoven 2016: -0.3 NRS in CLBP; knee OA larger (approx.)
    "nsaid": (0.05, 0.03, 0.02, 0.0, 0.0, 0.09),
    # Finnerup 2015: NNT 4.7 neuropathic (about +0.2 unshrunk); SNRI action of the parent
    # drug adds in fibromyalgia; Stamer 2003: 25-point response gap PM vs normal
    "tramadol": (0.10, 0.14, 0.12, 0.09, 0.18, 0.10),
    # Busse 2018: -0.69 NRS non-cancer pain; Finnerup NNT 4.3 neuropathic
    "oxycodone": (0.09, 0.12, 0.11, 0.02, 0.15, 0.08),
    # Finnerup NNT 6.4; Lunn 2009 diabetic neuropathy RR 1.65; fibromyalgia
    "duloxetine": (0.06, 0.06, 0.05, 0.13, 0.15, 0.07),
    # Finnerup NNT 3.6 neuropathic (largest drug effect)
    "amitriptyline": (0.03, 0.10, 0.08, 0.13, 0.20, 0.02),
    # Finnerup NNT 7.7; Derry 2016 fibromyalgia 39-43 % vs 28 %
    "pregabalin": (0.01, 0.07, 0.06, 0.10, 0.12, 0.0),
    # Hayden 2021 exercise in CLBP about -1.5 NRS vs no treatment; knee OA similar (approx.)
    "physical_therapy": (0.15, 0.06, 0.05, 0.07, 0.03, 0.14),
    # Williams 2012: SMD -0.2 vs usual care; the catastrophizing gain is a modifier below
    "cbt": (0.03, 0.03, 0.03, 0.04, 0.02, 0.02),
    # Neurofeedback in fibromyalgia: small RCTs report pain reductions (Kayiran 2010, n = 36,
    # vs escitalopram); the meta-analysis of chronic-pain trials (Patel 2020) rates the
    # evidence very low. Set near CBT, below the drugs (approx.); other conditions: not used
    "neurofeedback": (0.0, 0.0, 0.0, 0.05, 0.0, 0.0),
    # Kumar 2008 (PROCESS) 48 % vs 9 % >= 50 % leg-pain relief after failed back surgery;
    # neuropathic/radicular pain smaller (Kapural 2015 SENZA back pain, approx.)
    "spinal_cord_stimulation": (0.02, 0.11, 0.30, 0.0, 0.14, 0.0),
    # Chou 2015: small, short-lived (-0.75 NRS) in radicular pain only; little left at 12 wk
    "epidural_steroid": (0.0, 0.06, 0.01, 0.0, 0.0, 0.0),
})

# Relative change of the BENEFIT above by modifier: benefit x max(0, 1 + sum).
BENEFIT_SCALE = _freeze({
    # CPIC 2021 (Crews): tramadol needs CYP2D6 to form O-desmethyltramadol: little
    # analgesia in (phenoconverted) PMs, less in IMs; Stamer 2003: non-response 47 % in
    # PMs vs 22 % in extensive metabolizers
    "tramadol": {"d6_pm": -0.9, "d6_im": -0.3},
    # CPIC 2016 (Hicks): CYP2D6 UM and CYP2C19 RM/UM: low amitriptyline levels
    "amitriptyline": {"d6_um": -0.4, "c19_rapid": -0.15},
})

# Additive changes of the mean relative reduction by effect modifier, per treatment.
BENEFIT_MODIFIERS = _freeze({
    # Hwang 2014 OPRM1 G SMD -0.18 (small); Rakvag 2005 COMT Met/Met needs less morphine
    "tramadol": {"oprm1_g": -0.02, "comt_metmet": 0.03, "on_opioid": -0.02},
    # opioid-tolerant patients gain less from a switch (approx.)
    "oxycodone": {"oprm1_g": -0.025, "comt_metmet": 0.04, "mme_50_99": -0.03, "mme_100": -0.05},
    "duloxetine": {"depressed": 0.04, "anxious": 0.02},
    # pregabalin is also an anxiolytic (approved for generalized anxiety in the EU; approx.)
    "pregabalin": {"anxious": 0.04},
    # exercise works less with low activity and obesity (adherence; approx.)
    "physical_therapy": {"low_activity": -0.07, "obese": -0.06, "high_activity": 0.02},
    # Williams 2012: larger effect on catastrophizing; PCS > 30 clinically relevant
    "cbt": {"pcs_high": 0.12, "depressed": 0.02},
    # psychological comorbidity predicts poor SCS outcome (screening practice; approx.)
    "spinal_cord_stimulation": {"depressed": -0.06, "smoker": -0.03},
    # epidural steroids help early radicular pain more than long-standing pain (approx.)
    "epidural_steroid": {"long_duration": -0.03},
})

# Probability of a serious treatment-related adverse event within 12 weeks at the
# reference patient, and log odds ratios by modifier.
HARM_BASE = _F({
    "nsaid": 0.02, "tramadol": 0.03, "oxycodone": 0.04, "duloxetine": 0.02,
    "amitriptyline": 0.035, "pregabalin": 0.03, "physical_therapy": 0.005, "cbt": 0.002,
    # Kumar 2008: complications incl. lead migration/infection; serious about 6 % (approx.)
    "spinal_cord_stimulation": 0.06, "epidural_steroid": 0.015,
    # non-invasive; reported effects transient (headache, fatigue), serious ones rare (approx.)
    "neurofeedback": 0.002,
})
_L = math.log
HARM_MODIFIERS = _freeze({
    # ACG 2009 GI-bleed risk order: prior ulcer, anticoagulant, age > 70; CPIC 2020
    # CYP2C9 poor function raises exposure; KDIGO: avoid at eGFR < 30, caution < 60
    "nsaid": {"ulcer": _L(4.0), "anticoag": _L(3.0), "age_over_70": _L(2.0), "c9_pm": _L(3.0),
              "c9_im": _L(1.4), "egfr_lt60": _L(1.8), "egfr_lt30": _L(3.0)},
    # CPIC 2021: CYP2D6 UM -> toxicity (avoid); misuse risk with ORT (Webster 2005)
    "tramadol": {"d6_um": _L(4.0), "age_over_70": _L(1.8), "ort_moderate": _L(1.5),
                 "ort_high": _L(2.5), "egfr_lt30": _L(2.0)},
    # Vowles 2015 misuse 21-29 %; Dunn 2010 overdose HR 3.7 (50-99 MME), 8.9 (>= 100)
    "oxycodone": {"ort_moderate": _L(2.0), "ort_high": _L(4.0), "mme_50_99": _L(2.0),
                  "mme_100": _L(3.5), "age_over_70": _L(1.5), "egfr_lt30": _L(1.5)},
    "duloxetine": {"age_over_70": _L(1.5), "anticoag": _L(1.5)},
    # CPIC 2016 (Hicks): CYP2D6 PM and CYP2C19 PM raise exposure; anticholinergic in old age
    "amitriptyline": {"d6_pm": _L(3.0), "d6_um": _L(1.3), "c19_pm": _L(2.0),
                      "age_over_70": _L(2.5)},
    # renal dose adjustment (pregabalin US prescribing information); respiratory
    # depression with opioids
    "pregabalin": {"egfr_lt60": _L(2.0), "egfr_lt30": _L(2.0), "age_over_70": _L(1.7),
                   "on_opioid": _L(1.8)},
    "spinal_cord_stimulation": {"smoker": _L(1.5)},
    "epidural_steroid": {"anticoag": _L(3.0)},
})

# Usual care: clinicians' habits (log-weights by condition, CONDITIONS order) plus
# confounders they act on. They never see genotypes.
USUAL_CARE_BASE = _F({
    "nsaid": (1.0, 0.5, 0.0, 0.0, 0.0, 1.2),
    "tramadol": (0.3, 0.3, 0.4, 0.0, 0.0, 0.4),
    "oxycodone": (0.0, 0.0, 0.6, 0.0, -0.3, -0.2),
    "duloxetine": (-0.3, -0.5, -0.3, 0.8, 0.8, -0.5),
    "amitriptyline": (-0.6, -0.3, -0.3, 0.6, 0.3, 0.0),
    "pregabalin": (0.0, 0.8, 0.6, 0.8, 1.0, 0.0),
    "physical_therapy": (0.8, 0.3, -0.2, 0.2, -0.8, 0.7),
    "cbt": (-0.8, -1.0, -0.8, -0.3, -1.2, -1.5),
    "spinal_cord_stimulation": (-2.5, -1.5, -0.3, 0.0, -2.0, 0.0),
    "epidural_steroid": (-0.8, 0.6, -0.2, 0.0, 0.0, 0.0),
    # rarely offered in usual care (approx.); below every other option's score
    "neurofeedback": (-3.0, -3.0, -3.0, -1.5, -3.0, -3.0),
})

# Registry treatments simulated only when simulate.optional_treatments names them, so the
# default cohort (and every default metric) stays as it was before they joined the registry.
OPT_IN_TREATMENTS: tuple[str, ...] = ("neurofeedback",)


def simulated_treatments(optional: Sequence[str] = ()) -> tuple[str, ...]:
    """Registry treatments the simulator uses: all but the opt-in ones not in ``optional``."""
    unknown = [t for t in optional if t not in OPT_IN_TREATMENTS]
    if unknown:
        raise ValueError(f"simulate.optional_treatments: {', '.join(map(repr, unknown))} not "
                         f"opt-in; valid: {', '.join(OPT_IN_TREATMENTS)}")
    return tuple(t for t in TREATMENT_NAMES if t not in OPT_IN_TREATMENTS or t in optional)
USUAL_CARE_MODIFIERS = _freeze({
    "nsaid": {"ulcer": -1.0, "anticoag": -0.8, "egfr_lt60": -0.6, "age_over_70": -0.3},
    "tramadol": {"baseline_c": 0.15, "on_opioid": 0.4},
    "oxycodone": {"baseline_c": 0.35, "on_opioid": 1.2, "mme_50_99": 0.5, "mme_100": 0.8},
    "duloxetine": {"depressed": 0.5},
    "amitriptyline": {"age_over_70": -0.8},
    "cbt": {"pcs_high": 0.5, "depressed": 0.3},
    "spinal_cord_stimulation": {"surgery": 0.5, "baseline_c": 0.2},
    "epidural_steroid": {"baseline_c": 0.1},
})


def _coefficients(table: Mapping[str, Mapping[str, float]], features: pd.Index,
                  names: Sequence[str]) -> np.ndarray:
    """(feature x treatment) matrix from a per-treatment {feature: coefficient} table."""
    out = np.zeros((len(features), len(names)))
    for j, name in enumerate(names):
        for feature, coef in table.get(name, {}).items():
            out[features.get_loc(feature), j] = coef
    return out


def _by_condition(table: Mapping[str, tuple[float, ...]], cond: np.ndarray,
                  names: Sequence[str]) -> np.ndarray:
    """(patient x treatment) values of a per-treatment, per-condition table."""
    return np.column_stack([np.asarray(table[t])[cond] for t in names])


def _prognosis(z: pd.DataFrame) -> np.ndarray:
    """(n,) placebo-like mean relative NRS reduction, shared by every treatment."""
    return PLACEBO_MEAN + z[list(PROGNOSTIC)].to_numpy() @ np.array(list(PROGNOSTIC.values()))


def _gains(z: pd.DataFrame, cond: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(n, T) gain in mean relative NRS reduction over placebo, per treatment."""
    x = z.to_numpy()
    scale = np.maximum(0.0, 1.0 + x @ _coefficients(BENEFIT_SCALE, z.columns, names))
    return (_by_condition(BENEFIT, cond, names) * scale
            + x @ _coefficients(BENEFIT_MODIFIERS, z.columns, names))


def _mean_reduction(z: pd.DataFrame, cond: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """True mean relative NRS reduction per patient and treatment."""
    return _prognosis(z)[:, None] + _gains(z, cond, names)


def _harm_logit(z: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """(n, T) log odds of a serious adverse event per treatment."""
    base = logit(np.array([HARM_BASE[t] for t in names]))
    return base[None, :] + z.to_numpy() @ _coefficients(HARM_MODIFIERS, z.columns, names)


def _adverse_probability(z: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    return expit(_harm_logit(z, names))


def _usual_care_score(z: pd.DataFrame, cond: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(n, T) clinicians' log-weights per treatment (habits by condition plus confounders)."""
    return _by_condition(USUAL_CARE_BASE, cond, names) + \
        z.to_numpy() @ _coefficients(USUAL_CARE_MODIFIERS, z.columns, names)


def _usual_care(z: pd.DataFrame, cond: np.ndarray, eligible: np.ndarray, floor: float,
                names: Sequence[str]) -> np.ndarray:
    """Usual-care probabilities: confounded softmax mixed with a uniform over eligible options."""
    return softmax_with_floor(_usual_care_score(z, cond, names), eligible, floor)


def softmax_with_floor(score: np.ndarray, eligible: np.ndarray, floor: float) -> np.ndarray:
    """Row-wise softmax over eligible columns, mixed so each keeps >= ``floor`` (overlap)."""
    weight = np.where(eligible, np.exp(score - score.max(axis=1, keepdims=True)), 0.0)
    softmax = weight / weight.sum(axis=1, keepdims=True)
    k = eligible.sum(axis=1, keepdims=True)
    mix = np.minimum(floor * k, 1.0)  # each eligible option keeps >= floor
    return (1 - mix) * softmax + mix * eligible / k


# ------------------------------------------------------------------------------- assembly
@dataclass(frozen=True)
class SyntheticCohort:
    """A simulated cohort (contract columns), its per-treatment ground truth and, with
    ``simulate.plans``, its per-plan ground truth (:mod:`.simulate_plans`)."""

    cohort: pd.DataFrame
    truth: pd.DataFrame
    plan_truth: pd.DataFrame | None = None


@dataclass(frozen=True)
class TruthArrays:
    """(patient x option) arrays of the structural model, an option being a treatment
    (:class:`_Truth`) or a plan (:class:`.simulate_plans.PlanTruth`)."""

    eligible: np.ndarray
    mean_reduction: np.ndarray
    p_response: np.ndarray
    p_adverse_event: np.ndarray
    p_usual_care: np.ndarray
    expected_nrs_change: np.ndarray


@dataclass(frozen=True)
class _Truth(TruthArrays):
    """The truth arrays over ``treatments``."""

    treatments: tuple[str, ...]


def expected_clipped_change(baseline: np.ndarray, mean_reduction: np.ndarray,
                            response_sd: float) -> np.ndarray:
    """E[clip(b (1 - r), 0, 10)] - b for r ~ Normal(mu, sd): the true expected NRS change.

    X = b (1 - r) is Normal(m = b (1 - mu), s = b sd); for a normal censored to [0, 10],
    E = 10 (1 - Phi(g)) + m (Phi(g) - Phi(a)) + s (phi(a) - phi(g)) with a = (0 - m) / s,
    g = (10 - m) / s. A baseline of 0 stays 0.
    """
    b = np.asarray(baseline, dtype=float)[:, None]
    m, s = b * (1.0 - mean_reduction), b * response_sd
    safe = np.where(s > 0, s, 1.0)
    a, g = -m / safe, (10.0 - m) / safe
    pdf = lambda x: np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)  # noqa: E731
    mean = 10.0 * (1.0 - ndtr(g)) + m * (ndtr(g) - ndtr(a)) + s * (pdf(a) - pdf(g))
    return np.where(s > 0, mean, np.clip(m, 0.0, 10.0)) - b


def _true_model(patients: pd.DataFrame, params: SimulateParams, threshold: float) -> _Truth:
    z = _modifiers(patients)
    cond = pd.Categorical(patients["condition"], categories=CONDITIONS).codes
    names = simulated_treatments(params.optional_treatments)
    eligible = eligibility(patients["condition"], names)
    mu = _mean_reduction(z, cond, names)
    return _Truth(treatments=names, eligible=eligible, mean_reduction=mu,
                  p_response=ndtr((mu - threshold) / params.response_sd),
                  p_adverse_event=_adverse_probability(z, names),
                  p_usual_care=_usual_care(z, cond, eligible, params.usual_care_floor, names),
                  expected_nrs_change=expected_clipped_change(
                      patients["pain_baseline"].to_numpy(), mu, params.response_sd))


def _draw_from_rows(prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One column index per row; zero-probability columns can never be drawn."""
    cdf = np.cumsum(prob, axis=1)
    cdf /= cdf[:, -1:]  # trailing zeros repeat the total exactly, so the last cdf is 1.0
    u = rng.random(len(prob))[:, None]
    return (u >= cdf).sum(axis=1)


def _draw_outcomes(baseline: np.ndarray, truth: _Truth, response_sd: float,
                   rng: np.random.Generator) -> pd.DataFrame:
    """Usual-care treatment, 12-week pain and adverse event, drawn from the truth."""
    assigned = _draw_from_rows(truth.p_usual_care, rng)
    rows = np.arange(len(baseline))
    reduction = rng.normal(truth.mean_reduction[rows, assigned], response_sd)
    return pd.DataFrame({
        "treatment": np.array(truth.treatments, dtype=object)[assigned],
        "pain_followup": np.clip(baseline * (1 - reduction), 0.0, 10.0),  # not rounded
        "adverse_event": rng.random(len(baseline)) < truth.p_adverse_event[rows, assigned],
    })


def _truth_frame(ids: np.ndarray, truth: _Truth) -> pd.DataFrame:
    n, k = truth.eligible.shape
    return pd.DataFrame({
        "patient_id": np.repeat(ids, k),
        "treatment": np.tile(np.array(truth.treatments, dtype=object), n),
        "eligible": truth.eligible.ravel(),
        "p_response": truth.p_response.ravel(),
        "p_adverse_event": truth.p_adverse_event.ravel(),
        "p_usual_care": truth.p_usual_care.ravel(),
        "expected_nrs_change": truth.expected_nrs_change.ravel(),
    })


def simulate_cohort(params: SimulateParams, response_threshold: float,
                    n_patients: int | None = None, seed: int | None = None) -> SyntheticCohort:
    """Simulate one treatment episode per patient plus the ground truth under every treatment."""
    if not 0 < response_threshold < 1:
        raise ValueError(f"response_threshold must be in (0, 1), got {response_threshold}")
    n = params.n_patients if n_patients is None else n_patients
    if n < 1:
        raise ValueError(f"n_patients must be at least 1, got {n}")
    seed = params.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    patients = _draw_patients(n, params, rng)
    truth = _true_model(patients, params, response_threshold)
    if params.plans:
        return _simulate_plans(patients, truth, params, response_threshold, rng, seed)
    outcome = _draw_outcomes(patients["pain_baseline"].to_numpy(), truth, params.response_sd, rng)
    genotypes = list(pgx.GENOTYPE_COLUMNS)
    reported = mask_genotypes(patients[genotypes], params.missing_genotype_rate, rng)
    cohort = pd.concat([patients.drop(columns=genotypes), reported, outcome], axis=1)
    cohort = mask_measurements(cohort, params.missing_measurement_rate, seed,
                               params.missing_measurement_mechanism)
    return SyntheticCohort(cohort=cohort[list(COHORT_COLUMNS)],
                           truth=_truth_frame(patients["patient_id"].to_numpy(), truth))


PLAN_COHORT_COLUMNS: tuple[str, ...] = (*COHORT_COLUMNS, "plan", "contract_version")


def _simulate_plans(patients: pd.DataFrame, truth: _Truth, params: SimulateParams,
                    threshold: float, rng: np.random.Generator, seed: int) -> SyntheticCohort:
    """simulate.plans: usual care gives plans; the truth covers every valid plan."""
    from precision_pain.data import simulate_plans as sp

    cond = pd.Categorical(patients["condition"], categories=CONDITIONS).codes
    scores = _usual_care_score(_modifiers(patients), cond, truth.treatments)
    plans = sp.plan_truth(patients, truth.treatments, scores, params.response_sd, threshold,
                          params.plan_share, truth.p_usual_care)
    assigned = _draw_from_rows(plans.p_usual_care, rng)
    rows, baseline = np.arange(len(patients)), patients["pain_baseline"].to_numpy()
    reduction = rng.normal(plans.mean_reduction[rows, assigned], params.response_sd)
    names = np.array([sp.plan_name(p) for p in plans.plans], dtype=object)[assigned]
    outcome = pd.DataFrame({
        "treatment": np.where(np.char.find(names.astype(str), "+") >= 0, "", names),
        "plan": names, "contract_version": 2,
        "pain_followup": np.clip(baseline * (1 - reduction), 0.0, 10.0),
        "adverse_event": rng.random(len(baseline)) < plans.p_adverse_event[rows, assigned],
    })
    genotypes = list(pgx.GENOTYPE_COLUMNS)
    reported = mask_genotypes(patients[genotypes], params.missing_genotype_rate, rng)
    cohort = pd.concat([patients.drop(columns=genotypes), reported, outcome], axis=1)
    cohort = mask_measurements(cohort, params.missing_measurement_rate, seed,
                               params.missing_measurement_mechanism)
    ids = patients["patient_id"].to_numpy()
    # the per-treatment truth's p_usual_care: given a one-component episode (sums to 1), the
    # policy behind the episodes prepare keeps; the plan truth holds the unconditional one
    return SyntheticCohort(cohort=cohort[list(PLAN_COHORT_COLUMNS)],
                           truth=_truth_frame(ids, truth),
                           plan_truth=sp.plan_truth_frame(ids, plans))


def best_treatment_shares(truth: pd.DataFrame, harm_weight: float = 0.0) -> pd.Series:
    """Share of patients whose best eligible treatment is each one (by p_resp - w * p_ae)."""
    score = truth["p_response"] - harm_weight * truth["p_adverse_event"]
    score = score.where(truth["eligible"].astype(bool), -np.inf)
    best = truth.loc[score.groupby(truth["patient_id"], sort=False).idxmax(), "treatment"]
    return best.value_counts(normalize=True).reindex(list(pd.unique(truth["treatment"])),
                                                     fill_value=0.0)
