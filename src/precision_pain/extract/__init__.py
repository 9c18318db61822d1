"""Extract: real clinical data in. An OMOP CDM database (DuckDB or PostgreSQL) and PharmCAT
genotype calls become a cohort in the data contract's format (docs/real-data.md)."""
