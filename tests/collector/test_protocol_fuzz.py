"""Fuzzing the receivers through the network: random and mutated request bodies never crash
the collector, never get an answer a client would misread, and never stop it from storing the
valid requests sent in between."""

from __future__ import annotations

import gzip
import http.client
import json
from pathlib import Path

import grpc
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from aitrail.store.otlp_decode import request_to_json
from aitrail.store.query import Store

from .conftest import start_collector
from .wire import (
    JSON,
    PROTOBUF,
    good_request,
    grpc_export,
    http_post,
    new_request,
    new_span,
    stored_spans,
)


def _base_request():
    """A request touching most of the schema, with fixed ids so examples replay exactly."""
    root = Span(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name="invoke_agent",
                kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=1_700_000_000_000_000_000,
                end_time_unix_nano=1_700_000_001_000_000_000,
                status=Status(code=Status.STATUS_CODE_ERROR, message="boom"))
    child = Span(trace_id=root.trace_id, span_id=bytes(range(11, 19)),
                 parent_span_id=root.span_id, name="chat gpt-4.1", kind=Span.SPAN_KIND_CLIENT,
                 start_time_unix_nano=root.start_time_unix_nano + 1,
                 end_time_unix_nano=root.end_time_unix_nano - 1)
    for key, value in {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4.1",
                       "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text",'
                                                '"content":"hi"}]}]'}.items():
        child.attributes.add(key=key).value.string_value = value
    child.attributes.add(key="gen_ai.usage.input_tokens").value.int_value = 12
    arr = child.attributes.add(key="tags").value.array_value
    arr.values.add().string_value = "a"
    arr.values.add().double_value = 1.5
    ev = child.events.add(time_unix_nano=root.start_time_unix_nano + 2, name="tool")
    ev.attributes.add(key="k").value.bool_value = True
    link = child.links.add(trace_id=bytes(range(21, 37)), span_id=bytes(range(21, 29)))
    link.attributes.add(key="l").value.bytes_value = b"\x00\x01"
    return new_request([root, child], {"deployment.environment": "test"})


BASE = _base_request()
BASE_PROTOBUF = BASE.SerializeToString()
BASE_JSON = request_to_json(BASE)
BASES = {"protobuf": BASE_PROTOBUF, "json": BASE_JSON, "gzip": gzip.compress(BASE_PROTOBUF)}


@st.composite
def mutated(draw: st.DrawFn, base: str) -> bytes:
    """A valid body (BASES[base]) after a few bit flips, byte writes, insertions, deletions
    or a cut."""
    data = bytearray(BASES[base])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


def _paths(doc: object, path: tuple = ()) -> list[tuple]:
    """Every place in a JSON document a value sits, as a path of keys and indexes."""
    found = [path]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _paths(value, (*path, i))
    return found


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=8) | st.sampled_from(["", "0" * 32, "ab", "zz"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["resourceSpans", "scopeSpans", "spans", "traceId", "spanId",
                         "attributes", "key", "value", "stringValue", "arrayValue",
                         "values", "kind", "status", "code"]) | st.text(max_size=4),
        inner, max_size=3),
    max_leaves=8)


@st.composite
def reshaped_json(draw: st.DrawFn) -> bytes:
    """The valid OTLP/JSON document with one value, anywhere in it, replaced by any JSON:
    well-formed JSON of the wrong shape, which byte mutations rarely produce."""
    doc = orjson.loads(BASE_JSON)
    path = draw(st.sampled_from(_paths(doc)))
    value = draw(JSON_VALUES)
    if not path:
        return json.dumps(value).encode()
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    # The standard library writes what orjson refuses (integers past 64 bits, Infinity):
    # the collector must refuse those too.
    return json.dumps(doc).encode()


# (transport, body): what goes on the wire and how.
CASES = st.one_of(
    st.tuples(st.just("grpc"), st.binary(max_size=512)),
    st.tuples(st.just("grpc"), mutated("protobuf")),
    st.tuples(st.just("http-protobuf"), st.binary(max_size=512)),
    st.tuples(st.just("http-protobuf"), mutated("protobuf")),
    st.tuples(st.just("http-gzip"), mutated("protobuf")),
    st.tuples(st.just("http-gzip-raw"), mutated("gzip")),
    st.tuples(st.just("http-json"), mutated("json")),
    st.tuples(st.just("http-json"), reshaped_json()),
    st.tuples(st.just("http-json"), st.text(max_size=200).map(str.encode)),
)


def test_fuzzed_requests_never_break_the_collector(tmp_path: Path):
    c = start_collector(tmp_path / "store")
    valid_ids: set[str] = set()
    answers: dict[str, set] = {"grpc": set(), "http": set()}
    conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=10)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as channel:

            @settings(max_examples=100, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow])
            @given(case=CASES, valid_over_grpc=st.booleans())
            def one_exchange(case: tuple[str, bytes], valid_over_grpc: bool) -> None:
                transport, body = case
                if transport == "grpc":
                    code = grpc_export(channel, body).code
                    # Bad data is INVALID_ARGUMENT; UNKNOWN, INTERNAL or UNAVAILABLE would
                    # mean a handler failed, or a client told to retry garbage forever.
                    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)
                    answers["grpc"].add(code)
                else:
                    headers = {"Content-Encoding": "gzip"} if "gzip" in transport else {}
                    if transport == "http-gzip":
                        body = gzip.compress(body)
                    ctype = JSON if transport == "http-json" else PROTOBUF
                    # One keep-alive connection for everything: no answer may leave it
                    # unusable (http.client reopens it only after "Connection: close").
                    status = http_post(conn, body, ctype, headers).status
                    assert status in (200, 400)
                    answers["http"].add(status)
                req, ids = good_request(1)
                if valid_over_grpc:
                    reply = grpc_export(channel, req.SerializeToString())
                    assert reply.code == grpc.StatusCode.OK
                else:
                    assert http_post(conn, req.SerializeToString()).status == 200
                valid_ids.update(ids)
                # Flush each time: a body that decodes but cannot be converted would poison
                # the WAL, and this makes hypothesis pin the example that did it.
                c.pipeline.flush()

            one_exchange()
        # The fuzzing reached both outcomes on both transports, so no path went untested.
        assert answers["grpc"] == {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
        assert answers["http"] == {200, 400}
        assert valid_ids <= set(stored_spans(c))
    finally:
        conn.close()
        c.stop(grace_s=1)


# -- examples the fuzzer found -----------------------------------------------------------------

def test_a_span_kind_the_store_cannot_hold_is_rejected_not_acknowledged(collector):
    """Proto3 enums are open, so kind 200 decodes; the kind column is int8. Acknowledged, it
    failed every later flush (and the collector's stop) with ArrowInvalid."""
    odd_kind, odd_status, fine = new_span("k"), new_span("s"), new_span("ok")
    odd_kind.kind = 200
    odd_status.status.code = -281274
    reply = grpc_export(collector.grpc_port,
                        new_request([odd_kind, odd_status, fine]).SerializeToString())
    assert reply.code == grpc.StatusCode.OK
    partial = ExportTraceServiceResponse.FromString(reply.body).partial_success
    assert partial.rejected_spans == 2
    assert "kind 200 is not a SpanKind" in partial.error_message
    assert "status.code -281274 is not a StatusCode" in partial.error_message
    assert set(stored_spans(collector)) == {fine.span_id.hex()}


def test_a_token_count_past_64_bits_is_kept_as_sent_without_breaking_flush(collector):
    """gen_ai.usage.input_tokens of 10**30 (as digits, or a double) failed every later flush
    with OverflowError once acknowledged."""
    spans = [new_span("as-string"), new_span("as-double")]
    spans[0].attributes.add(key="gen_ai.usage.input_tokens").value.string_value = "9" * 30
    spans[1].attributes.add(key="gen_ai.usage.input_tokens").value.double_value = 1e30
    body = new_request(spans).SerializeToString()
    assert http_post(collector.http_port, body).status == 200
    assert set(stored_spans(collector)) == {sp.span_id.hex() for sp in spans}
    with Store(collector.opts.store) as st:
        rows = st.sql("select name, input_tokens, attributes from spans order by name").rows
    assert [r["input_tokens"] for r in rows] == [None, None]
    sent = [orjson.loads(r["attributes"])["gen_ai.usage.input_tokens"] for r in rows]
    assert sent == [1e30, "9" * 30]
