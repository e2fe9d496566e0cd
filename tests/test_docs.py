"""Docs that teach must stay true: their SQL runs, and every CLI option is documented."""

from __future__ import annotations

import re

import pytest

from aitrail.cli import build_parser
from aitrail.store.query import Store

from .conftest import ROOT

SCHEMA_DOC = (ROOT / "docs" / "schema.md").read_text()
SQL_BLOCKS = re.findall(r"```sql\n(.*?)```", SCHEMA_DOC, re.S)


@pytest.mark.parametrize("query", SQL_BLOCKS, ids=[f"query{i}" for i in range(len(SQL_BLOCKS))])
def test_every_query_in_the_schema_doc_runs_and_answers_on_the_samples(sample_store, query):
    with Store(sample_store) as store:
        result = store.sql(query)
    assert result.rows, f"no rows for:\n{query}"


def test_schema_doc_names_every_column_of_every_view(sample_store):
    with Store(sample_store) as store:
        for view in ("spans", "documents", "decisions", "changes", "logs"):
            for col in store.sql(f"select * from {view} limit 0").columns:
                assert re.search(rf"\b{col}\b", SCHEMA_DOC), f"{view}.{col} is undocumented"


def test_readme_documents_every_command_and_option():
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert f"aitrail {name}" in readme, f"README never shows `aitrail {name}`"
        for action in p._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and opt != "--help":
                    assert opt in readme, f"README does not mention {name} {opt}"
