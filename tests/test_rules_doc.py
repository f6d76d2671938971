"""docs/rules.md explains every rule a refusal can cite, and names tests that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from gsomia.core.rules import RULES, cite

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")


def test_every_rule_has_one_section_in_order() -> None:
    sections = re.findall(r"^### (R\d+):", DOC, flags=re.MULTILINE)
    assert sections == list(RULES)


def test_every_rule_is_in_the_summary_table() -> None:
    rows = re.findall(r"^\| (R\d+) \|", DOC, flags=re.MULTILINE)
    assert rows == list(RULES)


def test_every_test_the_document_names_exists() -> None:
    named = re.findall(r"`(test_\w+\.py)::(\w+)`", DOC)
    assert named, "the document names the tests that check each rule"
    missing = []
    for file, function in named:
        path = ROOT / "tests" / file
        functions = (
            {n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.FunctionDef)}
            if path.exists()
            else set()
        )
        if function not in functions:
            missing.append(f"{file}::{function}")
    assert missing == []


def test_citations_name_an_article_or_a_dated_act() -> None:
    for rule_id, rule in RULES.items():
        shown = cite(rule_id)
        assert shown.startswith(f"{rule_id} (")
        assert "seed" not in shown.lower()
        assert "AGREEMENT" not in shown
        assert re.search(r"Arts?\. \d|\d{4}-\d{2}-\d{2}", rule.article), shown
