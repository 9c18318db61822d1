"""``python -m precision_pain.data.contract`` prints docs/data-contract.md."""

from precision_pain.data.contract.docs import render_contract_markdown

print(render_contract_markdown(), end="")
