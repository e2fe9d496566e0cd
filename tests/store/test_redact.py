"""The Redactor on real OTLP messages: what it covers, what it records, its policy, its key,
and that it fails closed. Everything is real (hyperscan, upb messages, files) except the one
fault-injection test, which replaces the matcher with one that raises."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
import threading
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from aitrail.store.errors import ConfigError
from aitrail.store.redaction import (
    RESERVED_KEY,
    RedactionError,
    RedactionPolicy,
    Redactor,
    key_path,
)

from .redaction_samples import Fakes

F = Fakes(5)
AWS = F.aws_key_id()
GH = F.github_pat()
CARD = F.card("visa", " ")
MASK = re.compile(r"\[REDACTED:([a-z0-9-]+):([0-9a-f]{12})\]")


def sv(s: str) -> AnyValue:
    return AnyValue(string_value=s)


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, AnyValue):
        return KeyValue(key=key, value=value)
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=sv(str(value)))


def trace_request(*span_attrs: dict[str, object], service: str = "checkout",
                  resource: dict[str, object] | None = None) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kv(k, v) for k, v in
                                  {"service.name": service, **(resource or {})}.items())
    ss = rs.scope_spans.add()
    ss.scope.name = "genai"
    for n, attrs in enumerate(span_attrs or ({},)):
        sp = ss.spans.add(trace_id=bytes([n + 1]) * 16, span_id=bytes([n + 1]) * 8,
                          parent_span_id=b"\x09" * 8, name=f"chat {n}",
                          start_time_unix_nano=1_700_000_000_000_000_000 + n,
                          end_time_unix_nano=1_700_000_001_000_000_000 + n)
        sp.attributes.extend(kv(k, v) for k, v in attrs.items())
    return req


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payloads under 16 KiB)."""
    n = len(payload)
    size = bytes([n]) if n < 0x80 else bytes([n & 0x7F | 0x80, n >> 7])
    return bytes([number << 3 | 2]) + size + payload


def spans(req: ExportTraceServiceRequest) -> list:
    return list(req.resource_spans[0].scope_spans[0].spans)


def attr(item, key: str) -> AnyValue:
    return next(a.value for a in item.attributes if a.key == key)


def record(item) -> list[dict[str, str]]:
    return json.loads(attr(item, RESERVED_KEY).string_value)


@pytest.fixture
def redactor(tmp_path: Path) -> Redactor:
    return Redactor(tmp_path)


# -- the common case ---------------------------------------------------------------------------

def test_a_clean_request_is_not_touched(redactor):
    req = trace_request({"gen_ai.input.messages": '[{"role": "user", "content": "hello"}]',
                         "gen_ai.usage.input_tokens": 12, "order": "ORD-2025-000123"})
    before = req.SerializeToString()
    assert redactor.redact_traces(req, "default") == 0
    assert req.SerializeToString() == before


def test_a_secret_is_replaced_by_rule_and_fingerprint_and_recorded(redactor):
    req = trace_request({"note": f"use {AWS} for the backup", "other": "fine"})
    assert redactor.redact_traces(req, "default") == 1
    sp, = spans(req)
    value = attr(sp, "note").string_value
    (rule, fp), = MASK.findall(value)
    assert AWS not in value and rule == "aws-access-key-id"
    assert value == f"use [REDACTED:aws-access-key-id:{fp}] for the backup"
    assert record(sp) == [{"rule": "aws-access-key-id", "class": "cloud_key",
                           "path": "attributes.note", "fp": fp}]
    assert attr(sp, "other").string_value == "fine"


def test_ids_and_timestamps_are_never_altered(redactor):
    req = trace_request({"a": AWS}, {"b": GH})
    before = [(s.trace_id, s.span_id, s.parent_span_id, s.start_time_unix_nano,
               s.end_time_unix_nano, s.kind, s.flags) for s in spans(req)]
    assert redactor.redact_traces(req, "default") == 2
    assert before == [(s.trace_id, s.span_id, s.parent_span_id, s.start_time_unix_nano,
                       s.end_time_unix_nano, s.kind, s.flags) for s in spans(req)]


def test_raw_bytes_and_reserialized_request_give_the_same_result(redactor):
    a = trace_request({"x": AWS}, {"y": "clean"}, {"z": CARD})
    b = ExportTraceServiceRequest()
    b.CopyFrom(a)
    raw = a.SerializeToString()
    assert redactor.redact_traces(a, "default", raw) == redactor.redact_traces(b, "default") == 2
    assert a == b


def test_the_bytes_received_are_kept_only_when_nothing_in_them_looked_like_a_secret(redactor):
    clean = trace_request({"k": "clean"})
    raw = clean.SerializeToString()
    assert redactor.redact_traces_raw(clean, "default", raw) is raw
    masked = trace_request({"k": AWS})
    assert redactor.redact_traces_raw(masked, "default", masked.SerializeToString()) is None
    # A span sent in two pieces: parsing keeps the second name, the bytes hold the first.
    sp, = spans(trace_request({"k": "clean"}))
    piece = type(sp)(name=f"deploy with {GH}").SerializeToString()
    raw = _field(1, _field(2, _field(2, piece + sp.SerializeToString())))
    parsed = ExportTraceServiceRequest.FromString(raw)
    assert spans(parsed)[0].name == sp.name and GH.encode() in raw
    assert redactor.redact_traces_raw(parsed, "default", raw) is None  # serialize again
    assert parsed == ExportTraceServiceRequest.FromString(raw)  # nothing to mask in it
    logs = ExportLogsServiceRequest()
    logs.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "ok"
    raw = logs.SerializeToString()
    assert redactor.redact_logs_raw(logs, "default", raw) is raw


NEAR_MISS = "agt_6177309710662351"  # digits a card prefilter hits, but no valid card


def test_a_near_miss_in_a_span_keeps_the_bytes_received(redactor):
    req = trace_request({"gen_ai.agent.id": NEAR_MISS}, {"k": "clean"})
    raw = req.SerializeToString()
    assert redactor._matcher.ends(raw)  # the prefilter does hit
    assert redactor.redact_traces_raw(req, "default", raw) is raw
    assert req == ExportTraceServiceRequest.FromString(raw)


def test_a_near_miss_in_a_span_whose_bytes_differ_from_its_parsed_form_serializes_again(
        redactor):
    # The same span, its name sent twice: the near miss is in both, but the bytes differ
    # from what serializing the parsed span gives, so the walk may not have seen them all.
    sp, = spans(trace_request({"gen_ai.agent.id": NEAR_MISS}))
    piece = type(sp)(name="first name").SerializeToString()
    raw = _field(1, _field(2, _field(2, piece + sp.SerializeToString())))
    parsed = ExportTraceServiceRequest.FromString(raw)
    assert redactor.redact_traces_raw(parsed, "default", raw) is None


def test_a_near_miss_outside_the_spans_serializes_again(redactor):
    req = trace_request({"k": "clean"}, resource={"host.id": NEAR_MISS})
    assert redactor.redact_traces_raw(req, "default", req.SerializeToString()) is None


def test_bytes_that_lost_a_dropped_attribute_are_not_kept(tmp_path):
    red = Redactor(tmp_path, policy('[redaction]\ndrop = ["*"]'))
    req = trace_request({"prompt": "nothing secret, but not to be kept"})
    assert red.redact_traces_raw(req, "t", req.SerializeToString()) is None
    assert [a.key for a in spans(req)[0].attributes] == [RESERVED_KEY]

def test_same_secret_same_fingerprint_and_only_the_secret_changes(redactor):
    req = trace_request({"a": f"key {AWS}"}, {"b": f"{AWS} again"})
    redactor.redact_traces(req, "default")
    a, b = spans(req)
    fps = {MASK.search(attr(a, "a").string_value)[2], MASK.search(attr(b, "b").string_value)[2]}
    assert len(fps) == 1


def test_overlapping_hits_share_one_mask_and_keep_their_own_fingerprints(tmp_path):
    """A URL password with a `%` before `@host` also reads as an e-mail address: the mask
    covers both, and the password keeps the fingerprint it has anywhere else (the TUI's
    "this key appeared in N traces" counts by it)."""
    red = Redactor(tmp_path, policy('[redaction]\nclasses = ["connection_string", "email"]'))
    alone = trace_request({"a": "postgres://app:Hk2w9%x@db.internal/orders",
                           "b": "postgres://app:Hk2w9%x@10.0.0.7/orders"})
    assert red.redact_traces(alone, "default") == 3
    sp, = spans(alone)
    assert MASK.findall(attr(sp, "a").string_value)[0][0] == "url-credentials"
    assert attr(sp, "a").string_value.endswith("]/orders")  # `@db.internal` went too
    entries = {(e["path"], e["rule"]): e["fp"] for e in record(sp)}
    assert set(entries) == {("attributes.a", "url-credentials"), ("attributes.a", "email"),
                            ("attributes.b", "url-credentials")}
    assert entries["attributes.a", "url-credentials"] == entries["attributes.b", "url-credentials"]
    assert entries["attributes.a", "email"] != entries["attributes.a", "url-credentials"]


# -- JSON inside strings -----------------------------------------------------------------------

def test_secret_inside_gen_ai_messages_json_keeps_it_valid_and_records_the_json_path(redactor):
    messages = [{"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
                {"role": "user", "parts": [{"type": "text", "content": f"my token is {GH}"},
                                           {"type": "text", "content": f"card {CARD}"}]}]
    req = trace_request({"gen_ai.input.messages": json.dumps(messages)})
    assert redactor.redact_traces(req, "default") == 2
    sp, = spans(req)
    doc = json.loads(attr(sp, "gen_ai.input.messages").string_value)
    assert doc[0] == messages[0]
    assert MASK.fullmatch(doc[1]["parts"][0]["content"][len("my token is "):])
    assert [(e["rule"], e["path"]) for e in record(sp)] == [
        ("github-pat", "attributes.gen_ai.input.messages[1].parts[0].content"),
        ("payment-card", "attributes.gen_ai.input.messages[1].parts[1].content")]


def test_pem_key_inside_json_with_escaped_newlines(redactor):
    pem = F.pem("OPENSSH PRIVATE KEY", 8)
    messages = [{"role": "user", "content": f"why does this fail?\n{pem}\nssh says denied"}]
    req = trace_request({"gen_ai.input.messages": json.dumps(messages)})
    assert redactor.redact_traces(req, "default") == 1
    sp, = spans(req)
    content = json.loads(attr(sp, "gen_ai.input.messages").string_value)[0]["content"]
    assert content.startswith("why does this fail?\n[REDACTED:private-key:")
    assert content.endswith("]\nssh says denied") and "BEGIN" not in content
    assert record(sp)[0]["path"] == "attributes.gen_ai.input.messages[0].content"


def test_a_json_key_value_password_is_masked_in_place(redactor):
    tool_args = json.dumps({"host": "db1", "password": "Xk9#mPq2!z"})
    req = trace_request({"gen_ai.tool.call.arguments": tool_args})
    assert redactor.redact_traces(req, "default") == 1
    doc = json.loads(attr(spans(req)[0], "gen_ai.tool.call.arguments").string_value)
    assert doc["host"] == "db1" and MASK.fullmatch(doc["password"])
    assert record(spans(req)[0])[0]["path"] == "attributes.gen_ai.tool.call.arguments.password"


def test_text_that_only_looks_like_json_is_treated_as_text(redactor):
    req = trace_request({"log": f"[INFO] deploy with {GH}"})
    redactor.redact_traces(req, "default")
    assert record(spans(req)[0])[0]["path"] == "attributes.log"


# -- every string aitrail keeps ----------------------------------------------------------------

def test_every_string_of_a_span_resource_and_scope_is_covered(redactor):
    req = trace_request({}, {}, resource={"deploy.token_hint": f"k={AWS}"})
    rs = req.resource_spans[0]
    ss = rs.scope_spans[0]
    ss.scope.attributes.append(kv("scope.note", f"gh {GH}"))
    a, b = ss.spans
    a.name = f"call with {F.stripe_live()}"
    a.trace_state = "vendor=" + F.huggingface()
    a.status.message = f"failed to auth with {F.slack_bot()}"
    ev = a.events.add(name=f"retry {F.gitlab_pat()}", time_unix_nano=5)
    ev.attributes.append(kv("exception.message", f"token {F.npm()} rejected"))
    link = a.links.add(trace_id=b"\x07" * 16, span_id=b"\x07" * 8,
                       trace_state="k=" + F.github_pat())
    link.attributes.append(kv("why", f"card {CARD}"))
    nested = AnyValue()
    nested.array_value.values.append(sv(f"jwt {F.jwt()}"))
    inner = nested.array_value.values.add().kvlist_value.values.add(key="deep")
    inner.value.string_value = f"pw url postgres://u:{F.password()}@db/x"
    a.attributes.append(kv("nested", nested))
    a.attributes.append(KeyValue(key="raw", value=AnyValue(bytes_value=f"{AWS}".encode())))

    assert redactor.redact_traces(req, "default") == 12  # resource, scope and a's own ten
    paths_a = {e["path"] for e in record(a)}
    assert paths_a == {
        "resource.attributes.deploy.token_hint", "scope.attributes.scope.note", "name",
        "trace_state", "status.message", "events[0].name",
        "events[0].attributes.exception.message", "links[0].trace_state",
        "links[0].attributes.why", "attributes.nested[0]", "attributes.nested[1].deep",
        "attributes.raw"}
    # resource and scope redactions are recorded on every span under them
    assert {e["path"] for e in record(b)} == {"resource.attributes.deploy.token_hint",
                                              "scope.attributes.scope.note"}
    text = req.SerializeToString()
    for secret in (AWS.encode(), GH.encode(), CARD.encode()):
        assert secret not in text
    assert a.events[0].time_unix_nano == 5 and link.trace_id == b"\x07" * 16


def test_log_bodies_of_any_type_attributes_and_names_are_covered(redactor):
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", "agent"))
    sl = rl.scope_logs.add()
    text_log = sl.log_records.add(time_unix_nano=1, trace_id=b"\x01" * 16)
    text_log.body.string_value = f"user pasted {AWS}"
    map_log = sl.log_records.add(time_unix_nano=2, event_name="gen_ai.user.message")
    msg = map_log.body.kvlist_value.values.add(key="content")
    msg.value.string_value = f"my card is {CARD}"
    map_log.attributes.append(kv("gen_ai.system", "openai"))
    clean = sl.log_records.add(time_unix_nano=3)
    clean.body.string_value = "nothing to see"
    assert redactor.redact_logs(req, "default") == 2
    assert [e["path"] for e in record(text_log)] == ["body"]
    assert [e["path"] for e in record(map_log)] == ["body.content"]
    assert clean.body.string_value == "nothing to see"
    assert all(a.key != RESERVED_KEY for a in clean.attributes)
    assert text_log.trace_id == b"\x01" * 16 and map_log.time_unix_nano == 2


def test_an_attribute_named_like_a_secret_is_masked_whole(redactor):
    req = trace_request({"db.password": "hunter2", "http.request.header.authorization":
                         AnyValue(array_value={"values": [sv("Token abc123xyz")]}),
                         "gen_ai.usage.input_tokens": 40, "user.password_hint": "pet name"})
    assert redactor.redact_traces(req, "default") == 2
    sp, = spans(req)
    assert MASK.fullmatch(attr(sp, "db.password").string_value)
    assert MASK.fullmatch(attr(sp, "http.request.header.authorization")
                          .array_value.values[0].string_value)
    assert attr(sp, "user.password_hint").string_value == "pet name"
    assert attr(sp, "gen_ai.usage.input_tokens").int_value == 40


def test_a_client_cannot_forge_the_redaction_record(redactor):
    forged = json.dumps([{"rule": "x", "class": "cloud_key", "path": "name", "fp": "0" * 12}])
    req = trace_request({RESERVED_KEY: forged}, {RESERVED_KEY: forged, "k": AWS})
    redactor.redact_traces(req, "default")
    a, b = spans(req)
    assert all(x.key != RESERVED_KEY for x in a.attributes)
    assert [e["rule"] for e in record(b)] == ["aws-access-key-id"]


def test_unknown_fields_in_a_region_that_hit_are_dropped(redactor):
    req = trace_request({"k": AWS})
    raw = req.SerializeToString()
    # a span that carries a field this protobuf version does not know (field 99, a string)
    sp = spans(req)[0].SerializeToString() + b"\x9a\x06\x05hello"
    req2 = trace_request()
    spans(req2)[0].ParseFromString(sp)
    raw = req2.SerializeToString()
    assert b"hello" in raw
    redactor.redact_traces(req2, "default", raw)
    assert b"hello" not in req2.SerializeToString()
    assert "unknown-fields" in {e["rule"] for e in record(spans(req2)[0])}


def test_a_layout_the_region_parser_does_not_know_falls_back_to_walking_everything(redactor):
    req = trace_request({"k": AWS})
    raw = req.SerializeToString() + b"\x9b\x06\x9c\x06"  # an (empty) unknown group, field 99
    parsed = ExportTraceServiceRequest.FromString(raw)
    assert redactor.redact_traces(parsed, "default", raw) == 1
    assert AWS.encode() not in parsed.SerializeToString()


def test_a_value_made_of_thousands_of_near_misses_is_still_redacted_exactly(redactor):
    cards = [F.card("visa") for _ in range(1500)]
    req = trace_request({"dump": " ".join(cards)})
    assert redactor.redact_traces(req, "default") == 1500
    assert not any(c.encode() in req.SerializeToString() for c in cards)


def test_concurrent_requests_from_many_threads(redactor):
    results: list[int] = []

    def work() -> None:
        for _ in range(20):
            results.append(redactor.redact_traces(trace_request({"a": AWS}, {"b": "x"}), "t"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [1] * 80


# -- the key and the fingerprint ---------------------------------------------------------------

def test_the_key_is_created_once_with_owner_only_modes_and_reused(tmp_path):
    a = Redactor(tmp_path)
    path = key_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = path.read_bytes()
    assert len(key) == 32
    b = Redactor(tmp_path)
    assert path.read_bytes() == key
    ra, rb = trace_request({"k": AWS}), trace_request({"k": AWS})
    a.redact_traces(ra, "t")
    b.redact_traces(rb, "t")
    assert record(spans(ra)[0])[0]["fp"] == record(spans(rb)[0])[0]["fp"]
    assert [p.name for p in path.parent.iterdir()] == ["redaction.key"]  # no temp files left


def test_the_fingerprint_is_a_keyed_hmac_not_a_plain_hash(tmp_path):
    req = trace_request({"k": AWS})
    Redactor(tmp_path / "one").redact_traces(req, "t")
    fp = record(spans(req)[0])[0]["fp"]
    key = key_path(tmp_path / "one").read_bytes()
    assert fp == hmac.new(key, AWS.encode(), hashlib.sha256).hexdigest()[:12]
    assert fp != hashlib.sha256(AWS.encode()).hexdigest()[:12]
    other = trace_request({"k": AWS})
    Redactor(tmp_path / "two").redact_traces(other, "t")
    assert record(spans(other)[0])[0]["fp"] != fp


def test_card_fingerprint_ignores_spaces_and_dashes(redactor):
    digits = CARD.replace(" ", "")
    req = trace_request({"a": CARD}, {"b": digits}, {"c": CARD.replace(" ", "-")})
    redactor.redact_traces(req, "t")
    assert len({record(s)[0]["fp"] for s in spans(req)}) == 1


def test_a_key_readable_by_others_or_truncated_is_refused(tmp_path):
    Redactor(tmp_path)
    path = key_path(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(RedactionError, match="chmod 600"):
        Redactor(tmp_path)
    os.chmod(path, 0o600)
    path.write_bytes(b"short")
    with pytest.raises(RedactionError, match="truncated"):
        Redactor(tmp_path)


# -- fail closed -------------------------------------------------------------------------------

class _BrokenMatcher:
    """Fault injection (the only stand-in in these tests): hyperscan failing mid-scan."""

    def ends(self, data: bytes) -> list[tuple[int, int]]:
        raise MemoryError("scratch allocation failed")

    def scan(self, data: bytes) -> set[int]:
        raise MemoryError("scratch allocation failed")


def test_any_failure_inside_surfaces_as_redaction_error(redactor):
    redactor._matcher = _BrokenMatcher()
    with pytest.raises(RedactionError, match="not stored") as exc:
        redactor.redact_traces(trace_request({"k": "clean"}), "default")
    assert isinstance(exc.value.__cause__, MemoryError)
    with pytest.raises(RedactionError):
        redactor.redact_logs(ExportLogsServiceRequest(), "default")


def test_an_unwritable_store_fails_at_construction(tmp_path):
    (tmp_path / "_keys").write_text("not a directory")
    with pytest.raises(RedactionError, match="redaction key"):
        Redactor(tmp_path)


# -- policy ------------------------------------------------------------------------------------

def policy(toml_text: str) -> RedactionPolicy:
    import tomllib
    return RedactionPolicy.from_config(tomllib.loads(toml_text), "test.toml")


def test_allow_list_literals_and_regexes_are_never_redacted(tmp_path):
    test_key = F.stripe_live().replace("sk_live_", "sk_test_")
    red = Redactor(tmp_path, policy(f"""
        [redaction]
        allow = ["{AWS}"]
        allow_regex = ["^sk_test_"]
    """))
    req = trace_request({"a": AWS, "b": test_key, "c": GH})
    assert red.redact_traces(req, "t") == 1
    sp, = spans(req)
    assert attr(sp, "a").string_value == AWS and attr(sp, "b").string_value == test_key


def test_allow_keys_leave_an_attribute_alone(tmp_path):
    red = Redactor(tmp_path, policy('[redaction]\nallow_keys = ["ci.fixture.*"]'))
    req = trace_request({"ci.fixture.key": AWS, "other": AWS})
    assert red.redact_traces(req, "t") == 1
    assert attr(spans(req)[0], "ci.fixture.key").string_value == AWS


def test_a_custom_rule_from_the_config(tmp_path):
    red = Redactor(tmp_path, policy(r"""
        [[redaction.rules]]
        name = "acme-session"
        pattern = '\bacme_sess_[A-Za-z0-9]{16}\b'
    """))
    req = trace_request({"cookie_note": "acme_sess_0123456789abcdef and acme_sess_short"})
    assert red.redact_traces(req, "t") == 1
    sp, = spans(req)
    assert attr(sp, "cookie_note").string_value.startswith("[REDACTED:acme-session:")
    assert record(sp)[0]["class"] == "custom"


def test_drop_and_fingerprint_only_for_one_service(tmp_path):
    red = Redactor(tmp_path, policy("""
        [redaction.service."support-bot"]
        drop = ["gen_ai.input.messages", "gen_ai.prompt.*"]
        fingerprint_only = ["enduser.id"]
    """))
    attrs = {"gen_ai.input.messages": "[]", "gen_ai.prompt.0.content": "hi",
             "enduser.id": "user-42", "gen_ai.request.model": "gpt-4o"}
    bot = trace_request(attrs, service="support-bot")
    other = trace_request(attrs, service="checkout")
    assert red.redact_traces(bot, "t") == 3
    assert red.redact_traces(other, "t") == 0
    sp, = spans(bot)
    assert {a.key for a in sp.attributes} == {"enduser.id", "gen_ai.request.model", RESERVED_KEY}
    (fp,) = re.fullmatch(r"\[REDACTED:fingerprint:([0-9a-f]{12})\]",
                         attr(sp, "enduser.id").string_value).groups()
    assert sorted((e["rule"], e["path"], e["fp"]) for e in record(sp)) == [
        ("dropped", "attributes.gen_ai.input.messages", None),
        ("dropped", "attributes.gen_ai.prompt.0.content", None),
        ("fingerprint", "attributes.enduser.id", fp)]


def test_tenant_and_service_overrides_choose_the_classes(tmp_path):
    red = Redactor(tmp_path, policy("""
        [redaction.tenant."acme"]
        classes = ["cloud_key", "email"]
        [redaction.service."public-demo"]
        classes = []
    """))
    attrs = {"a": AWS, "b": "mail jane.doe@acme.com", "c": GH}
    assert red.redact_traces(trace_request(attrs), "default") == 2       # defaults: no email
    assert red.redact_traces(trace_request(attrs), "acme") == 2          # aws + email
    assert red.redact_traces(trace_request(attrs, service="public-demo"), "acme") == 0


def test_a_wildcard_only_drop_walks_every_span(tmp_path):
    red = Redactor(tmp_path, policy('[redaction]\ndrop = ["*"]'))
    req = trace_request({"a": "1", "b": "2"}, {"c": "3"})
    assert red.redact_traces(req, "t") == 3
    assert all([a.key for a in s.attributes] == [RESERVED_KEY] for s in spans(req))


DOC_EXAMPLE = re.search(r"```toml\n(.*?)```", (Path(__file__).resolve().parents[2] / "docs" /
                        "redaction.md").read_text(), re.S)


def test_the_example_aitrail_toml_holds_a_valid_redaction_section(tmp_path):
    import tomllib
    path = Path(__file__).resolve().parents[2] / "docs" / "aitrail.example.toml"
    doc = tomllib.loads(path.read_text())
    assert "redaction" in doc
    Redactor(tmp_path, RedactionPolicy.from_config(doc, str(path)))


def test_the_documented_example_config_parses_and_builds(tmp_path):
    assert DOC_EXAMPLE, "docs/redaction.md has a ```toml example"
    p = policy(DOC_EXAMPLE.group(1))
    Redactor(tmp_path, p)
    assert p.rules and p.tenants and p.services


@pytest.mark.parametrize("text,message", [
    ("[redaction]\ndorp = []", "unknown field 'dorp'"),
    ("[redaction]\nclasses = ['cloud_keys']", "classes: unknown data class 'cloud_keys'"),
    ("[redaction]\ndrop = 'x'", "drop must be a list"),
    ("[redaction]\nallow_regex = ['(']", "allow_regex '(' does not compile"),
    ("[[redaction.rules]]\nname = 'r'\npattern = '('", "#1 (r) pattern does not compile"),
    ("[[redaction.rules]]\nname = 'jwt'\npattern = 'x'", "already used"),
    ("[[redaction.rules]]\nname = 'r'\npattern = 'x'\nclass = 'secret'", "class 'secret'"),
    ("[[redaction.rules]]\npattern = 'x'", "name must be"),
    ('[redaction.service."a"]\nfingerprint = ["x"]', '[redaction.service."a"]: unknown field'),
    ("[redaction]\ntenant = 3", "must be a table"),
])
def test_invalid_config_names_the_field(text, message):
    with pytest.raises(ConfigError) as exc:
        policy(text)
    assert message in str(exc.value)
    assert "test.toml" in str(exc.value)


def test_a_custom_pattern_hyperscan_cannot_scan_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"acme.*back-references"):
        Redactor(tmp_path, policy(r"""
            [[redaction.rules]]
            name = "acme"
            pattern = '(a)\1'
        """))
