"""PharmCAT outputs (calls-only TSV, phenotype.json, outside calls) and OPRM1/COMT SNP
calls, linked to OMOP persons by a sample map."""
