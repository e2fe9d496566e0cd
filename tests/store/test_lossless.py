"""Lossless round trip: random valid OTLP spans -> store -> `show --format otlp-json` -> same
spans; and a second store ingested from that output holds identical rows."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from aitrail.store.ingest import Ingester
from aitrail.store.otlp_decode import request_from_json, request_to_json
from aitrail.store.otlp_encode import rows_to_request
from aitrail.store.query import Store
from aitrail.store.redaction import RedactionPolicy
from aitrail.store.redaction.policy import Scope

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
keys = st.one_of(
    st.sampled_from(["gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.result",
                     "gen_ai.operation.name", "aitrail.change.id", "openinference.span.kind",
                     "$col", "input.value", "service.name"]),
    text,
)


def _scalar_value(draw_kind: str, value) -> AnyValue:
    v = AnyValue()
    setattr(v, draw_kind, value)
    return v


scalars = st.one_of(
    st.builds(lambda s: _scalar_value("string_value", s), text),
    st.builds(lambda s: _scalar_value("int_value", s), st.integers(-(2**63), 2**63 - 1)),
    # OTLP/JSON writes any NaN as "NaN": its sign and payload cannot survive `show
    # --format otlp-json`, so the strategy uses the one NaN JSON can carry (the store itself
    # keeps NaN bits: test_nan_bits_survive_the_store).
    st.builds(lambda s: _scalar_value("double_value", s),
              st.one_of(st.floats(allow_nan=False), st.just(float("nan")))),
    st.builds(lambda s: _scalar_value("bool_value", s), st.booleans()),
    st.builds(lambda s: _scalar_value("bytes_value", s), st.binary(max_size=20)),
    st.just(AnyValue()),
    st.builds(lambda s: _scalar_value("string_value", s),
              st.sampled_from(['[{"role":"user","parts":[{"type":"text","content":"hi"}]}]',
                               '{"id": 1}', "chat", "LLM", "TOOL"])),
)


def _array(values: list[AnyValue]) -> AnyValue:
    v = AnyValue()
    v.array_value.SetInParent()
    for x in values:
        v.array_value.values.add().CopyFrom(x)
    return v


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    v = AnyValue()
    v.kvlist_value.SetInParent()
    for k, x in pairs:
        kv = v.kvlist_value.values.add()
        kv.key = k
        kv.value.CopyFrom(x)
    return v


any_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.builds(_array, st.lists(inner, max_size=3)),
        st.builds(_kvlist, st.lists(st.tuples(keys, inner), max_size=3)),
    ),
    max_leaves=6,
)
attr_maps = st.dictionaries(keys, any_values, max_size=6)
hex_ids = st.binary(min_size=16, max_size=16).filter(any)
span_ids = st.binary(min_size=8, max_size=8).filter(any)
times = st.integers(0, 2**64 - 1)
small = st.integers(0, 2**32 - 1)


def _fill(kvs, attrs: dict[str, AnyValue]) -> None:
    for k, v in attrs.items():
        kv = kvs.add()
        kv.key = k
        kv.value.CopyFrom(v)


@st.composite
def requests(draw) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    seen: set[bytes] = set()
    for _ in range(draw(st.integers(1, 2))):
        rs = req.resource_spans.add()
        _fill(rs.resource.attributes, draw(attr_maps))
        rs.resource.dropped_attributes_count = draw(st.integers(0, 3))
        rs.schema_url = draw(st.sampled_from(["", "https://opentelemetry.io/schemas/1.37.0"]))
        for _ in range(draw(st.integers(1, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name = draw(text)
            ss.scope.version = draw(text)
            _fill(ss.scope.attributes, draw(st.dictionaries(keys, any_values, max_size=2)))
            ss.scope.dropped_attributes_count = draw(st.integers(0, 2))
            ss.schema_url = draw(st.sampled_from(["", "https://example.test/s"]))
            for _ in range(draw(st.integers(1, 3))):
                sp = ss.spans.add()
                sp.trace_id = draw(hex_ids)
                sid = draw(span_ids.filter(lambda b: b not in seen))
                seen.add(sid)
                sp.span_id = sid
                sp.parent_span_id = draw(st.one_of(st.just(b""), span_ids))
                sp.trace_state = draw(st.sampled_from(["", "vendor=abc,x=1"]))
                sp.flags = draw(small)
                sp.name = draw(text)
                sp.kind = draw(st.integers(0, 5))
                sp.start_time_unix_nano = draw(times)
                sp.end_time_unix_nano = draw(times)
                _fill(sp.attributes, draw(attr_maps))
                sp.dropped_attributes_count = draw(small)
                for _ in range(draw(st.integers(0, 2))):
                    ev = sp.events.add()
                    ev.time_unix_nano = draw(times)
                    ev.name = draw(text)
                    _fill(ev.attributes, draw(st.dictionaries(keys, any_values, max_size=2)))
                    ev.dropped_attributes_count = draw(st.integers(0, 2))
                sp.dropped_events_count = draw(small)
                for _ in range(draw(st.integers(0, 2))):
                    ln = sp.links.add()
                    ln.trace_id = draw(hex_ids)
                    ln.span_id = draw(span_ids)
                    ln.trace_state = draw(st.sampled_from(["", "a=b"]))
                    _fill(ln.attributes, draw(st.dictionaries(keys, any_values, max_size=2)))
                    ln.dropped_attributes_count = draw(st.integers(0, 2))
                    ln.flags = draw(small)
                sp.dropped_links_count = draw(small)
                sp.status.code = draw(st.integers(0, 2))
                sp.status.message = draw(text)
    return req


def _canon_kvs(kvs) -> None:
    """An empty AnyValue and an absent one mean the same; protobuf keeps their presence
    apart, OTLP/JSON cannot. Erase that presence before comparing bytes."""
    for kv in kvs:
        _canon_value(kv.value)
        if kv.value.WhichOneof("value") is None:
            kv.ClearField("value")


def _canon_value(v: AnyValue) -> None:
    if v.WhichOneof("value") == "kvlist_value":
        _canon_kvs(v.kvlist_value.values)
    elif v.WhichOneof("value") == "array_value":
        for x in v.array_value.values:
            _canon_value(x)


def _canon(req: ExportTraceServiceRequest) -> None:
    for rs in req.resource_spans:
        _canon_kvs(rs.resource.attributes)
        for ss in rs.scope_spans:
            _canon_kvs(ss.scope.attributes)
            for sp in ss.spans:
                _canon_kvs(sp.attributes)
                for ev in sp.events:
                    _canon_kvs(ev.attributes)
                for ln in sp.links:
                    _canon_kvs(ln.attributes)
                if sp.status.code == 0 and not sp.status.message:
                    sp.ClearField("status")


def span_set(req: ExportTraceServiceRequest) -> list[tuple[bytes, ...]]:
    """Each span with its resource and scope, as deterministic bytes (grouping-agnostic)."""
    req = ExportTraceServiceRequest.FromString(req.SerializeToString())
    _canon(req)
    out = []
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for sp in ss.spans:
                out.append((rs.resource.SerializeToString(deterministic=True),
                            rs.schema_url.encode(),
                            ss.scope.SerializeToString(deterministic=True),
                            ss.schema_url.encode(),
                            sp.SerializeToString(deterministic=True)))
    return sorted(out)


def _round_trip(root: Path, req: ExportTraceServiceRequest) -> tuple[list, list[bytes]]:
    ing = Ingester(root, "t1", redaction=NO_REDACTION)
    ing.add(req)
    ing.flush()
    assert not ing.report.rejected
    with Store(root) as store:
        trace_ids = sorted({r["trace_id"] for r in store.raw_rows()})
        lines = [request_to_json(rows_to_request(store.raw_trace(bytes(t).hex())))
                 for t in trace_ids]
        rows = store.raw_rows()
    return rows, lines


# Random text may look like a secret; masked in one store, it would come back with that
# store's fingerprint and no redaction record (the reserved attribute is the redactor's own)
# and differ from the first copy. Redaction has its own tests; here it is off.
NO_REDACTION = RedactionPolicy(base=Scope(classes=frozenset()))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(req=requests())
def test_random_spans_come_back_identical_through_show_otlp_json(tmp_path_factory, req):
    first = tmp_path_factory.mktemp("first")
    rows, lines = _round_trip(first, req)
    back = ExportTraceServiceRequest()
    for line in lines:
        back.MergeFrom(request_from_json(line))
    assert span_set(back) == span_set(req)

    second = tmp_path_factory.mktemp("second")
    ing = Ingester(second, "t1", redaction=NO_REDACTION)
    for line in lines:
        ing.add(request_from_json(line))
    ing.flush()
    with Store(second) as store:
        assert store.raw_rows() == rows


def test_bytes_nan_and_dollar_keys_survive_the_round_trip(tmp_path):
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.trace_id, sp.span_id = bytes(range(1, 17)), bytes(range(1, 9))
    nan = sp.attributes.add()
    nan.key, nan.value.double_value = "x.nan", float("nan")

    raw = sp.attributes.add()
    raw.key, raw.value.bytes_value = "x.bytes", b"\x00\xff"
    tricky = sp.attributes.add()
    tricky.key = "x.kv"
    kv = tricky.value.kvlist_value.values.add()
    kv.key, kv.value.string_value = "$col", "input_messages"
    _, lines = _round_trip(tmp_path, req)
    assert span_set(request_from_json(lines[0])) == span_set(req)


def test_nan_bits_survive_the_store(tmp_path):
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.trace_id, sp.span_id = bytes(range(1, 17)), bytes(range(1, 9))
    kv = sp.attributes.add()
    kv.key, kv.value.double_value = "x.-nan", -float("nan")
    ing = Ingester(tmp_path, "t1")
    ing.add(req)
    ing.flush()
    with Store(tmp_path) as store:
        back = rows_to_request(store.raw_rows())
    assert span_set(back) == span_set(req)
    value = back.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.double_value
    assert struct.pack(">d", value) == struct.pack(">d", -float("nan"))
