"""The PostgreSQL query spans' name: the statement's operation only (store.db)."""

from __future__ import annotations

import pytest

from tokenry.store.db import operation_name


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("SELECT 1", "SELECT"),
        ("  \n insert into outbox (x) values ($1)", "INSERT"),
        ("WITH t AS (SELECT 1) SELECT * FROM t", "WITH"),
        ("(SELECT 1) UNION (SELECT 2)", "SELECT"),
        ("COMMIT;", "COMMIT"),
        ("", "QUERY"),
        ("-- a comment\nSELECT 1", "QUERY"),
        ("SELECT'secret'", "QUERY"),  # never a fragment of a literal
    ],
)
def test_operation_name_is_the_first_keyword_only(query: str, name: str) -> None:
    assert operation_name(query) == name
