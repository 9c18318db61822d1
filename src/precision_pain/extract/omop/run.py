"""One source end to end: open the database, read the genotypes, extract, close."""

from __future__ import annotations

import logging

from precision_pain.config import ExtractSource
from precision_pain.extract.omop.database import open_database
from precision_pain.extract.omop.extract import Extract, extract_cohort
from precision_pain.extract.omop.study import Study
from precision_pain.extract.pharmcat.calls import read_genotypes

log = logging.getLogger(__name__)


def extract_source(source: ExtractSource, study: Study) -> Extract:
    """The contract cohort, attrition and key from one configured source."""
    genotypes = None
    if source.pharmcat_dir is not None:
        genotypes = read_genotypes(source.pharmcat_dir)
        log.info("read genotypes of %d persons from %s", len(genotypes), source.pharmcat_dir)
    db = open_database(source.engine, source.database, source.dsn_env, source.cdm_schema,
                       source.vocabulary_schema)
    try:
        return extract_cohort(db, study, genotypes)
    finally:
        db.close()
