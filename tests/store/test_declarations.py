"""ai_change.yaml: validation that names file, line and field; versions; the kept history."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aitrail.store.declarations import (
    DeclarationError,
    DeclarationLog,
    parse_declaration,
    read_declaration,
)

from ..conftest import ROOT

EXAMPLE = """\
feature: support-agent-suggested-replies
model_provider: openai
model: gpt-4.1
retrieval: permissioned_rag_v2
human_review_required: true
allowed_actions: [draft_text]
forbidden_inputs: [credentials, payment_card_data]
logging: {prompts: stored_redacted, retention_days: 30}
rollback: {kill_switch: feature_flag_support_ai, fallback: template_replies}
"""


def test_the_issue_example_parses_into_every_field():
    d = parse_declaration(EXAMPLE)
    assert (d.feature, d.providers, d.models, d.retrieval_source) == (
        "support-agent-suggested-replies", ("openai",), ("gpt-4.1",), "permissioned_rag_v2")
    assert d.human_review_required is True and d.allowed_actions == ("draft_text",)
    assert (d.prompts, d.retention_days, d.kill_switch, d.fallback) == (
        "stored_redacted", 30, "feature_flag_support_ai", "template_replies")
    assert "password" in d.forbidden_classes and "payment_card" in d.forbidden_classes
    assert "email" not in d.forbidden_classes


@pytest.mark.parametrize("bad, where", [
    (EXAMPLE.replace("allowed_actions", "alowed_actions"), ":6: alowed_actions: unknown field"),
    (EXAMPLE.replace("retention_days: 30", "retention_days: thirty"),
     ":8: logging.retention_days: must be a whole number"),
    (EXAMPLE.replace("retention_days: 30", "retention_days: 0"),
     ":8: logging.retention_days: must be a whole number"),
    (EXAMPLE.replace("stored_redacted", "stored_encrypted"), ":8: logging.prompts: must be"),
    (EXAMPLE.replace("payment_card_data]", "tax_ids]"),
     ":7: forbidden_inputs: unknown input class 'tax_ids'"),
    (EXAMPLE.replace("human_review_required: true", "human_review_required: maybe"),
     ":5: human_review_required: must be true or false"),
    (EXAMPLE.replace("[draft_text]", "draft_text"), ":6: allowed_actions: must be a list"),
    (EXAMPLE.replace("fallback: template", "fallbak: template"),
     ":9: rollback.fallbak: unknown field"),
    (EXAMPLE.replace("feature: support-agent-suggested-replies\n", ""), ":1: feature: missing"),
    (EXAMPLE + "model: [gpt-4.1\n", ":11: not valid YAML"),
    ("- just\n- a list\n", ":1: a declaration is a YAML mapping"),
])
def test_a_bad_declaration_names_file_line_and_field(bad, where):
    with pytest.raises(DeclarationError) as e:
        parse_declaration(bad, "svc/ai_change.yaml")
    assert str(e.value).startswith("svc/ai_change.yaml:")
    assert where in str(e.value), str(e.value)


def test_version_is_the_content_not_the_spelling():
    same = ("# a comment\nallowed_actions:\n  - draft_text\n"
            + "\n".join(line for line in EXAMPLE.splitlines()
                        if not line.startswith("allowed_actions")) + "\n")
    assert parse_declaration(same).version == parse_declaration(EXAMPLE).version
    changed = parse_declaration(EXAMPLE.replace("gpt-4.1", "gpt-4o"))
    assert changed.version != parse_declaration(EXAMPLE).version


def test_history_is_kept_and_unchanged_content_is_not_recorded_twice(tmp_path: Path):
    log = DeclarationLog(tmp_path, user="ana")
    first = parse_declaration(EXAMPLE)
    v1, recorded = log.declare(first, EXAMPLE, "a.yaml")
    assert recorded and v1.declared_by == "ana" and v1.version == first.version
    assert log.declare(first, EXAMPLE, "a.yaml")[1] is False
    second = parse_declaration(EXAMPLE.replace("gpt-4.1", "gpt-4o"))
    log.declare(second, EXAMPLE, "a.yaml")
    back, recorded = log.declare(first, EXAMPLE, "a.yaml")  # back to the first content
    assert recorded
    assert [v.version for v in log.versions()] == [first.version, second.version,
                                                   first.version]
    assert log.current(first.feature).declared_at == back.declared_at
    raw = (tmp_path / "_declarations" / "declarations.jsonl").read_text().splitlines()
    assert len(raw) == 3 and '"source"' in raw[0]  # the YAML as written is kept


def test_a_backdated_declaration_keeps_both_times(tmp_path: Path):
    log = DeclarationLog(tmp_path)
    when = datetime(2026, 11, 1, tzinfo=UTC)
    v, _ = log.declare(parse_declaration(EXAMPLE), EXAMPLE, "a.yaml", when)
    assert v.effective_from == when and v.declared_at > when
    assert log.versions()[0].effective_from == when


def test_a_torn_line_is_skipped(tmp_path: Path):
    log = DeclarationLog(tmp_path)
    log.declare(parse_declaration(EXAMPLE), EXAMPLE, "a.yaml")
    with log.path.open("ab") as f:
        f.write(b'{"time": "2026-11-')  # a crash mid-append
    log.declare(parse_declaration(EXAMPLE.replace("gpt-4.1", "o3")), EXAMPLE, "a.yaml")
    assert len(log.versions()) == 2


@pytest.mark.parametrize("path", sorted((ROOT / "sample_traces").glob("*/ai_change.yaml")),
                         ids=lambda p: p.parent.name)
def test_every_sample_declaration_is_valid(path):
    decl, _ = read_declaration(path)
    assert decl.feature and decl.allowed_actions is not None
