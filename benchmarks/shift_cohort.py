"""A fourth synthetic cohort, written only from the data contract, the treatment registry and
docs/domain.md, with threshold, gene-gene and heavy-tailed forms and an unrecorded confounder.

Written without reading the project's simulator, the other benchmark generators
(``alt_cohort``, ``blind_cohort``) or the models, to check that the default learner and the
bring-your-own-extract route (README; ``benchmarks/release_route.py``) generalize to, and do
not crash on, an extract that someone else wrote: its columns in another order, booleans
spelled four ways, an extra column the contract drops, ages above 89 left for the contract to
top-code, measurements left empty more often in some subgroups, every legal genotype
spelling and a contract-v2 ``plan`` column. Numbers marked *approx.* are this file's choices,
plausible and in the direction of the sources, not published values.

    uv run python benchmarks/shift_cohort.py --n 20000 --seed 1 --out shift.csv \\
        --truth-out shift_truth.csv

``generate(n, seed)`` returns ``(cohort, truth)``, deterministic from the seed (one
``numpy.random.Generator``, drawn in a fixed order).

The data-generating process
===========================

Patients (one episode each; ``patient_id`` ``S`` plus 7 digits)
    * a clinic ``site`` (north 45 %, central 35 %, south 20 %), written in an extra column
      ``site`` that the contract drops with a warning: it drives prescribing and record keeping
      but not outcomes;
    * ancestry european 58 %, african_american 13 %, latino 14 %, east_asian 7 %, south_asian
      4 %, other 4 %;
    * condition, deliberately uneven: chronic low back pain 38 %, knee osteoarthritis 20 %,
      fibromyalgia 12 %, diabetic neuropathy 12 %, lumbar radiculopathy 12 %, failed back
      surgery 6 %;
    * an UNRECORDED central-sensitization trait ``U`` ~ Normal(0, 1), +0.8 in fibromyalgia and
      +0.4 after failed back surgery. It is in no column. It worsens every outcome and shifts
      which treatments work (below), and clinicians see it and prescribe by it, so it
      confounds usual care. Recorded proxies carry part of it: a distress factor
      ``D = 0.55 U + 0.84 e`` drives PHQ-9, GAD-7 and the Pain Catastrophizing Scale; ``U`` also
      raises PCS, baseline pain, pain duration and opioid use and lowers the activity level;
    * sex (share female by condition 55 / 45 / 50 / 88 / 42 / 62 %, in the condition order
      of the contract); age condition mean 50 / 49 / 56 / 46 / 63 / 64 plus 11 x a Student t
      with 6 degrees of freedom (SD 13.5, heavier tails than a normal), rounded, 18-99: ages
      91-99 (about 1 %) are written as they are and the contract top-codes them to 90;
    * PHQ-9 a gamma (shape 2.2, mean about 7 x exp(0.35 D)), GAD-7 0.6 x PHQ-9 plus a gamma,
      PCS 20 + 8 D + 3 U + Normal(0, 8), each rounded and clipped to its scale; pain duration
      3 + a log-normal (median about 27 months, longer with ``U`` and after failed back
      surgery), up to 600; baseline NRS 6.2 + 0.6 U + 0.3 D + Normal(0, 1.3) rounded to a
      whole point (to half a point at the south site), 3-10; BMI log-normal (median 28, 32 in
      knee osteoarthritis, 33 in diabetic neuropathy); activity level low / moderate / high
      from a latent score falling with BMI, age and ``U``; smoker (more with distress and
      youth); prior spine surgery (always after failed back surgery, 18 % radiculopathy,
      5 % CLBP, 2 % otherwise); eGFR 125 - 0.9 x (age - 25), -18 in diabetic neuropathy,
      + Normal(0, 13), and a chronic-kidney-disease subgroup (3 %) at 35 % of that, 5-150;
      baseline MME 0 unless on opioids (more with ``U``, pain, failed back surgery), then a
      gamma with mean about 32; Opioid Risk Tool a Poisson rising with distress, smoking
      and youth; prior GI ulcer and anticoagulant rising with age;
    * optional contract columns: ``benzodiazepine`` (more with anxiety),
      ``substance_use_disorder`` and ``overdose_history`` (more with the Opioid Risk Tool),
      all three NOT model features, and ``cyp2d6_inhibitor_drugs``: a strong inhibitor
      (fluoxetine, paroxetine, bupropion; more with depression) is recorded as the drug and
      the ``cyp2d6_inhibitor`` flag (50 %), the drug only (30 %) or the flag only (20 %);
      moderate inhibitors mirabegron (older women), cinacalcet (eGFR < 30) and a few
      terbinafine (strong) are listed as drugs.

Genotypes (Hardy-Weinberg: two alleles drawn independently from the ancestry's frequencies;
``other`` = the mean of the five reference ancestries)
    * CYP2D6: \\*4, \\*5, \\*10, \\*17, \\*29, \\*41 and the duplication total at the CPIC
      frequency-table values of docs/domain.md (Gaedigk 2017); duplications \\*1x2 70 %,
      \\*2x2 30 %; \\*3, \\*6, \\*9 and the uncertain-function \\*22 / \\*43 at small
      *approx.* rates; \\*2 35 % of the rest and \\*1 the remainder. Activity values per
      docs/domain.md (CPIC 2024: \\*10, \\*41, \\*9 0.25; \\*17, \\*29 0.5; duplications
      2). In the truth \\*22 and \\*43 act as normal function; in the data they make the
      phenotype indeterminate.
    * CYP2C9 \\*2 / \\*3 14 / 7 % European, 1 / 0.5 % African American (plus \\*8 6 %,
      \\*11 2 %), 0.5 / 3 % East Asian, 8 / 4 % Latino, 4 / 12 % South Asian
      (Cespedes-Garro 2015; Latino and African *approx.*).
    * CYP2C19 \\*2 18 / 18 / 31 / 34 / 10 %, \\*3 6.7 % East Asian (0.3 % elsewhere), \\*17
      22 / 24 / 1.5 / 14 / 12 % (EUR / AFR / EAS / SAS / Latino; PMC5872082 Table 3).
    * OPRM1 rs1799971 G 15 / 3 / 42 / 22 / 40 % and COMT rs4680 Met (A) 50 / 30 / 27 / 38 /
      43 % (European / African American / East Asian / Latino / South Asian; Hwang 2014,
      Rakvag 2005; non-European/East Asian values *approx.*).
    * Spellings: heterozygous SNPs as ``A/G`` or ``G/A`` at random; diplotypes in canonical
      order (70 %) or reversed (``*4/*1``); a quarter of the duplications written with an
      undetermined copy number (``*1xN``: ``*1xN/*1`` is still ultrarapid, ``*1xN/*4``
      indeterminate); a genotype is not reported for 3 % of patients per gene (8 % at the
      south site), written as an empty cell, an empty string or ``unknown`` in equal parts.
      The truth always uses the real genotype.
    * Effective CYP2D6 activity (truth): genotype activity x 0 with a strong inhibitor (flag
      or drug), x 0.5 with a moderate one (Cicali 2021; FDA DDI table).

Outcome (IMMPACT responder: relative NRS reduction >= 30 %, Dworkin 2008)
    The relative reduction under treatment t is ``r = m[i, t] + s[i, t] x T4`` with T4 a
    Student t with 4 degrees of freedom (heavy tails: some patients are pain-free, some get
    much worse), ``pain_followup = clip(pain_baseline x (1 - r), 0, 10)``, unrounded; so the
    derived response is Bernoulli with exactly ``p_response = P(T4 >= (0.30 - m) / s)`` (the
    clips only act where r > 1 or r < 0). ``expected_nrs_change`` is the exact mean of the
    clipped follow-up minus the baseline (closed form of the t distribution's integrated
    CDF). The scale ``s`` is 0.21 for drugs, 0.23 for behavioural treatments and 0.27 for
    procedures, x 1.15 at baseline NRS <= 5.

    ``m = prognosis + benefit``. Prognosis, step functions shared by every treatment:
    0.10, +0.04 age < 40, +0.03 baseline NRS >= 8, -0.03 NRS <= 4, -0.05 pain > 60 months,
    -0.03 smoker, -0.05 PHQ-9 >= 15, -0.03 BMI >= 40, -0.05 x U (unrecorded). Benefit: a
    table by treatment and condition (``BENEFIT``: relative-reduction units, *approx.*,
    ordered after docs/domain.md section 4: physical therapy and NSAIDs in back pain and knee
    OA, TCA > SNRI > gabapentinoid in neuropathic pain, SCS large after failed back surgery,
    epidural small and short-lived, CBT small), changed by:

    * NSAID: x 1.8 in knee OA with BMI >= 30 (two features together), x 0.5 at age >= 75;
    * tramadol: dominant CYP2D6 model, x 0.1 when the effective activity is 0 (no working
      allele, or a strong inhibitor) and x 1 for every other phenotype (one working allele is
      enough), x 1.15 ultrarapid (Crews 2021);
    * tramadol and oxycodone: OPRM1-COMT epistasis, x 0.35 only for an OPRM1 G carrier who is
      also COMT Val/Val; neither gene matters alone (*approx.*; direction from Hwang 2014,
      Rakvag 2005, sizes not CPIC-actionable, Crews 2021);
    * oxycodone: x 0.2 at baseline MME >= 50 (tolerance; Dowell 2022, Krebs 2018), x 0.6 when
      U > 1;
    * duloxetine: + 0.08 with PHQ-9 >= 10 or GAD-7 >= 10 (either, not their sum);
    * amitriptyline: x 0.3 only when CYP2D6 effective activity >= 1.25 AND CYP2C19 is rapid or
      ultrarapid (both clearance routes fast: low levels; Hicks 2017), x 0.5 at age >= 65;
    * pregabalin: + 0.07 GAD-7 >= 10, the sum x 0.5 at eGFR < 60 (renal dose reduction);
    * physical therapy: x 0.25 when activity is low AND BMI >= 35, x 1.4 when pain < 12 months;
    * CBT: + 0.12 when PCS > 30 AND PHQ-9 < 15 (catastrophizing, able to engage; Williams
      2012), + 0.04 age < 45;
    * SCS: x 0.4 with PCS > 30, x 0.5 with pain > 120 months, x 1.5 in radiculopathy after
      spine surgery;
    * epidural steroid: + 0.10 in radiculopathy of < 12 months;
    * the unrecorded U: + 0.04 x max(U, 0) for the centrally acting duloxetine, amitriptyline
      and pregabalin, - 0.04 x max(U, 0) for NSAID, physical therapy and epidural steroid.

    Ineligible treatments get the prognosis alone (benefit 0): the truth has a row for every
    patient x treatment with ``eligible`` False, ``p_usual_care`` 0.

Serious adverse events: ``p = 1 - exp(-lambda)`` (a hazard, not a logit), lambda a product of
an exposure (dose-like) and susceptibility factors, capped at 2.5:
    * NSAID 0.025 x 2.5 / (CYP2C9 activity score + 0.5) x (1 + 3 prior ulcer) x (1 + 1.5
      anticoagulant) x (2 at age > 65) x (3 at eGFR < 30) (Theken 2020; Lanza 2009; KDIGO 2012);
    * tramadol 0.03 x (1 + total MME / 60) x (4 if effective CYP2D6 ultrarapid) x (1.8 with a
      benzodiazepine) x (1 + ORT / 10), total MME = baseline + 40 (tramadol 200 mg/day x 0.2);
    * oxycodone 0.035 x (total MME / 50)^1.3 x (1 + ORT / 6) x (2.2 benzodiazepine) x (3
      overdose history) x (2 substance use disorder), total MME = baseline + 30 (Dunn 2010,
      Vowles 2015, Dowell 2022);
    * duloxetine 0.02 x (2 at age > 70) x (2 anticoagulant);
    * amitriptyline 0.03 x (3 if effective CYP2D6 activity is 0) x (2 if CYP2C19 poor: two
      no-function alleles, a recessive model) x (2.5 at age >= 65) (Hicks 2017);
    * pregabalin 0.025 x (90 / max(eGFR, 15))^0.8 x (1.8 on opioids) x (2 benzodiazepine);
    * physical therapy 0.005 (x 2 at BMI >= 40), CBT 0.002, SCS 0.05 x (1.7 smoker) x (1.5 at
      BMI >= 35), epidural steroid 0.015 x (3 anticoagulant).
    ``adverse_event`` is an independent Bernoulli of the received treatment's probability.

Usual care (``p_usual_care``, the treatment given)
    A softmax over the eligible treatments of a habit table by condition (``HABIT``:
    NSAIDs and physical therapy first in back pain and knee OA, gabapentinoids and
    duloxetine in neuropathic pain and fibromyalgia; some options almost never used, e.g. SCS
    in CLBP, epidural after failed back surgery, CBT in diabetic neuropathy), plus site habits
    (north opioids +0.8; central physical therapy +0.7, CBT +0.6; south SCS and epidural +0.9,
    NSAID +0.3) and confounders: opioids +0.45 U + 0.2 x (NRS - 6), tramadol +0.5 and
    oxycodone +1.3 when already on opioids, oxycodone -1.0 at ORT >= 8; duloxetine and
    pregabalin +0.35 U, physical therapy -0.3 U; NSAID -1.5 with a prior ulcer, an
    anticoagulant or a recorded eGFR < 60; amitriptyline -1.2 at age >= 70; duloxetine +0.7
    and CBT +0.5 with PHQ-9 >= 10, CBT +0.6 with PCS > 30; SCS +1.0 after spine surgery. It is
    then mixed with a uniform choice so that every eligible treatment has probability >=
    1.2 % (positivity) and ineligible ones exactly 0. Clinicians never see genotypes.

Recording (measurements left empty; the truth keeps the real values)
    eGFR missing 50 % under age 50, 25 % at 50-64, 10 % from 65 (x 0.3 in diabetic
    neuropathy, x 1.5 at the south site); BMI 8 % (x 1.6 men, x 1.5 fibromyalgia); PCS 55 %
    north, 20 % central, 70 % south, +10 points when U > 1; PHQ-9 25 % (15 % fibromyalgia);
    GAD-7 80 % when PHQ-9 is missing, else 15 %; activity level 18 %; Opioid Risk Tool 70 %
    for patients not on opioids, 12 % on opioids.

Spellings of the file (all legal under docs/data-contract.md)
    Columns not in contract order; ``smoker`` yes/no, ``prior_spine_surgery`` 1/0,
    ``anticoagulant`` T/F, ``prior_gi_ulcer`` and ``benzodiazepine`` true/false text,
    ``adverse_event`` 1/0, other flags booleans; 3 % of ``sex`` in lower case and the south
    site's activity level capitalized (``Low``); measurement scores as whole numbers with
    empty cells; a ``plan`` column (contract v2) holding the treatment for 12 % of episodes
    (a quarter of them capitalized, half of them with ``treatment`` left empty), empty
    otherwise, and ``contract_version`` 2 on every row. Preference columns (``harm_weight``,
    ``exclude_modalities``) are left out: they would change what ``predict`` ranks first.
    Neurofeedback (fibromyalgia only, opt-in in the project) is not simulated, as in the other
    generators.

Sources (docs/domain.md lists them in full): Dworkin 2008 (IMMPACT responder); Gaedigk 2017
and the CPIC frequency tables, CPIC allele function tables, Caudle 2020 and Crews 2021
(CYP2D6 activity and phenotypes, tramadol); Cicali 2021 and the FDA DDI table
(phenoconversion); Theken 2020 (CYP2C9, NSAIDs); Cespedes-Garro 2015 (CYP2C9 frequencies);
PMC5872082 Table 3 and Lee 2022 (CYP2C19); Hicks 2017 (amitriptyline); Hwang 2014 (OPRM1);
Rakvag 2005 (COMT); Finnerup 2015, Lunn 2009, Derry 2016, Enthoven 2016, Hayden 2021,
Williams 2012, Kumar 2007, Kapural 2015, Chou 2015, Busse 2018, Krebs 2018 (effect sizes);
Lanza 2009, KDIGO 2012 (NSAID harms); Dunn 2010, Vowles 2015, Dowell 2022, Webster 2005
(opioid harms, Opioid Risk Tool); Sullivan 1995, Kroenke 2001, Spitzer 2006 (scales); HIPAA
Safe Harbor (age top-coding). Eligibility by condition follows src/precision_pain/registry.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

THRESHOLD = 0.30  # IMMPACT moderate improvement (Dworkin 2008)
NU = 4.0  # degrees of freedom of the relative-reduction noise
SIMULATED: tuple[str, ...] = (
    "nsaid", "tramadol", "oxycodone", "duloxetine", "amitriptyline", "pregabalin",
    "physical_therapy", "cbt", "spinal_cord_stimulation", "epidural_steroid",
)
CONDITIONS: tuple[str, ...] = (
    "chronic_low_back_pain", "lumbar_radiculopathy", "failed_back_surgery", "fibromyalgia",
    "diabetic_neuropathy", "knee_osteoarthritis",
)
CLBP, RADIC, FBSS, FIBRO, DN, KNEE = range(6)
CONDITION_MIX = (0.38, 0.12, 0.06, 0.12, 0.12, 0.20)
FEMALE = (0.55, 0.45, 0.50, 0.88, 0.42, 0.62)
AGE_MEAN = (50, 49, 56, 46, 63, 64)
ANCESTRIES = ("european", "african_american", "east_asian", "latino", "south_asian", "other")
ANCESTRY_MIX = (0.58, 0.13, 0.07, 0.14, 0.04, 0.04)
SITES = ("north", "central", "south")
SITE_MIX = (0.45, 0.35, 0.20)

# Usual indications by condition (registry.py): NSAIDs not for neuropathic pain or
# fibromyalgia; no strong opioid in fibromyalgia; no TCA in knee OA; pregabalin for
# radicular/neuropathic pain and fibromyalgia; SCS after failed back surgery, radicular pain
# and diabetic neuropathy (and CLBP in the registry); epidural steroids for back pain.
_BACK = (CLBP, RADIC, FBSS)
ELIGIBLE_CONDITIONS: dict[str, tuple[int, ...]] = {
    "nsaid": _BACK + (KNEE,),
    "tramadol": tuple(range(6)),
    "oxycodone": (CLBP, RADIC, FBSS, DN, KNEE),
    "duloxetine": tuple(range(6)),
    "amitriptyline": (CLBP, RADIC, FBSS, FIBRO, DN),
    "pregabalin": (RADIC, FBSS, FIBRO, DN),
    "physical_therapy": tuple(range(6)),
    "cbt": tuple(range(6)),
    "spinal_cord_stimulation": _BACK + (DN,),
    "epidural_steroid": _BACK,
}

# Benefit over the shared prognosis, relative-reduction units, by condition in CONDITIONS
# order (None: not a usual option); *approx.*, ordered after docs/domain.md section 4.
BENEFIT: dict[str, tuple[float | None, ...]] = {
    "nsaid":                   (.05, .03, .02, None, None, .08),
    "tramadol":                (.08, .11, .09, .07, .13, .07),
    "oxycodone":               (.09, .12, .10, None, .13, .08),
    "duloxetine":              (.05, .05, .04, .11, .12, .07),
    "amitriptyline":           (.03, .09, .07, .12, .17, None),
    "pregabalin":              (None, .07, .06, .09, .10, None),
    "physical_therapy":        (.15, .06, .04, .08, .02, .14),
    "cbt":                     (.03, .03, .04, .05, .03, .02),
    "spinal_cord_stimulation": (.01, .10, .26, None, .12, None),
    "epidural_steroid":        (.00, .06, .01, None, None, None),
}
KIND_SCALE = {"drug": 0.21, "behavioural": 0.23, "procedure": 0.27}
KIND = {"nsaid": "drug", "tramadol": "drug", "oxycodone": "drug", "duloxetine": "drug",
        "amitriptyline": "drug", "pregabalin": "drug", "physical_therapy": "behavioural",
        "cbt": "behavioural", "spinal_cord_stimulation": "procedure",
        "epidural_steroid": "procedure"}

# Usual-care log-weights by condition (None: ineligible); *approx.* prescriber habits.
HABIT: dict[str, tuple[float | None, ...]] = {
    "nsaid":                   (1.2, 0.4, 0.0, None, None, 1.5),
    "tramadol":                (0.6, 0.5, 0.5, 0.0, 0.2, 0.6),
    "oxycodone":               (0.3, 0.3, 0.8, None, -0.5, 0.0),
    "duloxetine":              (0.2, 0.0, 0.0, 1.2, 1.0, 0.0),
    "amitriptyline":           (-0.5, 0.0, -0.2, 0.8, 0.6, None),
    "pregabalin":              (None, 1.0, 0.6, 1.0, 1.3, None),
    "physical_therapy":        (1.3, 0.4, 0.0, 0.6, -1.5, 1.2),
    "cbt":                     (-0.3, -1.0, -0.6, 0.2, -3.0, -2.5),
    "spinal_cord_stimulation": (-4.5, -2.0, 0.3, None, -3.0, None),
    "epidural_steroid":        (-0.5, 0.8, -3.5, None, None, None),
}
SITE_HABIT = {"north": {"tramadol": 0.8, "oxycodone": 0.8},
              "central": {"physical_therapy": 0.7, "cbt": 0.6},
              "south": {"spinal_cord_stimulation": 0.9, "epidural_steroid": 0.9, "nsaid": 0.3}}
USUAL_CARE_FLOOR = 0.012  # every eligible treatment at least this likely (positivity)

# --------------------------------------------------------------------------- genotypes
# CYP2D6 alleles: (name, true activity in the truth). *22 / *43: uncertain function in
# CPIC (indeterminate in the data), normal in the truth.
CYP2D6_ALLELES = ("*1", "*2", "*4", "*5", "*10", "*17", "*29", "*41", "*1x2", "*2x2", "*3",
                  "*6", "*9", "*22", "*43")
CYP2D6_ACTIVITY = np.array([1, 1, 0, 0, .25, .5, .5, .25, 2, 2, 0, 0, .25, 1, 1], float)
# docs/domain.md (CPIC frequency tables; Gaedigk 2017): *4, *5, *10, *17, *29, *41, dup.
_CYP2D6_PUBLISHED = {
    "european":         (.185, .029, .016, .004, .001, .092, .017),
    "african_american": (.048, .054, .038, .169, .087, .037, .027),
    "east_asian":       (.005, .048, .428, .000, .000, .023, .008),
    "latino":           (.121, .029, .026, .023, .015, .051, .027),
    "south_asian":      (.090, .042, .076, .000, .002, .119, .013),
}
# *3, *6, *9, *22, *43 (*approx.*)
_CYP2D6_MINOR = {"european": (.010, .010, .020, .005, .004)}
_CYP2D6_MINOR_DEFAULT = (.003, .002, .005, .005, .004)

CYP2C9_ALLELES = ("*1", "*2", "*3", "*8", "*11")
CYP2C9_ACTIVITY = np.array([1, .5, 0, .5, .5], float)
_CYP2C9 = {"european": (.14, .07, 0, 0), "african_american": (.01, .005, .06, .02),
           "east_asian": (.005, .03, 0, 0), "latino": (.08, .04, 0, 0),
           "south_asian": (.04, .12, 0, 0)}
CYP2C19_ALLELES = ("*1", "*2", "*3", "*17")
_CYP2C19_FUNCTION = ("normal", "none", "none", "increased")
_CYP2C19 = {"european": (.18, .003, .22), "african_american": (.18, .003, .24),
            "east_asian": (.31, .067, .015), "south_asian": (.34, .003, .14),
            "latino": (.10, .003, .12)}
OPRM1_G = {"european": .15, "african_american": .03, "east_asian": .42, "latino": .22,
           "south_asian": .40}
COMT_MET = {"european": .50, "african_american": .30, "east_asian": .27, "latino": .38,
            "south_asian": .43}
STRONG_INHIBITORS = ("fluoxetine", "paroxetine", "bupropion")


def _with_other(table: dict[str, np.ndarray]) -> np.ndarray:
    """(ancestries, alleles) frequency matrix; 'other' = mean of the five references."""
    rows = [np.asarray(table[a], float) for a in ANCESTRIES[:-1]]
    return np.vstack([*rows, np.mean(rows, axis=0)])


def _cyp2d6_freq() -> np.ndarray:
    out = {}
    for a in ANCESTRIES[:-1]:
        p4, p5, p10, p17, p29, p41, dup = _CYP2D6_PUBLISHED[a]
        p3, p6, p9, p22, p43 = _CYP2D6_MINOR.get(a, _CYP2D6_MINOR_DEFAULT)
        rest = 1 - (p4 + p5 + p10 + p17 + p29 + p41 + dup + p3 + p6 + p9 + p22 + p43)
        out[a] = (0.65 * rest, 0.35 * rest, p4, p5, p10, p17, p29, p41, 0.7 * dup, 0.3 * dup,
                  p3, p6, p9, p22, p43)
    return _with_other(out)


def _freq_with_reference(table: dict[str, tuple[float, ...]]) -> np.ndarray:
    """Prepend the reference allele (*1) with the remaining frequency."""
    return _with_other({a: (1 - sum(v), *v) for a, v in table.items()})


def _draw_alleles(freq: np.ndarray, anc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) allele indices, two independent draws from each patient's ancestry row."""
    cum = np.cumsum(freq, axis=1)
    cum[:, -1] = 1.0
    u = rng.random((len(anc), 2))
    return np.stack([(u[:, k:k + 1] > cum[anc]).sum(axis=1) for k in range(2)], axis=1)


def _diplotype_text(idx: np.ndarray, names: tuple[str, ...], reverse: np.ndarray,
                    copies_unknown: np.ndarray | None = None) -> np.ndarray:
    """'a/b' in canonical order (lower index first) or reversed; duplications optionally
    written with an undetermined copy number (xN)."""
    lo, hi = np.sort(idx, axis=1).T
    name = np.array(names, dtype=object)
    a, b = name[lo].copy(), name[hi].copy()
    if copies_unknown is not None:
        for part in (a, b):
            dup = np.array([s.endswith("x2") for s in part]) & copies_unknown
            part[dup] = [s[:-1] + "N" for s in part[dup]]
    first, second = np.where(reverse, b, a), np.where(reverse, a, b)
    return np.array([f"{x}/{y}" for x, y in zip(first, second)], dtype=object)


def _snp_text(count: np.ndarray, counted: str, other: str, flip: np.ndarray) -> np.ndarray:
    het = np.where(flip, f"{counted}/{other}", f"{other}/{counted}")
    return np.select([count == 0, count == 1], [f"{other}/{other}", het],
                     f"{counted}/{counted}").astype(object)


def _mask_genotype(text: np.ndarray, rate: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Not reported for a share ``rate`` of patients: NaN, '' or 'unknown' in equal parts."""
    u = rng.random(len(text))
    out = text.copy()
    gone = u < rate
    third = u / np.maximum(rate, 1e-12)
    out[gone & (third < 1 / 3)] = np.nan
    out[gone & (third >= 1 / 3) & (third < 2 / 3)] = ""
    out[gone & (third >= 2 / 3)] = "unknown"
    return out


# --------------------------------------------------------------------------- population

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _population(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every patient's true characteristics (the unrecorded U included), in a fixed draw
    order."""
    site = rng.choice(len(SITES), n, p=SITE_MIX)
    anc = rng.choice(len(ANCESTRIES), n, p=ANCESTRY_MIX)
    cond = rng.choice(len(CONDITIONS), n, p=CONDITION_MIX)
    female = rng.random(n) < np.take(FEMALE, cond)
    u = rng.standard_normal(n) + np.select([cond == FIBRO, cond == FBSS], [0.8, 0.4], 0.0)
    d = 0.55 * u + np.sqrt(1 - 0.55 ** 2) * rng.standard_normal(n)
    age = np.clip(np.rint(np.take(AGE_MEAN, cond) + 11 * rng.standard_t(6, n)), 18, 99)
    phq9 = np.clip(np.rint(rng.gamma(2.2, 3.2 * np.exp(0.35 * d))), 0, 27)
    gad7 = np.clip(np.rint(0.6 * phq9 + rng.gamma(1.5, 1.6, n)), 0, 21)
    pcs = np.clip(np.rint(20 + 8 * d + 3 * u + 8 * rng.standard_normal(n)), 0, 52)
    duration = np.clip(3 + np.exp(3.2 + 0.25 * u + 0.4 * (cond == FBSS)
                                  + 1.0 * rng.standard_normal(n)), 3, 600)
    duration = np.round(duration, 1)
    raw_b = 6.2 + 0.6 * u + 0.3 * d + 1.3 * rng.standard_normal(n)
    baseline = np.where(site == 2, np.rint(2 * raw_b) / 2, np.rint(raw_b))
    baseline = np.clip(baseline, 3, 10)
    bmi_median = np.select([cond == KNEE, cond == DN], [32.0, 33.0], 28.0)
    bmi = np.round(np.clip(bmi_median * np.exp(0.18 * rng.standard_normal(n)), 15, 65), 1)
    activity_latent = (-0.6 * (bmi - 28) / 6 - 0.3 * (age - 55) / 13 - 0.35 * u
                       + rng.standard_normal(n))
    activity = np.digitize(activity_latent, [-0.45, 0.95])  # 0 low, 1 moderate, 2 high
    smoker = rng.random(n) < _sigmoid(-1.7 + 0.4 * d - 0.02 * (age - 50))
    surgery_p = np.select([cond == FBSS, cond == RADIC, cond == CLBP], [1.0, 0.18, 0.05], 0.02)
    surgery = rng.random(n) < surgery_p
    egfr = 125 - 0.9 * (age - 25) - 18 * (cond == DN) + 13 * rng.standard_normal(n)
    ckd = rng.random(n) < 0.03
    egfr = np.round(np.clip(np.where(ckd, 0.35 * egfr, egfr), 5, 150), 0)
    on_opioid = rng.random(n) < _sigmoid(-1.3 + 0.5 * u + 0.25 * (baseline - 6)
                                         + 0.8 * (cond == FBSS))
    mme = np.where(on_opioid, np.round(rng.gamma(1.6, 20 * np.exp(0.3 * u)), 1), 0.0)
    mme = np.where(on_opioid & (mme < 2.5), 2.5, mme)
    ort = np.clip(rng.poisson(2.2 * np.exp(0.35 * d + 0.5 * smoker + 0.4 * (age < 45))), 0, 26)
    sud = rng.random(n) < _sigmoid(-3.2 + 0.25 * ort)
    overdose = rng.random(n) < _sigmoid(-5.0 + 0.25 * ort + 1.2 * sud)
    benzo = rng.random(n) < _sigmoid(-2.6 + 0.5 * (gad7 - 6) / 4)
    ulcer = rng.random(n) < _sigmoid(-3.6 + 0.03 * (age - 50) + 0.5 * smoker)
    anticoag = rng.random(n) < _sigmoid(-3.6 + 0.06 * (age - 50))
    # CYP2D6 inhibitors: strong (antidepressants, more with depression; a few terbinafine)
    strong = rng.random(n) < _sigmoid(-3.3 + 0.12 * (phq9 - 7))
    strong_drug = rng.choice(STRONG_INHIBITORS, n, p=(0.45, 0.35, 0.20))
    how = rng.random(n)  # drug and flag 50 %, drug only 30 %, flag only 20 %
    terbinafine = rng.random(n) < 0.003
    mirabegron = female & (age > 60) & (rng.random(n) < 0.06)
    cinacalcet = (egfr < 30) & (rng.random(n) < 0.3)
    drugs = [[] for _ in range(n)]
    for i in np.flatnonzero(strong & (how < 0.8)):
        drugs[i].append(str(strong_drug[i]))
    for i in np.flatnonzero(terbinafine):
        drugs[i].append("terbinafine")
    for i in np.flatnonzero(mirabegron):
        drugs[i].append("mirabegron")
    for i in np.flatnonzero(cinacalcet):
        drugs[i].append("cinacalcet")
    flag = strong & ((how < 0.5) | (how >= 0.8))
    strong_any = strong | terbinafine
    moderate_any = mirabegron | cinacalcet
    factor = np.where(strong_any, 0.0, np.where(moderate_any, 0.5, 1.0))

    # genotypes (the truth uses these real values)
    a2d6 = _draw_alleles(_cyp2d6_freq(), anc, rng)
    a2c9 = _draw_alleles(_freq_with_reference(_CYP2C9), anc, rng)
    a2c19 = _draw_alleles(_freq_with_reference(_CYP2C19), anc, rng)
    g_oprm1 = rng.binomial(2, np.array([*(OPRM1_G[a] for a in ANCESTRIES[:-1]),
                                         np.mean(list(OPRM1_G.values()))])[anc])
    met_comt = rng.binomial(2, np.array([*(COMT_MET[a] for a in ANCESTRIES[:-1]),
                                          np.mean(list(COMT_MET.values()))])[anc])
    act2d6 = CYP2D6_ACTIVITY[a2d6].sum(axis=1)
    fn19 = np.array(_CYP2C19_FUNCTION, dtype=object)[a2c19]
    return {
        "site": site, "anc": anc, "cond": cond, "female": female, "u": u, "d": d, "age": age,
        "phq9": phq9, "gad7": gad7, "pcs": pcs, "duration": duration, "baseline": baseline,
        "bmi": bmi, "activity": activity, "smoker": smoker, "surgery": surgery, "egfr": egfr,
        "mme": mme, "ort": ort, "sud": sud, "overdose": overdose, "benzo": benzo,
        "ulcer": ulcer, "anticoag": anticoag, "flag": flag,
        "drugs": np.array([";".join(x) for x in drugs], dtype=object),
        "a2d6": a2d6, "a2c9": a2c9, "a2c19": a2c19, "oprm1_g": g_oprm1, "comt_met": met_comt,
        "eff2d6": act2d6 * factor,
        "as2c9": CYP2C9_ACTIVITY[a2c9].sum(axis=1),
        "c19_fast": (fn19 == "increased").any(axis=1) & ~(fn19 == "none").any(axis=1),
        "c19_poor": (fn19 == "none").all(axis=1),
    }


# --------------------------------------------------------------------------- truth

def eligibility(cond: np.ndarray) -> np.ndarray:
    """(n, T) usual options by condition, in SIMULATED order."""
    return np.stack([np.isin(cond, ELIGIBLE_CONDITIONS[t]) for t in SIMULATED], axis=1)


def _mean_and_scale(p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) mean relative reduction m and noise scale s."""
    cond, age, b, u = p["cond"], p["age"], p["baseline"], p["u"]
    up = np.maximum(u, 0.0)
    prognosis = (0.10 + 0.04 * (age < 40) + 0.03 * (b >= 8) - 0.03 * (b <= 4)
                 - 0.05 * (p["duration"] > 60) - 0.03 * p["smoker"] - 0.05 * (p["phq9"] >= 15)
                 - 0.03 * (p["bmi"] >= 40) - 0.05 * u)
    epistasis = np.where((p["oprm1_g"] >= 1) & (p["comt_met"] == 0), 0.35, 1.0)
    eff = p["eff2d6"]
    ben = {t: np.array([0.0 if v is None else v for v in BENEFIT[t]])[cond] for t in SIMULATED}
    ben["nsaid"] = (ben["nsaid"] * np.where((cond == KNEE) & (p["bmi"] >= 30), 1.8, 1.0)
                    * np.where(age >= 75, 0.5, 1.0) - 0.04 * up)
    ben["tramadol"] = (ben["tramadol"] * np.select([eff == 0, eff > 2.25], [0.1, 1.15], 1.0)
                       * epistasis)
    ben["oxycodone"] = (ben["oxycodone"] * epistasis * np.where(p["mme"] >= 50, 0.2, 1.0)
                        * np.where(u > 1, 0.6, 1.0))
    ben["duloxetine"] = (ben["duloxetine"] + 0.08 * ((p["phq9"] >= 10) | (p["gad7"] >= 10))
                         + 0.04 * up)
    ben["amitriptyline"] = (ben["amitriptyline"]
                            * np.where((eff >= 1.25) & p["c19_fast"], 0.3, 1.0)
                            * np.where(age >= 65, 0.5, 1.0) + 0.04 * up)
    ben["pregabalin"] = ((ben["pregabalin"] + 0.07 * (p["gad7"] >= 10))
                         * np.where(p["egfr"] < 60, 0.5, 1.0) + 0.04 * up)
    ben["physical_therapy"] = (ben["physical_therapy"]
                               * np.where((p["activity"] == 0) & (p["bmi"] >= 35), 0.25, 1.0)
                               * np.where(p["duration"] < 12, 1.4, 1.0) - 0.04 * up)
    ben["cbt"] = (ben["cbt"] + 0.12 * ((p["pcs"] > 30) & (p["phq9"] < 15))
                  + 0.04 * (age < 45))
    ben["spinal_cord_stimulation"] = (ben["spinal_cord_stimulation"]
                                      * np.where(p["pcs"] > 30, 0.4, 1.0)
                                      * np.where(p["duration"] > 120, 0.5, 1.0)
                                      * np.where((cond == RADIC) & p["surgery"], 1.5, 1.0))
    ben["epidural_steroid"] = (ben["epidural_steroid"]
                               + 0.10 * ((cond == RADIC) & (p["duration"] < 12)) - 0.04 * up)
    eligible = eligibility(cond)
    benefit = np.stack([ben[t] for t in SIMULATED], axis=1) * eligible
    m = prognosis[:, None] + benefit
    scale = np.array([KIND_SCALE[KIND[t]] for t in SIMULATED])
    s = scale[None, :] * np.where(b <= 5, 1.15, 1.0)[:, None]
    return m, s


def p_response(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """P(relative reduction >= THRESHOLD) for r = m + s * t(NU): exact."""
    return stats.t.sf((THRESHOLD - m) / s, NU)


def expected_nrs_change(m: np.ndarray, s: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """E[clip(b (1 - r), 0, 10)] - b for r = m + s * t(NU), exactly.

    Y = b (1 - r) = mu + sigma T (T symmetric), mu = b (1 - m), sigma = b s;
    E[clip(Y, 0, 10)] = integral_0^10 P(Y > y) dy = 10 - sigma [G(g) - G(a)], with
    a = -mu / sigma, g = (10 - mu) / sigma and G(z) = z F(z) + (nu + z^2) / (nu - 1) f(z)
    the antiderivative of the t CDF F (f its density)."""
    b = np.asarray(baseline, float)[:, None]
    mu, sigma = b * (1 - m), b * s

    def antiderivative(z: np.ndarray) -> np.ndarray:
        return z * stats.t.cdf(z, NU) + (NU + z ** 2) / (NU - 1) * stats.t.pdf(z, NU)

    a, g = -mu / sigma, (10 - mu) / sigma
    return 10 - sigma * (antiderivative(g) - antiderivative(a)) - b


def p_adverse_event(p: dict[str, np.ndarray]) -> np.ndarray:
    """(n, T) P(serious adverse event) = 1 - exp(-lambda), lambda a dose-like product."""
    age, egfr, benzo = p["age"], p["egfr"], p["benzo"]
    eff, ort = p["eff2d6"], p["ort"]
    lam = {
        "nsaid": 0.025 * 2.5 / (p["as2c9"] + 0.5) * (1 + 3 * p["ulcer"])
        * (1 + 1.5 * p["anticoag"]) * np.where(age > 65, 2.0, 1.0)
        * np.where(egfr < 30, 3.0, 1.0),
        "tramadol": 0.03 * (1 + (p["mme"] + 40) / 60) * np.where(eff > 2.25, 4.0, 1.0)
        * np.where(benzo, 1.8, 1.0) * (1 + ort / 10),
        "oxycodone": 0.035 * ((p["mme"] + 30) / 50) ** 1.3 * (1 + ort / 6)
        * np.where(benzo, 2.2, 1.0) * np.where(p["overdose"], 3.0, 1.0)
        * np.where(p["sud"], 2.0, 1.0),
        "duloxetine": 0.02 * np.where(age > 70, 2.0, 1.0) * np.where(p["anticoag"], 2.0, 1.0),
        "amitriptyline": 0.03 * np.where(eff == 0, 3.0, 1.0)
        * np.where(p["c19_poor"], 2.0, 1.0) * np.where(age >= 65, 2.5, 1.0),
        "pregabalin": 0.025 * (90 / np.maximum(egfr, 15)) ** 0.8
        * np.where(p["mme"] > 0, 1.8, 1.0) * np.where(benzo, 2.0, 1.0),
        "physical_therapy": 0.005 * np.where(p["bmi"] >= 40, 2.0, 1.0),
        "cbt": np.full(len(age), 0.002),
        "spinal_cord_stimulation": 0.05 * np.where(p["smoker"], 1.7, 1.0)
        * np.where(p["bmi"] >= 35, 1.5, 1.0),
        "epidural_steroid": 0.015 * np.where(p["anticoag"], 3.0, 1.0),
    }
    hazard = np.stack([np.broadcast_to(lam[t], age.shape) for t in SIMULATED], axis=1)
    return 1 - np.exp(-np.minimum(hazard, 2.5))


def p_usual_care(p: dict[str, np.ndarray], egfr_recorded: np.ndarray) -> np.ndarray:
    """(n, T) probability that usual care gives each treatment; rows sum to 1, every
    eligible treatment >= USUAL_CARE_FLOOR, ineligible ones 0."""
    cond, u = p["cond"], p["u"]
    logit = {t: np.array([-np.inf if v is None else v for v in HABIT[t]])[cond]
             for t in SIMULATED}
    for s, habits in SITE_HABIT.items():
        here = p["site"] == SITES.index(s)
        for t, w in habits.items():
            logit[t] = logit[t] + w * here
    pain = 0.2 * (p["baseline"] - 6)
    on_opioid = p["mme"] > 0
    logit["tramadol"] = logit["tramadol"] + 0.45 * u + pain + 0.5 * on_opioid
    logit["oxycodone"] = (logit["oxycodone"] + 0.45 * u + pain + 1.3 * on_opioid
                          - 1.0 * (p["ort"] >= 8))
    logit["duloxetine"] = logit["duloxetine"] + 0.35 * u + 0.7 * (p["phq9"] >= 10)
    logit["pregabalin"] = logit["pregabalin"] + 0.35 * u
    logit["physical_therapy"] = logit["physical_therapy"] - 0.3 * u
    kidney = np.nan_to_num(egfr_recorded, nan=np.inf) < 60
    logit["nsaid"] = logit["nsaid"] - 1.5 * (p["ulcer"] | p["anticoag"] | kidney)
    logit["amitriptyline"] = logit["amitriptyline"] - 1.2 * (p["age"] >= 70)
    logit["cbt"] = logit["cbt"] + 0.5 * (p["phq9"] >= 10) + 0.6 * (p["pcs"] > 30)
    logit["spinal_cord_stimulation"] = logit["spinal_cord_stimulation"] + 1.0 * p["surgery"]
    z = np.stack([logit[t] for t in SIMULATED], axis=1)
    z = z - z.max(axis=1, keepdims=True)
    w = np.exp(z)
    soft = w / w.sum(axis=1, keepdims=True)
    eligible = eligibility(cond)
    k = eligible.sum(axis=1, keepdims=True)
    return np.where(eligible, USUAL_CARE_FLOOR + (1 - k * USUAL_CARE_FLOOR) * soft, 0.0)


# --------------------------------------------------------------------------- recording

def _recorded_masks(p: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per measurement, True where it is left empty (not recorded)."""
    n, age, cond, site = len(p["age"]), p["age"], p["cond"], p["site"]
    egfr_rate = (np.select([age < 50, age < 65], [0.50, 0.25], 0.10)
                 * np.where(cond == DN, 0.3, 1.0) * np.where(site == 2, 1.5, 1.0))
    bmi_rate = 0.08 * np.where(p["female"], 1.0, 1.6) * np.where(cond == FIBRO, 1.5, 1.0)
    pcs_rate = np.take((0.55, 0.20, 0.70), site) + 0.10 * (p["u"] > 1)
    phq_rate = np.where(cond == FIBRO, 0.15, 0.25)
    draws = rng.random((n, 7))
    phq_gone = draws[:, 3] < phq_rate
    return {
        "egfr": draws[:, 0] < egfr_rate,
        "bmi": draws[:, 1] < bmi_rate,
        "pcs": draws[:, 2] < pcs_rate,
        "phq9": phq_gone,
        "gad7": draws[:, 4] < np.where(phq_gone, 0.80, 0.15),
        "activity_level": draws[:, 5] < 0.18,
        "ort_score": draws[:, 6] < np.where(p["mme"] > 0, 0.12, 0.70),
    }


def _yes_no(x: np.ndarray, yes: str, no: str) -> np.ndarray:
    return np.where(x, yes, no).astype(object)


def _whole(values: np.ndarray, gone: np.ndarray) -> pd.Series:
    return pd.Series(np.where(gone, np.nan, values)).astype("Int64")


# --------------------------------------------------------------------------- generate

def generate(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cohort in the data contract's format with treatment and outcomes, ground truth with
    one row per patient x simulated treatment)."""
    rng = np.random.default_rng(seed)
    p = _population(n, rng)
    gone = _recorded_masks(p, rng)
    egfr_recorded = np.where(gone["egfr"], np.nan, p["egfr"])

    m, s = _mean_and_scale(p)
    resp = p_response(m, s)
    harm = p_adverse_event(p)
    care = p_usual_care(p, egfr_recorded)
    change = expected_nrs_change(m, s, p["baseline"])
    eligible = eligibility(p["cond"])

    # the episode: usual care's treatment, its relative reduction and adverse event
    cum = np.cumsum(care, axis=1)
    cum[:, -1] = 1.0
    given = (rng.random(n)[:, None] > cum).sum(axis=1)
    rows = np.arange(n)
    r = m[rows, given] + s[rows, given] * rng.standard_t(NU, n)
    followup = np.clip(p["baseline"] * (1 - r), 0.0, 10.0)
    adverse = rng.random(n) < harm[rows, given]

    # spellings and gaps of the file
    site = p["site"]
    genotype_gap = np.where(site == 2, 0.08, 0.03)
    reverse = rng.random((n, 3)) < 0.30
    copies_unknown = rng.random(n) < 0.25
    flips = rng.random((n, 2)) < 0.5
    cyp2d6 = _mask_genotype(_diplotype_text(p["a2d6"], CYP2D6_ALLELES, reverse[:, 0],
                                            copies_unknown), genotype_gap, rng)
    cyp2c9 = _mask_genotype(_diplotype_text(p["a2c9"], CYP2C9_ALLELES, reverse[:, 1]),
                            genotype_gap, rng)
    cyp2c19 = _mask_genotype(_diplotype_text(p["a2c19"], CYP2C19_ALLELES, reverse[:, 2]),
                             genotype_gap, rng)
    oprm1 = _mask_genotype(_snp_text(p["oprm1_g"], "G", "A", flips[:, 0]), genotype_gap, rng)
    comt = _mask_genotype(_snp_text(p["comt_met"], "A", "G", flips[:, 1]), genotype_gap, rng)
    lower_sex = rng.random(n) < 0.03
    plan_draw = rng.random((n, 3))

    names = np.array(SIMULATED, dtype=object)[given]
    has_plan = plan_draw[:, 0] < 0.12
    capital = plan_draw[:, 1] < 0.25
    plan = np.where(has_plan, np.where(capital, [t.capitalize() for t in names], names), np.nan)
    treatment = np.where(has_plan & (plan_draw[:, 2] < 0.5), np.nan, names)
    sex = np.where(p["female"], "F", "M").astype(object)
    sex[lower_sex] = [x.lower() for x in sex[lower_sex]]
    activity = np.array(["low", "moderate", "high"], dtype=object)[p["activity"]]
    activity = np.where(site == 2, [a.capitalize() for a in activity], activity)
    activity = np.where(gone["activity_level"], np.nan, activity)
    ids = np.array([f"S{i:07d}" for i in range(1, n + 1)], dtype=object)

    cohort = pd.DataFrame({
        "patient_id": ids,
        "site": np.array(SITES, dtype=object)[site],
        "condition": np.array(CONDITIONS, dtype=object)[p["cond"]],
        "treatment": treatment,
        "plan": plan,
        "pain_baseline": p["baseline"],
        "pain_followup": followup,
        "adverse_event": adverse.astype(int),
        "age": p["age"].astype(int),
        "sex": sex,
        "ancestry": np.array(ANCESTRIES, dtype=object)[p["anc"]],
        "bmi": np.where(gone["bmi"], np.nan, p["bmi"]),
        "pain_duration_months": p["duration"],
        "pcs": _whole(p["pcs"], gone["pcs"]),
        "phq9": _whole(p["phq9"], gone["phq9"]),
        "gad7": _whole(p["gad7"], gone["gad7"]),
        "smoker": _yes_no(p["smoker"], "yes", "no"),
        "activity_level": activity,
        "prior_spine_surgery": p["surgery"].astype(int),
        "baseline_mme": p["mme"],
        "ort_score": _whole(p["ort"], gone["ort_score"]),
        "egfr": egfr_recorded,
        "prior_gi_ulcer": _yes_no(p["ulcer"], "true", "false"),
        "anticoagulant": _yes_no(p["anticoag"], "T", "F"),
        "cyp2d6_inhibitor": p["flag"],
        "cyp2d6_inhibitor_drugs": np.where(p["drugs"] == "", np.nan, p["drugs"]),
        "benzodiazepine": _yes_no(p["benzo"], "true", "false"),
        "overdose_history": p["overdose"],
        "substance_use_disorder": p["sud"],
        "CYP2D6": cyp2d6,
        "CYP2C9": cyp2c9,
        "CYP2C19": cyp2c19,
        "OPRM1_rs1799971": oprm1,
        "COMT_rs4680": comt,
        "contract_version": 2,
    })
    k = len(SIMULATED)
    truth = pd.DataFrame({
        "patient_id": np.repeat(ids, k),
        "treatment": np.tile(np.array(SIMULATED, dtype=object), n),
        "eligible": eligible.reshape(-1),
        "p_response": resp.reshape(-1),
        "p_adverse_event": harm.reshape(-1),
        "p_usual_care": care.reshape(-1),
        "expected_nrs_change": change.reshape(-1),
    })
    return cohort, truth


def oracle_gain(truth: pd.DataFrame, harm_weight: float) -> dict[str, object]:
    """The oracle's gain over the best single treatment eligible for everyone (true net
    benefit P(response) - harm_weight x P(adverse event)), and each treatment's share of
    patients for whom it is the best eligible one."""
    k = len(SIMULATED)
    net = (truth["p_response"] - harm_weight * truth["p_adverse_event"]).to_numpy().reshape(-1, k)
    eligible = truth["eligible"].to_numpy().reshape(-1, k)
    masked = np.where(eligible, net, -np.inf)
    universal = eligible.all(axis=0)
    means = np.where(universal, net.mean(axis=0), -np.inf)
    single = int(np.argmax(means))
    best = masked.argmax(axis=1)
    shares = pd.Series(np.bincount(best, minlength=k) / len(best), index=list(SIMULATED))
    return {"oracle": float(masked.max(axis=1).mean()), "best_single": SIMULATED[single],
            "best_single_value": float(means[single]),
            "gain": float(masked.max(axis=1).mean() - means[single]), "shares": shares}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--out", type=Path, help="cohort file (.csv or .parquet)")
    parser.add_argument("--truth-out", type=Path, help="ground-truth file (.csv or .parquet)")
    args = parser.parse_args()
    cohort, truth = generate(args.n, args.seed)
    for frame, path in ((cohort, args.out), (truth, args.truth_out)):
        if path is None:
            continue
        if path.suffix in (".parquet", ".pq"):
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
    for hw in (0.0, 1.0):
        g = oracle_gain(truth, hw)
        top = g["shares"].sort_values(ascending=False).head(3)
        print(f"harm weight {hw:g}: oracle {g['oracle']:.3f}, best single {g['best_single']} "
              f"{g['best_single_value']:.3f}, gain {g['gain']:.3f}; best for most patients: "
              + ", ".join(f"{t} {100 * v:.1f} %" for t, v in top.items()))


if __name__ == "__main__":
    main()
