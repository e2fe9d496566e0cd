"""The compiled span-to-row converter (store/_spanrows.c) against the reference
(records.append_request): the same requests must give the same table, column for column,
the same tenants, hour buckets and rejected-span messages, whatever the request holds and
however its bytes are laid out."""

from __future__ import annotations

import hashlib
import math
import struct

import pyarrow as pa
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aitrail.store import mappings as m
from aitrail.store import records
from aitrail.store.integrity import rows as rows_mod
from aitrail.store.normalize import Normalizer
from aitrail.store.records import Batch, SpanRows, append_request


def test_the_compiled_parts_are_built():
    """setup.py builds them as optional; CI must not quietly run without them."""
    assert records._spanrows is not None
    assert rows_mod._digests is not None


@given(st.lists(st.one_of(st.none(), st.binary(max_size=3000)), max_size=20), st.integers(0, 3))
def test_compiled_row_digests_hash_each_row_encoding(values, skip):
    """_digests.rows on hand-made buffers: a fixed-width and a string column (tests/store/
    integrity/test_rows.py holds it to the Arrow path on real tables)."""
    skip = min(skip, len(values))  # the arrays' offset: rows before it are not hashed
    data = b"".join(v or b"" for v in values)
    offsets = [0]
    for v in values:
        offsets.append(offsets[-1] + len(v or b""))
    valid = sum(1 << i for i, v in enumerate(values) if v is not None).to_bytes(3, "little")
    ids = b"".join(i.to_bytes(2, "little") for i in range(len(values)))
    columns = [(0, 2, skip, None, None, ids),
               (1, 4, skip, valid, struct.pack(f"<{len(offsets)}i", *offsets), data)]
    got = rows_mod._digests.rows(len(values) - skip, columns)
    want = [b"\x00\x01" + i.to_bytes(2, "little") + b"\xff" + (b"\xfe" if v is None else v)
            for i, v in enumerate(values)][skip:]
    assert got == [hashlib.sha256(e).digest() for e in want]


@pytest.mark.parametrize("column", [
    (0, 8, 0, None, None, b"\x00" * 15),                       # fixed: 2 values need 16 bytes
    (1, 4, 0, None, struct.pack("<3i", 0, 2, 9), b"abcd"),      # offset past the data
    (1, 4, 0, None, struct.pack("<3i", 0, 3, 2), b"abcd"),      # offsets going back
    (1, 8, 0, None, struct.pack("<2q", 0, 1), b"a"),            # 2 values need 3 offsets
    (2, 0, 9, None, None, b"\xff"),                             # bits 9 and 10 of one byte
    (3, 4, 1, None, None, b"\x00" * 8),                         # int32: values 1 and 2
    (3, 4, 0, b"", None, b"\x00" * 8),                          # an empty validity bitmap
    (3, 3, 0, None, None, b"\x00" * 8),                         # no 3-byte integers
    (7, 4, 0, None, None, b"\x00" * 8),                         # no such kind
    (3, 4, -1, None, None, b"\x00" * 8),                        # negative offset
])
def test_compiled_row_digests_refuse_buffers_that_do_not_hold_the_rows(column):
    with pytest.raises(ValueError):
        rows_mod._digests.rows(2, [column])


def test_compiled_row_digests_read_no_buffer_behind_a_null():
    nulls = b"\x00"
    assert rows_mod._digests.rows(2, [(0, 4, 0, nulls, None, None),
                                      (1, 4, 0, nulls, struct.pack("<i", 0), None),
                                      (3, 8, 0, nulls, None, b"")]) == [
        hashlib.sha256(b"\x00" * 6 + b"\xff\xfe" * 2).digest()] * 2


def both(payloads: list[bytes], tenants: list[str] | None = None, mapping=None):
    """(fast result, reference result) for the same payloads."""
    tenants = tenants or ["default"] * len(payloads)
    fast = SpanRows(Normalizer(mapping))
    fast_rejected = []
    for data, tenant in zip(payloads, tenants, strict=True):
        fast_rejected += fast.add(data, tenant)
    table, t, h, rejected = fast.finish()
    assert rejected == fast_rejected
    ref = Batch()
    normalizer = Normalizer(mapping)
    for data, tenant in zip(payloads, tenants, strict=True):
        append_request(ref, ExportTraceServiceRequest.FromString(data), tenant, normalizer)
    return (table, t, h, rejected), (ref.to_table() if len(ref) else None, ref.tenants,
                                     ref.hours, ref.rejected)


def assert_same(payloads: list[bytes], **kw) -> None:
    (table, t, h, rejected), (ref, rt, rh, rrej) = both(payloads, **kw)
    assert rejected == rrej
    assert t == rt
    assert h == rh
    if ref is None:
        assert table is None
        return
    table.validate(full=True)
    assert table.schema == ref.schema
    for name in ref.column_names:
        assert table.column(name).to_pylist() == ref.column(name).to_pylist(), name
    assert table.equals(ref)


def fast_path_takes(data: bytes) -> bool:
    builder = records._spanrows.Builder(Normalizer().normalize, records._dumps,
                                        records.AUDIT_KINDS)
    return builder.add(data, "default")


# -- generated requests ----------------------------------------------------------------------

# Keys the normalizer reads (so spans fill audit columns and lift values), and others.
_KNOWN_KEYS = sorted({k for keys in m.SCALAR_RULES.values() for k in keys}
                     | {k for keys in m.CONTENT_RULES.values() for k in keys}
                     | {m.OPENINFERENCE_MARKER, "llm.input_messages.0.message.role",
                        "llm.input_messages.0.message.content", "gen_ai.prompt.0.role",
                        "gen_ai.prompt.0.content", "traceloop.span.kind", "service.name",
                        "aitrail.change.id", "$col", "", "é"})
_keys = st.one_of(st.sampled_from(_KNOWN_KEYS), st.text(max_size=12))
_doubles = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, math.nan, -math.nan, math.inf, -math.inf]),
    st.integers(0, 2**52 - 1).map(
        lambda payload: struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000001 | payload
                                                         | (1 << 63)))[0]))


def _scalar_any(draw_kind: str, value) -> AnyValue:
    v = AnyValue()
    setattr(v, draw_kind, value)
    return v


_any_scalar = st.one_of(
    st.text(max_size=40).map(lambda s: _scalar_any("string_value", s)),
    st.sampled_from(["", "chat", "openai", "gpt-4o", "allow", "DENY", "12", "true",
                     '{"a": 1}', "[1, 2]"]).map(lambda s: _scalar_any("string_value", s)),
    st.integers(-2**63, 2**63 - 1).map(lambda i: _scalar_any("int_value", i)),
    st.booleans().map(lambda b: _scalar_any("bool_value", b)),
    _doubles.map(lambda d: _scalar_any("double_value", d)),
    st.just(AnyValue()),
)


def _array(values: list[AnyValue]) -> AnyValue:
    v = AnyValue()
    v.array_value.SetInParent()
    v.array_value.values.extend(values)
    return v


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    v = AnyValue()
    v.kvlist_value.SetInParent()
    v.kvlist_value.values.extend(KeyValue(key=k, value=x) for k, x in pairs)
    return v


_any = st.recursive(
    _any_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array),
        st.lists(st.tuples(st.sampled_from(["a", "b", "$x", "", "role"]), inner),
                 max_size=4).map(_kvlist)),
    max_leaves=8)

_attrs = st.lists(st.tuples(_keys, _any), max_size=8).map(
    lambda pairs: [KeyValue(key=k, value=v) for k, v in pairs])
_ids16 = st.one_of(st.binary(min_size=16, max_size=16), st.sampled_from([bytes(16), b"", b"x"]))
_ids8 = st.one_of(st.binary(min_size=8, max_size=8), st.sampled_from([bytes(8), b"", b"xyz"]))
_small = st.one_of(st.integers(0, 5), st.integers(-2**31, 2**31 - 1))
_u32 = st.integers(0, 2**32 - 1)
_u64 = st.integers(0, 2**64 - 1)
_event_names = st.one_of(st.sampled_from(sorted(m.CONTENT_EVENTS) + sorted(m.DOCUMENT_EVENTS)
                                         + ["exception", m.FLAG_EVENT]), st.text(max_size=8))


@st.composite
def spans(draw) -> Span:
    sp = Span(trace_id=draw(st.one_of(st.binary(min_size=16, max_size=16), _ids16)),
              span_id=draw(st.one_of(st.binary(min_size=8, max_size=8), _ids8)),
              parent_span_id=draw(st.one_of(st.just(b""), _ids8)),
              trace_state=draw(st.sampled_from(["", "a=b"])), name=draw(st.text(max_size=10)),
              kind=draw(_small), start_time_unix_nano=draw(_u64),
              end_time_unix_nano=draw(_u64), flags=draw(_u32),
              dropped_attributes_count=draw(_u32), dropped_events_count=draw(_u32),
              dropped_links_count=draw(_u32))
    sp.attributes.extend(draw(_attrs))
    for _ in range(draw(st.integers(0, 2))):
        ev = sp.events.add(time_unix_nano=draw(_u64), name=draw(_event_names),
                           dropped_attributes_count=draw(_u32))
        ev.attributes.extend(draw(_attrs))
    for _ in range(draw(st.integers(0, 1))):
        ln = sp.links.add(trace_id=draw(_ids16), span_id=draw(_ids8),
                          trace_state=draw(st.sampled_from(["", "k=v"])), flags=draw(_u32),
                          dropped_attributes_count=draw(_u32))
        ln.attributes.extend(draw(_attrs))
    if draw(st.booleans()):
        sp.status.code = draw(_small)
        sp.status.message = draw(st.sampled_from(["", "boom"]))
    return sp


@st.composite
def requests(draw) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = req.resource_spans.add(schema_url=draw(st.sampled_from(["", "https://s/1"])))
        if draw(st.booleans()):
            rs.resource.attributes.extend(draw(_attrs))
            rs.resource.dropped_attributes_count = draw(_u32)
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add(schema_url=draw(st.sampled_from(["", "u"])))
            if draw(st.booleans()):
                ss.scope.name = draw(st.sampled_from(["", "openai"]))
                ss.scope.version = draw(st.sampled_from(["", "1.0"]))
                ss.scope.attributes.extend(draw(_attrs))
                ss.scope.dropped_attributes_count = draw(_u32)
            ss.spans.extend(draw(st.lists(spans(), max_size=3)))
    return req


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests(), min_size=1, max_size=3))
def test_generated_requests_convert_like_the_reference(reqs):
    payloads = [r.SerializeToString() for r in reqs]
    assert all(fast_path_takes(p) for p in payloads)
    assert_same(payloads, tenants=[f"t{i}" for i in range(len(payloads))])


def test_the_benchmark_load_and_a_user_mapping():
    from benchmarks.ingest_file import make_load

    payloads = make_load(600, 5, span_ns=3600 * 10**9)
    assert all(fast_path_takes(p) for p in payloads)
    assert_same(payloads)
    assert_same(payloads, mapping={"request_model": ["app.model"], "policy_id": ["app.rule"]})


# -- wire layouts the fast path must read, or leave to the reference -------------------------


def _one_span(**kw) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="chat gpt-4o",
        start_time_unix_nano=1_764_000_000_000_000_000, **kw)
    sp.attributes.add(key="gen_ai.request.model", value=AnyValue(string_value="gpt-4o"))
    sp.attributes.add(key="gen_ai.operation.name", value=AnyValue(string_value="chat"))
    return req


def _with_span_bytes(span_bytes: bytes) -> bytes:
    """A request around raw span bytes (spans is field 2 of ScopeSpans, and so on)."""
    def field(number: int, payload: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload
    return field(1, field(2, field(2, span_bytes)))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _span_bytes(req: ExportTraceServiceRequest) -> bytes:
    return req.resource_spans[0].scope_spans[0].spans[0].SerializeToString()


def test_fields_in_any_order_and_unknown_fields():
    sp = _one_span().resource_spans[0].scope_spans[0].spans[0]
    sp.status.message = "fine"
    sp.events.add(name="exception", time_unix_nano=5)
    # Each field serialized alone, concatenated backwards, with unknown fields between.
    parts = []
    for fd, value in sp.ListFields():
        one = Span()
        if hasattr(value, "extend"):  # a repeated field
            getattr(one, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(one, fd.name).CopyFrom(value)
        else:
            setattr(one, fd.name, value)
        parts.append(one.SerializeToString())
    unknown = _varint(100 << 3 | 0) + _varint(7) + _varint(101 << 3 | 2) + _varint(2) + b"hi"
    data = _with_span_bytes(unknown.join(reversed(parts)))
    assert fast_path_takes(data)
    assert_same([data])


@pytest.mark.parametrize("extra", [
    # status sent twice: protobuf merges the two messages
    _varint(15 << 3 | 2) + _varint(2) + _varint(3 << 3) + _varint(2),
    # name sent twice: the last one counts
    _varint(5 << 3 | 2) + _varint(5) + b"again",
    # kind with the wrong wire type (kept as an unknown field by protobuf)
    _varint(6 << 3 | 2) + _varint(1) + b"x",
])
def test_layouts_left_to_the_reference_convert_the_same(extra):
    base = _one_span()
    base.resource_spans[0].scope_spans[0].spans[0].status.message = "first"
    data = _with_span_bytes(_span_bytes(base) + extra)
    ExportTraceServiceRequest.FromString(data)  # valid protobuf
    assert not fast_path_takes(data)
    assert_same([data, _one_span().SerializeToString()])


def test_bytes_values_go_to_the_reference():
    req = _one_span()
    req.resource_spans[0].scope_spans[0].spans[0].attributes.add(
        key="blob", value=AnyValue(bytes_value=b"\x00\xff"))
    data = req.SerializeToString()
    assert not fast_path_takes(data)
    assert_same([data])


def test_invalid_utf8_is_refused_like_the_reference():
    data = _with_span_bytes(_span_bytes(_one_span()) + _varint(5 << 3 | 2) + _varint(2)
                            + b"\xc3\x28")
    assert not fast_path_takes(data)
    with pytest.raises(DecodeError):
        SpanRows(Normalizer()).add(data, "default")


def test_rejected_spans_are_named_like_the_reference():
    req = _one_span()
    ss = req.resource_spans[0].scope_spans[0]
    ss.spans.add(trace_id=bytes(16), span_id=b"\x03" * 8)
    ss.spans.add(trace_id=b"\x01" * 16, span_id=b"", kind=300)
    ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x04" * 8, parent_span_id=b"ab")
    ss.spans.add(trace_id=b"\x01" * 16, span_id=b"\x05" * 8).status.code = -129
    (_, _, _, rejected), _ = both([req.SerializeToString()])
    assert len(rejected) == 4
    assert_same([req.SerializeToString()])


class _OddNormalizer(Normalizer):
    """Returns one audit value of the wrong type."""

    def __init__(self, values: dict) -> None:
        super().__init__()
        self.values = values

    def normalize(self, *args, **kw):
        out, lifted = super().normalize(*args, **kw)
        return {**out, **self.values}, lifted


@pytest.mark.parametrize("values", [{"input_tokens": "12"}, {"request_model": 5},
                                    {"review_required": 1}, {"input_tokens": 2**64}])
def test_an_audit_value_of_the_wrong_type_fails_both_ways(values):
    data = _one_span().SerializeToString()
    with pytest.raises((TypeError, OverflowError)):
        rows = SpanRows(_OddNormalizer(values))
        rows.add(data, "default")
        rows.finish()
    batch = Batch()
    append_request(batch, ExportTraceServiceRequest.FromString(data), "default",
                   _OddNormalizer(values))
    with pytest.raises((TypeError, OverflowError, pa.ArrowInvalid)):
        batch.to_table()


def test_audit_values_of_every_type_and_none():
    values = {"input_tokens": -(2**63), "output_tokens": 2**63 - 1, "review_required": False,
              "normalizer_version": 65535, "request_model": "é" * 30, "reviewer": None,
              "not_a_column": object()}
    data = _one_span().SerializeToString()
    rows = SpanRows(_OddNormalizer(values))
    rows.add(data, "default")
    table = rows.finish()[0]
    batch = Batch()
    append_request(batch, ExportTraceServiceRequest.FromString(data), "default",
                   _OddNormalizer(values))
    assert table.equals(batch.to_table())
    assert table.column("review_required").to_pylist() == [False]


_digests_u64 = st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 40),
                         st.integers(0, 40).map(lambda k: k << 40 | 7))  # collide in the table


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.lists(st.lists(_digests_u64, max_size=10), max_size=30),
       st.lists(_digests_u64, max_size=20))
def test_the_compiled_digest_window_forgets_like_the_reference(capacity, batches, probes):
    from aitrail.store.pipeline import DigestWindow, _PyDigestWindow

    assert DigestWindow is records._spanrows.DigestWindow
    fast, ref = DigestWindow(capacity), _PyDigestWindow(capacity)
    for batch in batches:
        fast.extend(batch)
        ref.extend(batch)
        assert len(fast) == len(ref)
        assert all((d in fast) == (d in ref) for d in batch + probes)
    with pytest.raises(OverflowError):
        fast.extend([-1])
