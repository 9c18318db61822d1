"""PharmCAT outputs for simulated patients, in the formats calls.py reads.

Patients take turns between the routes a real site has: star-allele calls in the calls-only
TSV or in phenotype.json, CYP2D6 from an outside caller (outside-call TSV), OPRM1/COMT in a
two-column TSV or a multi-sample VCF, and every tenth patient's genotypes stored in OMOP
MEASUREMENT rows instead of files. A reported-missing diplotype (``unknown``) is written as
an ambiguous call (two diplotypes joined by " OR "), which must read back as indeterminate.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from precision_pain.extract.pharmcat.calls import SNP_COLUMNS, STAR_GENES

VERSION_LINE = "PharmCAT v3.0.1 (synthetic)"
_HEADER = ("Gene\tSource Diplotype\tPhenotype\tActivity Score\tHaplotype 1\t"
           "Haplotype 1 Function\tHaplotype 1 Activity Value\tHaplotype 2\t"
           "Haplotype 2 Function\tHaplotype 2 Activity Value\tOutside Call\tMatch Score\t"
           "Missing positions\tRecommendation Lookup Diplotype\t"
           "Recommendation Lookup Phenotype\tRecommendation Lookup Activity Score")
_AMBIGUOUS = "*1/*2 OR *2/*2"
_SNP_REF_ALT = {"OPRM1_rs1799971": ("rs1799971", "chr6", 154039662, "A", "G"),
                "COMT_rs4680": ("rs4680", "chr22", 19963748, "G", "A")}


def in_measurement(k: int) -> bool:
    """Whether patient number k keeps genotypes in MEASUREMENT rather than files."""
    return k % 10 == 9


def sample_id(k: int) -> str:
    """The synthetic sample id of patient number k."""
    return f"SAMPLE{k:07d}"


def _report_tsv(calls: dict[str, str]) -> str:
    rows = []
    for gene, call in calls.items():
        dip = _AMBIGUOUS if call == "unknown" else call
        a, _, b = dip.partition("/") if " OR " not in dip else ("", "", "")
        rows.append("\t".join([gene, dip, "", "", a, "", "", b, "", "", "no", "", "no", dip,
                               "", ""]))
    return "\n".join([VERSION_LINE, _HEADER, *rows]) + "\n"


def _phenotype_json(calls: dict[str, str]) -> str:
    def diplotype(text: str) -> dict:
        a, b = text.split("/", 1)
        return {"allele1": {"name": a}, "allele2": {"name": b}, "label": text}

    reports = {}
    for gene, call in calls.items():
        options = _AMBIGUOUS.split(" OR ") if call == "unknown" else [call]
        reports[gene] = {"geneSymbol": gene, "callSource": "MATCHER",
                         "sourceDiplotypes": [diplotype(o) for o in options]}
    return json.dumps({"geneReports": reports}, indent=1)


def pharmcat_files(cohort: pd.DataFrame, person_id: np.ndarray) -> dict[str, str]:
    """Relative path -> text of every file: per-sample outputs, the VCF and sample_map.csv."""
    files: dict[str, str] = {}
    vcf_samples: list[tuple[str, dict[str, str]]] = []
    mapping = ["sample_id,person_id"]
    records = cohort[[*STAR_GENES, *SNP_COLUMNS.values()]].astype(str).to_dict("records")
    for k, (person, g) in enumerate(zip(person_id, records)):
        if in_measurement(k):
            continue
        sample = sample_id(k)
        mapping.append(f"{sample},{person}")
        star = {gene: g[gene] for gene in STAR_GENES if g[gene] not in ("", "nan")}
        outside = star.pop("CYP2D6") if star.get("CYP2D6", "unknown") != "unknown" else None
        if star:
            files[f"{sample}.phenotype.json" if k % 3 == 0 else f"{sample}.report.tsv"] = \
                _phenotype_json(star) if k % 3 == 0 else _report_tsv(star)
        if outside:
            files[f"{sample}.outside.tsv"] = f"# outside caller (synthetic)\nCYP2D6\t{outside}\n"
        snps = {c: g[c] for c in _SNP_REF_ALT if g[c] not in ("", "nan")}
        if k % 2 == 0 and snps:
            files[f"{sample}.snps.tsv"] = "rsid\tgenotype\n" + "".join(
                f"{_SNP_REF_ALT[c][0]}\t{v}\n" for c, v in snps.items())
        elif k % 2 == 1:
            vcf_samples.append((sample, snps))
    files["cohort_snps.vcf"] = _vcf(vcf_samples)
    files["sample_map.csv"] = "\n".join(mapping) + "\n"
    return files


def _vcf(samples: list[tuple[str, dict[str, str]]]) -> str:
    lines = ["##fileformat=VCFv4.2", '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                        *(s for s, _ in samples)])]
    for column, (rsid, chrom, pos, ref, alt) in _SNP_REF_ALT.items():
        codes = {ref: "0", alt: "1"}
        gts = ["/".join(codes[a] for a in calls[column].split("/")) if column in calls else "./."
               for _, calls in samples]
        lines.append("\t".join([chrom, str(pos), rsid, ref, alt, ".", "PASS", ".", "GT", *gts]))
    return "\n".join(lines) + "\n"
