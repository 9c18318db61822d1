"""The user-facing contract page (docs/data-contract.md), generated from ``SCHEMA``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from precision_pain.data.contract.schema import (
    CONTRACT_VERSION,
    OPTIONAL_SCHEMA,
    SCHEMA,
    ColumnSpec,
    Role,
    _range_text,
)
from precision_pain.registry import TREATMENT_NAMES

_TYPE_LABEL = {"id": "string"}


def render_contract_markdown() -> str:
    """The user-facing contract page (docs/data-contract.md), generated from ``SCHEMA``."""
    parts = [
        "<!-- Generated from precision_pain.data.contract.SCHEMA; do not edit. Regenerate with:\n"
        "     python -m precision_pain.data.contract > docs/data-contract.md -->",
        f"# Cohort data contract, version {CONTRACT_VERSION}",
        "The one table a researcher brings, and the one the synthetic generator writes. One "
        "row = one treatment episode of one patient. Extensions are additive (new optional "
        "columns); the meaning of a column below never changes silently.",
        _FILE_RULES,
        "## Identity (pseudonymous only)", _column_table("identity"),
        "## De-identification", _DEID_RULES,
        "## Patient features", _column_table("feature"), _MEASUREMENT_NOTE,
        "## Genotypes", _genotype_table(), _GENOTYPE_NOTE,
        "## Treatment and outcome (required for training, absent for prediction)",
        _column_table("outcome"), _response_rules(),
        "## Optional columns (a file may leave them out)", _OPTIONAL_NOTE,
        _column_table("option"),
        "## Treatment plans and contract versions", _PLANS_NOTE,
    ]
    return "\n\n".join(parts) + "\n"


_FILE_RULES = """## Files

- CSV (comma-separated, UTF-8; a byte-order mark and any line endings are fine) or
  Parquet (`.parquet`, `.pq`). Column order does not matter; spaces around header
  names are ignored; each name may appear once.
- Every cell needs a value except genotype cells and the measurements marked "empty
  allowed" (see Patient features). Booleans may be written `true`/`false`,
  `1`/`0`, `yes`/`no` or `t`/`f`, in any case. Category values are matched ignoring case
  (`f` = `F`) and are written back in the spelling below.
- Columns not listed here are dropped with a warning that names them (unless they look
  like direct identifiers: see De-identification).
- A path that is not a readable regular file (missing, a directory, a symbolic-link loop,
  a pipe or device) and a CSV whose header holds a cell longer than the csv module's
  limit (131,072 characters; usually a quote left open) are refused with the file and
  the fix.
- Errors list every problem at once, each with its column, the data rows concerned
  (counted from 1, header excluded), the offending cells of that column only (see
  De-identification for the cells never shown), and the fix."""

_DEID_RULES = """- Columns that look like direct identifiers are refused with an error naming the
  column (never its values); the fix is to remove the column and keep only the
  pseudonymous `patient_id`. By name (any case, any separator, camelCase too): names
  (`name`, `first_name`, `name_first`, `fname`, `lname`, `surname`, ...), MRN, SSN,
  street address, city, county, phone, fax, e-mail (`email`, `mail`, `telno`, ...),
  date of birth and any other date column (`dob`, `birth_dt`, `visit_date`, ...),
  ZIP/postal code, insurance, health-plan, member, account, licence and passport
  numbers, URLs and IP addresses. By value, for columns not in this contract: most
  cells look like e-mail addresses, US Social Security numbers, US phone numbers,
  exact dates, 5-digit ZIP codes or long digit strings (7 digits or more).
- `patient_id` values that look like direct identifiers (e-mail addresses, URLs, phone
  or Social Security numbers, dates, numbers of 7 or more digits, values starting with
  `MRN`) are refused with the rows concerned and never shown; the fix is a study
  pseudonym such as `P000123`.
- An error shows a cell only when it is a plausible value of its column: never a
  `patient_id`, and never a cell that looks like an e-mail address, URL, phone or
  Social Security number, date, long digit string or a person's name, nor one longer
  than any valid value (those read `(not shown: ...)`).
- Ages above 89 are top-coded to 90 (HIPAA Safe Harbor) and counted in the log; ages
  above 120 and below 18 are errors."""

_MEASUREMENT_NOTE = """A measurement marked "empty allowed" (BMI, eGFR, the activity level and
the PCS, PHQ-9, GAD-7 and Opioid Risk Tool scores) may be left empty where it was not
recorded, as in many
EHR extracts: write nothing rather than a guess or a default. The models read an empty cell
as missing (xgboost learns where missing values go; the logistic model imputes the training
median and adds a missing-value indicator), an explanation names it ("eGFR unknown"), and
every guideline check that needs the value says it was not made instead of passing
silently: an NSAID, duloxetine or pregabalin without an eGFR reads "eGFR not recorded:
kidney check not made; measure kidney function before prescribing", an opioid without an
Opioid Risk Tool score the same for the misuse check (docs/predictions.md). A row's other
checks and its ranking are unchanged. Every other feature cell needs a value."""

_GENOTYPE_NOTE = """Diplotypes are kept as written and translated to activity scores and
phenotypes with the CPIC tables; an allele the tables do not know gives phenotype
`indeterminate`, never a guess, and the report says which guideline checks could not
be made. SNP genotypes are written in capitals, alleles in the order given."""


_OPTIONAL_NOTE = """Added after version 1 without changing it: files without these columns
are valid and give the same results as before. When a column is present every cell is
checked like any other (errors name the rows and the fix). `cyp2d6_inhibitor_drugs` adds to
`cyp2d6_inhibitor` (a strong inhibitor either way gives activity x0); the three history
columns feed the naloxone flag of the 2022 CDC opioid guideline (absent = not recorded,
treated as no); `harm_weight` and `exclude_modalities` are patient preferences used by
`precision-pain predict` and the served model (docs/predictions.md)."""


_PLANS_NOTE = """Version 2 records treatment plans: an episode may combine registry
treatments, e.g. a drug, an active therapy and a procedure. The optional `plan` column
holds the components joined by `+` in any order and any case (`Duloxetine + physical_therapy`
is read as `duloxetine+physical_therapy`, components in registry order). Where `plan` is
given, `treatment` may be left empty; a one-component plan may repeat it, and a row whose
`treatment` differs from its `plan` is an error. A row with an empty `plan` is the plan of
its `treatment` alone. After validation both columns are filled: `plan` on every row,
`treatment` on one-component rows (empty on plans of two or more components).

The contract checks that every component is a registry treatment named once; it does not
refuse combinations that the plan rules (`precision_pain.plans`: two opioids, two drugs of
one class, more than two drugs, one behavioural therapy and one procedure) would not
recommend, since a record says what was given. `prepare` keeps every episode; the
single-treatment models (train and evaluate) read the episodes of one component and count
the plan episodes they leave out in the log, and the plan learner reads them all
(docs/predictions.md, "Treatment plans").

How a version 1 file maps: unchanged. A v1 file has no `plan` column; each row's
`treatment` is a one-component plan (`treatment` = `nsaid` is the plan `nsaid`), and the
file validates, prepares and trains exactly as before.

The version a file follows is its optional `contract_version` column (the same on every
row), or, without it, 2 when the file has a `plan` column and 1 otherwise. A file that says
version 1 but has a `plan` column, one whose rows disagree, and one that names a version
newer than this pipeline reads are refused with the rows and the fix.

### Per-plan truth (optional, for evaluation)

A cohort whose true outcome probabilities are known (a simulation of your own, say) can be
scored on plans as the synthetic cohort is: set `data.plan_truth` to a CSV or Parquet file
with one row per patient and plan, columns `patient_id`, `plan` (components joined by `+`,
any order, as above), `p_response` and `p_adverse_event` (the plan's true probabilities,
in [0, 1]); other columns are ignored. It needs a row for every test patient and every plan
valid for the patient's condition, and is used only with a ground truth
(`data.ground_truth`); left at its default (the synthetic cohort's file) it is never applied
to another cohort. Unknown plan names, probabilities out of range and repeated
(patient, plan) pairs are refused together, with the rows and the fix."""


def _column_table(role: Role) -> str:
    rows = [(f"`{s.name}`", _TYPE_LABEL.get(s.kind, s.kind), _allowed_text(s), s.description)
            for s in (*SCHEMA, *OPTIONAL_SCHEMA) if s.role == role]
    return _markdown_table(("column", "type", "allowed values", "meaning"), rows)


def _genotype_table() -> str:
    rows = [(f"`{s.name}`", s.kind, _allowed_text(s), "empty or `unknown`", s.description)
            for s in SCHEMA if s.role == "genotype"]
    return _markdown_table(("column", "type", "values", "missing", "meaning"), rows)


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _allowed_text(spec: ColumnSpec) -> str:
    if spec.kind == "id":
        return "any non-empty text"
    if spec.kind == "bool":
        return "`true`, `false`"
    if spec.kind == "diplotype":
        return ", ".join(f"`{v}`" for v in spec.examples) + " (any two alleles `a/b`)"
    if spec.kind in ("int", "float"):
        return _range_text(spec) + ("; empty allowed" if spec.nullable else "")
    if spec.kind == "plan":
        return "registry names (above) joined by `+`; empty = the row's `treatment`"
    if spec.kind == "list":
        return ("`;`-separated, any of " + ", ".join(f"`{v}`" for v in spec.allowed)
                + "; empty = none")
    return (", ".join(f"`{v}`" for v in spec.allowed)
            + ("; empty allowed" if spec.nullable and spec.role == "feature" else ""))




def _response_rules() -> str:
    registry = ", ".join(f"`{name}`" for name in TREATMENT_NAMES)
    return (
        "Derived, never supplied: `response` = (pain_baseline - pain_followup) / "
        "pain_baseline >= threshold (0.30 by default, IMMPACT \"moderate\"; Dworkin et al. "
        "2008). When outcomes are required (training), rows with `pain_baseline` = 0 cannot "
        "define response and are refused with a clear error. Record `pain_followup` as "
        "measured, not only on which side of the threshold it fell: the default learner also "
        "learns from the relative reduction itself where it says more than the flag "
        "(docs/evaluation.md). For prediction the outcome columns are optional and ignored "
        "when present.\n\n"
        f"Default treatment registry: {registry}."
    )
