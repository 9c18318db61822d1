"""PharmCAT outputs and SNP calls -> genotype columns by person; bad files named all at once."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from precision_pain.extract.pharmcat.calls import (
    GenotypeError,
    combine,
    parse_measurement_calls,
    read_genotypes,
)

HEADER = ("Gene\tSource Diplotype\tPhenotype\tActivity Score\tHaplotype 1\tHaplotype 1 Function"
          "\tHaplotype 1 Activity Value\tHaplotype 2\tHaplotype 2 Function\t"
          "Haplotype 2 Activity Value\tOutside Call\tMatch Score\tMissing positions\t"
          "Recommendation Lookup Diplotype\tRecommendation Lookup Phenotype\t"
          "Recommendation Lookup Activity Score")


def _row(gene: str, diplotype: str) -> str:
    return "\t".join([gene, diplotype, "", "", "", "", "", "", "", "", "no", "", "no", "", "",
                      ""])


def _folder(tmp_path: Path, files: dict[str, str], mapping: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "sample_map.csv").write_text(mapping)
    return tmp_path


def test_calls_tsv_keeps_star_genes_and_never_guesses_ambiguous(tmp_path):
    tsv = "\n".join(["PharmCAT v3.0.1-78-gc45aacb3", HEADER, _row("CYP2C9", "*1/*3"),
                     _row("CYP2C19", "*1/*2 OR *1/*3"), _row("TPMT", "*1/*1")]) + "\n"
    folder = _folder(tmp_path, {"s1.report.tsv": tsv}, "sample_id,person_id\ns1,7\n")
    row = read_genotypes(folder).iloc[0]
    assert row["person_id"] == 7
    assert row["CYP2C9"] == "*1/*3"
    assert row["CYP2C19"] == "unknown"
    assert row["CYP2D6"] == ""


@pytest.mark.parametrize("nested", [False, True])
def test_phenotype_json_flat_and_nested_by_source(tmp_path, nested):
    def dip(a, b):
        return {"allele1": {"name": a}, "allele2": {"name": b}}

    genes = {"CYP2C19": {"sourceDiplotypes": [dip("*1", "*17")]},
             "CYP2C9": {"sourceDiplotypes": [dip("*1", "*1"), dip("*1", "*2")]}}
    reports = {"CPIC": genes, "DPWG": {}} if nested else genes
    folder = _folder(tmp_path, {"s1.phenotype.json": json.dumps({"geneReports": reports})},
                     "sample_id,person_id\ns1,1\n")
    row = read_genotypes(folder).iloc[0]
    assert (row["CYP2C19"], row["CYP2C9"]) == ("*1/*17", "unknown")


def test_outside_call_overrides_and_snps_from_tsv_and_vcf(tmp_path):
    tsv = "\n".join(["PharmCAT v3.1.0", HEADER, _row("CYP2D6", "*1/*1")]) + "\n"
    vcf = ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts2\n"
           "chr6\t154039662\trs1799971\tA\tG\t.\tPASS\t.\tGT\t0|1\n"
           "chr22\t19963748\trs4680\tG\tA\t.\tPASS\t.\tGT:DP\t1/1:30\n")
    with gzip.open(tmp_path / "cohort.vcf.gz", "wt") as handle:
        handle.write(vcf)
    folder = _folder(tmp_path, {
        "s1.report.tsv": tsv, "s1.outside.tsv": "# Aldy\nCYP2D6\t*4/*10\n",
        "s1.snps.tsv": "rsid\tgenotype\nrs1799971\ta/g\nrs4680\tG/G\n",
    }, "sample_id,person_id\ns1,1\ns2,2\n")
    rows = read_genotypes(folder).set_index("person_id")
    assert rows.loc[1, "CYP2D6"] == "*4/*10"
    assert (rows.loc[1, "OPRM1_rs1799971"], rows.loc[1, "COMT_rs4680"]) == ("A/G", "G/G")
    assert (rows.loc[2, "OPRM1_rs1799971"], rows.loc[2, "COMT_rs4680"]) == ("A/G", "A/A")


def test_every_bad_file_is_named_at_once(tmp_path):
    folder = _folder(tmp_path, {
        "old.report.tsv": "PharmCAT v2.15.0\n" + HEADER + "\n",
        "nohead.report.tsv": "PharmCAT v3.0.1\n" + _row("CYP2C9", "*1/*1") + "\n",
        "edited.report.tsv": HEADER + "\n",
        "orphan.outside.tsv": "CYP2D6\t*1/*1\n",
        "twin1.outside.tsv": "CYP2D6\t*1/*1\n",
        "twin2.outside.tsv": "CYP2D6\t*1/*2\n",
        "bad.phenotype.json": "{}",
    }, "sample_id,person_id\nold,1\nnohead,2\nedited,3\ntwin1,9\ntwin2,9\nbad,4\n")
    with pytest.raises(GenotypeError) as err:
        read_genotypes(folder)
    text = str(err.value)
    assert "old.report.tsv: written by PharmCAT v2" in text
    assert "nohead.report.tsv: header (line 2) lacks column Gene, Source Diplotype" in text
    assert "edited.report.tsv: line 1 is not PharmCAT's version line" in text
    assert "no row for the sample of orphan.outside.tsv" in text
    assert "rows 4 and 5 link two genotype samples to one person_id (the second: " \
           "twin2.outside.tsv)" in text
    assert "person_id 9" not in text
    assert "bad.phenotype.json: no 'geneReports'" in text
    assert text.count("Fix:") == 6


def test_sample_map_is_required_and_checked(tmp_path):
    with pytest.raises(GenotypeError, match="no sample_map.csv"):
        read_genotypes(tmp_path)
    (tmp_path / "sample_map.csv").write_text("sample,person\n")
    with pytest.raises(GenotypeError, match="column sample_id, person_id missing"):
        read_genotypes(tmp_path)
    (tmp_path / "sample_map.csv").write_text("sample_id,person_id\na,1\nb,x\na,2\nc,3\n")
    with pytest.raises(GenotypeError) as err:
        read_genotypes(tmp_path)
    assert "column person_id: row 2 not whole numbers" in str(err.value)
    assert "column sample_id: rows 1, 3 repeat a sample" in str(err.value)


def test_measurement_calls_fill_genes_the_files_lack(caplog):
    import pandas as pd

    measured = parse_measurement_calls(pd.DataFrame({
        "person_id": [1, 1, 2], "value_source_value": [
            "CYP2D6 *1/*2", "COMT_rs4680 G/A", "CYP2C9 *1/*2 OR *1/*3"]}))
    files = pd.DataFrame({"person_id": [1], "CYP2D6": ["*4/*4"], "CYP2C9": ["*1/*1"],
                          "CYP2C19": [""], "OPRM1_rs1799971": [""], "COMT_rs4680": [""]})
    both = combine(files, measured).set_index("person_id")
    assert both.loc[1, "CYP2D6"] == "*4/*4"  # files win
    assert both.loc[1, "COMT_rs4680"] == "G/A"  # measurement fills
    assert both.loc[2, "CYP2C9"] == "unknown"
    assert "CYP2D6: 1 persons' genotype MEASUREMENT rows disagree" in caplog.text


def test_failed_extract_writes_nothing(tmp_path):
    import yaml
    from click.testing import CliRunner
    from omop_world import ROOT, make_world

    from precision_pain.cli import main

    world = make_world(tmp_path / "world", n=60)
    (world.folder / "pharmcat" / "stray.outside.tsv").write_text("CYP2D6\t*1/*1\n")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["extract"] |= {"study": str(ROOT / "studies/chronic_pain.yaml"),
                          "out_dir": str(tmp_path / "omop"), "sources": {"w": {
                              "database": str(world.folder / "cdm.duckdb"),
                              "pharmcat_dir": str(world.folder / "pharmcat"),
                              "inputs": str(world.folder)}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(main, ["extract", "--params", str(tmp_path / "params.yaml"),
                                       "--source", "w"])
    assert result.exit_code == 1
    assert "no row for the sample of stray.outside.tsv" in result.output
    assert not (tmp_path / "omop").exists()


_ALLELE = st.from_regex(r"\*[1-9][0-9]?(x2)?", fullmatch=True)


@given(
    options=st.lists(
        st.tuples(_ALLELE, _ALLELE), min_size=1, max_size=4))
@settings(max_examples=60, deadline=None)
def test_a_call_reads_back_unless_ambiguous(tmp_path_factory, options):
    """One diplotype reads back as written; two or more joined by ' OR ' read as unknown."""
    diplotypes = [f"{a}/{b}" for a, b in options]
    folder = tmp_path_factory.mktemp("calls")
    tsv = "\n".join(["PharmCAT v3.0.1", HEADER, _row("CYP2C19", " OR ".join(diplotypes))])
    got = read_genotypes(_folder(folder, {"s.report.tsv": tsv + "\n"},
                                 "sample_id,person_id\ns,1\n")).loc[0, "CYP2C19"]
    assert got == (diplotypes[0] if len(diplotypes) == 1 else "unknown")
