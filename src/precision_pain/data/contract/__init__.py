"""Cohort data contract, version 2 (v1 files read unchanged): schema as data, ingest, checks.

``SCHEMA`` is the one machine-readable copy of the contract (one row = one
treatment episode of one patient). ``docs/data-contract.md`` is generated from it
by :func:`render_contract_markdown`; :func:`read_table` (:func:`iter_table` in
chunks) loads a CSV/Parquet file as raw cells and :func:`validate_cohort` checks
every rule at once, returning a new, canonically typed frame or raising one
:class:`ContractError` that lists every problem with its column, data rows
(1-based, header excluded) and fix.
Error messages show only the offending cells of the offending column, and never
the values of a column that looks like a direct identifier.

One module per part, in the order a file meets them:

- :mod:`.schema`: the columns (``SCHEMA``, ``ColumnSpec``) and their accessors;
- :mod:`.errors`: ``Problem`` and ``ContractError``;
- :mod:`.deid`: columns that look like direct identifiers;
- :mod:`.read`: the one table reader (whole file or chunks), files to raw cells;
- :mod:`.cells`: one column parsed and checked by its kind;
- :mod:`.validate`: the whole table, every problem at once;
- :mod:`.outcome`: the responder flag;
- :mod:`.docs`: the generated user page.

Regenerate the page with ``python -m precision_pain.data.contract > docs/data-contract.md``.
"""

from precision_pain.data.contract.deid import find_identifier_columns
from precision_pain.data.contract.docs import render_contract_markdown
from precision_pain.data.contract.errors import ContractError, Problem
from precision_pain.data.contract.outcome import derive_response, relative_reduction
from precision_pain.data.contract.read import (
    TableNotFoundError,
    check_header,
    csv_header,
    iter_table,
    read_pipeline_table,
    read_table,
)
from precision_pain.data.contract.schema import (
    CONTRACT_VERSION,
    SCHEMA,
    ColumnSpec,
    Kind,
    Role,
    column,
    feature_columns,
    genotype_columns,
    measurement_columns,
    outcome_columns,
)
from precision_pain.data.contract.validate import validate_cohort

__all__ = [
    "CONTRACT_VERSION", "SCHEMA", "ColumnSpec", "ContractError", "Kind",
    "Problem", "Role", "TableNotFoundError", "check_header", "column", "csv_header",
    "derive_response", "feature_columns", "find_identifier_columns", "genotype_columns",
    "iter_table", "measurement_columns", "outcome_columns", "read_pipeline_table", "read_table",
    "relative_reduction", "render_contract_markdown", "validate_cohort",
]
