"""Read genotype calls from PharmCAT's outputs and link them to persons.

Formats (PharmGKB/PharmCAT documentation, docs/using/Running-PharmCAT.md and
docs/specifications/Outside-Call-Format.md; examples in docs/examples/):

- ``<sample>.report.tsv``: the calls-only TSV (``-reporterCallsOnlyTsv``). Its first line is
  a version line (``PharmCAT v3.0.1``), then a header (Gene, Source Diplotype, Phenotype,
  Activity Score, ...). An ambiguous call lists diplotypes joined by `` OR ``: it is
  recorded ``unknown`` (indeterminate), never one of them guessed.
- ``<sample>.phenotype.json``: ``geneReports`` -> gene (PharmCAT 3) or source -> gene
  (PharmCAT 2, CPIC used) -> ``sourceDiplotypes``; more than one diplotype is ambiguous.
- ``<sample>.outside.tsv``: PharmCAT's outside-call format (``-po``): tab-separated gene,
  diplotype, phenotype, activity score; ``#`` lines ignored. CYP2D6 from an outside caller
  (StellarPGx, Aldy, Cyrius) comes this way and overrides the other files.
- OPRM1 rs1799971 and COMT rs4680, which PharmCAT does not call: ``<sample>.snps.tsv``
  (two columns: rsid, genotype such as ``A/G``) or a VCF (``*.vcf``, ``*.vcf.gz``, any
  number of samples; GT with REF/ALT).
- ``sample_map.csv``: columns ``sample_id`` and ``person_id`` (OMOP PERSON.person_id).

Every problem is collected and reported at once, naming the file, the column and the fix.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from precision_pain.data.pgx import GENOTYPE_COLUMNS

log = logging.getLogger(__name__)

SUPPORTED_MAJOR_VERSIONS = ("3",)
STAR_GENES = ("CYP2D6", "CYP2C9", "CYP2C19")
SNP_COLUMNS = {"rs1799971": "OPRM1_rs1799971", "rs4680": "COMT_rs4680"}
CALLS_HEADER = ("Gene", "Source Diplotype", "Phenotype")
INDETERMINATE = "unknown"
_KINDS = {".report.tsv": "calls", ".phenotype.json": "phenotype", ".outside.tsv": "outside",
          ".snps.tsv": "snps"}
_VERSION = re.compile(r"^PharmCAT v(\d+)\.")


class GenotypeError(ValueError):
    """Problems with the genotype files, every one at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} with "
                         f"the genotype files:\n{lines}")


def _diplotype(text: str) -> str:
    text = text.strip()
    return INDETERMINATE if " OR " in text else text


def read_calls_tsv(path: Path, problems: list[str]) -> dict[str, str]:
    """Star-allele diplotypes from a calls-only TSV; problems appended, not raised."""
    lines = path.read_text(encoding="utf-8").splitlines()
    match = _VERSION.match(lines[0]) if lines else None
    if not match:
        problems.append(f"{path}: line 1 is not PharmCAT's version line ('PharmCAT v3...'). "
                        "Fix: pass the file PharmCAT wrote with -reporterCallsOnlyTsv, unedited")
        return {}
    if match.group(1) not in SUPPORTED_MAJOR_VERSIONS:
        problems.append(f"{path}: written by PharmCAT v{match.group(1)}, this reader knows "
                        f"v{', v'.join(SUPPORTED_MAJOR_VERSIONS)}. Fix: re-run PharmCAT 3")
        return {}
    header = lines[1].split("\t") if len(lines) > 1 else []
    missing = [c for c in CALLS_HEADER if c not in header]
    if missing:
        problems.append(f"{path}: header (line 2) lacks column {', '.join(missing)}. Fix: "
                        "pass PharmCAT's calls-only TSV with its header line")
        return {}
    gene, dip = header.index("Gene"), header.index("Source Diplotype")
    calls = {}
    for line in lines[2:]:
        cells = line.split("\t")
        if len(cells) > max(gene, dip) and cells[gene] in STAR_GENES:
            calls[cells[gene]] = _diplotype(cells[dip])
    return calls


def read_phenotype_json(path: Path, problems: list[str]) -> dict[str, str]:
    """Star-allele diplotypes from phenotype.json (PharmCAT 3 flat or 2 nested by source)."""
    try:
        reports = json.loads(path.read_text(encoding="utf-8"))["geneReports"]
    except (json.JSONDecodeError, KeyError, TypeError):
        problems.append(f"{path}: no 'geneReports' object: not a PharmCAT phenotype.json. Fix: "
                        "pass the <name>.phenotype.json PharmCAT wrote")
        return {}
    if not any("sourceDiplotypes" in v for v in reports.values() if isinstance(v, dict)):
        reports = reports.get("CPIC", {})  # PharmCAT 2: nested by guideline source
    calls = {}
    for gene in STAR_GENES:
        diplotypes = (reports.get(gene) or {}).get("sourceDiplotypes") or []
        if len(diplotypes) > 1:
            calls[gene] = INDETERMINATE
        elif diplotypes:
            names = [(diplotypes[0].get(a) or {}).get("name") for a in ("allele1", "allele2")]
            known = [n for n in names if n and n != "Unknown"]
            calls[gene] = "/".join(known) if len(known) == 2 else INDETERMINATE
    return calls


def read_outside_calls(path: Path, problems: list[str]) -> dict[str, str]:
    """Diplotypes from PharmCAT's outside-call format (gene, diplotype, ...)."""
    calls = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) < 2:
            problems.append(f"{path}: line {number} has no tab-separated diplotype column. "
                            "Fix: write 'GENE<TAB>DIPLOTYPE' (PharmCAT outside-call format)")
            continue
        if cells[0].strip() in STAR_GENES and cells[1].strip():
            calls[cells[0].strip()] = _diplotype(cells[1])
    return calls


def read_snps_tsv(path: Path, problems: list[str]) -> dict[str, str]:
    """OPRM1/COMT genotypes from a two-column TSV (rsid, genotype)."""
    calls = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        cells = [c.strip() for c in line.split("\t")]
        if not cells[0] or cells[0].startswith("#") or cells[0].lower() == "rsid":
            continue
        if len(cells) != 2 or not re.fullmatch(r"[ACGT]/[ACGT]", cells[1].upper()):
            problems.append(f"{path}: line {number} is not 'rsid<TAB>genotype' with a genotype "
                            "such as A/G. Fix: two tab-separated columns")
            continue
        if cells[0] in SNP_COLUMNS:
            calls[SNP_COLUMNS[cells[0]]] = cells[1].upper()
    return calls


def read_vcf(path: Path, problems: list[str]) -> dict[str, dict[str, str]]:
    """sample -> {OPRM1/COMT column: genotype} from a VCF's GT fields (rs ids in ID)."""
    opener = gzip.open if path.suffix == ".gz" else open
    samples: list[str] = []
    out: dict[str, dict[str, str]] = {}
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("##"):
                continue
            cells = line.rstrip("\n").split("\t")
            if line.startswith("#CHROM"):
                samples = cells[9:]
                continue
            if not samples:
                problems.append(f"{path}: no '#CHROM' header line with sample columns. Fix: "
                                "pass a VCF 4.x file with its header")
                return {}
            ids = set(cells[2].split(";"))
            column = next((SNP_COLUMNS[r] for r in ids if r in SNP_COLUMNS), None)
            if column:
                _vcf_row(cells, samples, column, out)
    return out


def _vcf_row(cells: list[str], samples: list[str], column: str,
             out: dict[str, dict[str, str]]) -> None:
    alleles = [cells[3], *cells[4].split(",")]
    gt_index = cells[8].split(":").index("GT")
    for sample, field in zip(samples, cells[9:]):
        gt = re.split(r"[/|]", field.split(":")[gt_index])
        if len(gt) == 2 and all(g.isdigit() and int(g) < len(alleles) for g in gt):
            out.setdefault(sample, {})[column] = "/".join(alleles[int(g)] for g in gt)


def read_sample_map(path: Path, problems: list[str]) -> dict[str, tuple[int, int]]:
    """sample_id -> (person_id, data row number from 1) from sample_map.csv."""
    frame = pd.read_csv(path, dtype=str)
    missing = [c for c in ("sample_id", "person_id") if c not in frame.columns]
    if missing:
        problems.append(f"{path}: column {', '.join(missing)} missing. Fix: a CSV with columns "
                        "sample_id,person_id")
        return {}
    rows = pd.Series(range(1, len(frame) + 1), index=frame.index)
    bad = ~frame["person_id"].str.fullmatch(r"\d+").fillna(False).astype(bool)
    if bad.any():
        problems.append(f"{path}: column person_id: {_rows(rows[bad])} not whole numbers. "
                        "Fix: OMOP PERSON.person_id values")
    twice = frame["sample_id"].duplicated(keep=False)
    if twice.any():
        problems.append(f"{path}: column sample_id: {_rows(rows[twice])} repeat a sample. "
                        "Fix: one row per sample")
    ok = ~bad & ~twice
    return dict(zip(frame.loc[ok, "sample_id"],
                    zip(frame.loc[ok, "person_id"].astype("int64"), rows[ok])))


def _rows(rows: pd.Series) -> str:
    shown = ", ".join(str(r) for r in rows.iloc[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _sample_files(folder: Path) -> Iterable[tuple[str, str, Path]]:
    for path in sorted(folder.iterdir()):
        for suffix, kind in _KINDS.items():
            if path.name.endswith(suffix):
                yield path.name[: -len(suffix)], kind, path


_READERS = {"calls": read_calls_tsv, "phenotype": read_phenotype_json,
            "outside": read_outside_calls, "snps": read_snps_tsv}
_PRECEDENCE = ("phenotype", "calls", "snps", "outside")  # later kinds override earlier ones


def read_genotypes(folder: str | Path) -> pd.DataFrame:
    """One row per person (person_id + contract genotype columns) from a PharmCAT folder."""
    folder = Path(folder)
    problems: list[str] = []
    if not (folder / "sample_map.csv").is_file():
        raise GenotypeError([(f"{folder}: no sample_map.csv. Fix: add a CSV with columns "
                              "sample_id,person_id linking each sample to its OMOP person")])
    sample_map = read_sample_map(folder / "sample_map.csv", problems)
    per_sample: dict[str, dict[str, dict[str, str]]] = {}
    files: dict[str, list[Path]] = {}
    for sample, kind, path in _sample_files(folder):
        per_sample.setdefault(sample, {})[kind] = _READERS[kind](path, problems)
        files.setdefault(sample, []).append(path)
    for vcf in sorted([*folder.glob("*.vcf"), *folder.glob("*.vcf.gz")]):
        for sample, calls in read_vcf(vcf, problems).items():
            per_sample.setdefault(sample, {})["snps"] = {
                **per_sample.get(sample, {}).get("snps", {}), **calls}
            files.setdefault(sample, []).append(vcf)
    rows = _link(per_sample, files, sample_map, folder, problems)
    if problems:
        raise GenotypeError(problems)
    return pd.DataFrame(rows, columns=["person_id", *GENOTYPE_COLUMNS]).fillna("")


def _link(per_sample: dict, files: dict[str, list[Path]],
          sample_map: dict[str, tuple[int, int]], folder: Path, problems: list[str]
          ) -> list[dict]:
    """Rows by person; identifiers are named by file and map row, never echoed."""
    first_row: dict[int, int] = {}
    rows = []
    for sample in sorted(per_sample):
        names = ", ".join(p.name for p in files[sample])
        if sample not in sample_map:
            problems.append(f"{folder}/sample_map.csv: no row for the sample of {names}. Fix: "
                            "add a row sample_id,person_id for it, or remove its files")
            continue
        person, row = sample_map[sample]
        if person in first_row:
            problems.append(f"{folder}/sample_map.csv: rows {first_row[person]} and {row} link "
                            f"two genotype samples to one person_id (the second: {names}). "
                            "Fix: keep one sample per person (the map or the files)")
            continue
        first_row[person] = row
        merged: dict[str, str] = {}
        for kind in _PRECEDENCE:
            merged |= per_sample[sample].get(kind, {})
        rows.append({"person_id": person, **merged})
    return rows


def combine(files: pd.DataFrame | None, measured: pd.DataFrame | None) -> pd.DataFrame | None:
    """File calls, with genotype MEASUREMENT rows filling the genes the files lack."""
    frames = [f.set_index("person_id") for f in (files, measured) if f is not None and len(f)]
    if not frames:
        return None
    out = frames[0]
    for extra in frames[1:]:
        out = out.reindex(out.index.union(extra.index))
        extra = extra.reindex(out.index)
        for column in GENOTYPE_COLUMNS:
            if column in extra:
                current = out[column].fillna("") if column in out else ""
                other = extra[column].fillna("")
                differ = int(((current != "") & (other != "") & (current != other)).sum())
                if differ:
                    log.warning("%s: %d persons' genotype MEASUREMENT rows disagree with their "
                                "genotype files; the files are used", column, differ)
                out[column] = current.where(current != "", other)
    return out.reset_index().rename(columns={"index": "person_id"})


def parse_measurement_calls(rows: pd.DataFrame) -> pd.DataFrame:
    """person_id + genotype columns from "<gene> <call>" texts (MEASUREMENT.value_source_value)."""
    text = rows["value_source_value"].fillna("").str.strip()
    gene, _, call = text.str.partition(" ")[[0, 1, 2]].T.to_numpy()
    frame = pd.DataFrame({"person_id": rows["person_id"].astype("int64"), "gene": gene,
                          "call": [_diplotype(c) for c in call]})
    frame = frame[frame["gene"].isin(GENOTYPE_COLUMNS)]
    wide = frame.drop_duplicates(["person_id", "gene"], keep="last").pivot(
        index="person_id", columns="gene", values="call")
    return wide.reindex(columns=list(GENOTYPE_COLUMNS)).fillna("").reset_index()
