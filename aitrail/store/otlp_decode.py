"""Bytes and files -> ExportTraceServiceRequest. Pure functions, no I/O beyond reading files.

OTLP/JSON differs from protobuf's canonical JSON mapping in one way that matters: trace and
span ids are hex, not base64 (OTLP spec, "JSON Protobuf Encoding"). We convert ids before
handing the dict to `json_format`, and back again when writing JSON. Unknown fields are
ignored, as the spec requires of receivers.
"""

from __future__ import annotations

import base64
import binascii
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .errors import BadInput

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_to_b64(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{where}: expected a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise BadInput(f"{where}: {value!r} is not hex (OTLP/JSON ids are hex)") from None
    return base64.b64encode(raw).decode()


def _b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _convert_ids(obj: dict, conv, where: str) -> None:
    for f in _ID_FIELDS:
        if obj.get(f):
            obj[f] = conv(obj[f], f"{where}.{f}") if conv is _hex_to_b64 else conv(obj[f])


def _walk_spans(doc: dict) -> Iterator[tuple[dict, str]]:
    for i, rs in enumerate(doc.get("resourceSpans") or ()):
        for j, ss in enumerate(rs.get("scopeSpans") or ()):
            for k, sp in enumerate(ss.get("spans") or ()):
                where = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                yield sp, where
                for m, link in enumerate(sp.get("links") or ()):
                    yield link, f"{where}.links[{m}]"


def request_from_json_obj(doc: Any) -> ExportTraceServiceRequest:
    """An OTLP/JSON document (already parsed) as a request; raises BadInput with a path."""
    if not isinstance(doc, dict):
        raise BadInput(f"expected a JSON object with resourceSpans, got {type(doc).__name__}")
    if "resourceSpans" not in doc:
        if "resourceLogs" in doc or "resourceMetrics" in doc:
            raise BadInput("this is OTLP logs or metrics, not traces (no resourceSpans)")
        raise BadInput("not an OTLP trace export: no resourceSpans key")
    return _parse(doc, _walk_spans(doc), ExportTraceServiceRequest(),
                  "resourceSpans, scopeSpans, spans and links")


def _walk_logs(doc: dict) -> Iterator[tuple[dict, str]]:
    for i, rl in enumerate(doc.get("resourceLogs") or ()):
        for j, sl in enumerate(rl.get("scopeLogs") or ()):
            for k, lr in enumerate(sl.get("logRecords") or ()):
                yield lr, f"resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}]"


def _parse(doc: dict, objects: Iterator[tuple[dict, str]], message: Any, lists: str) -> Any:
    """Hex ids -> base64, then protobuf's JSON mapping (unknown fields ignored)."""
    try:
        for obj, where in objects:
            _convert_ids(obj, _hex_to_b64, where)
    except (AttributeError, TypeError):
        raise BadInput(f"not valid OTLP/JSON: {lists} must be lists of objects") from None
    try:
        return json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise BadInput(f"not valid OTLP/JSON: {e}") from None


def _load(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise BadInput(f"malformed JSON: {e}") from None


def logs_request_from_json(data: bytes | str) -> ExportLogsServiceRequest:
    """OTLP/JSON logs (hex trace and span ids) as a request; raises BadInput."""
    doc = _load(data)
    if not isinstance(doc, dict) or "resourceLogs" not in doc:
        raise BadInput("not an OTLP logs export: no resourceLogs key")
    return _parse(doc, _walk_logs(doc), ExportLogsServiceRequest(),
                  "resourceLogs, scopeLogs and logRecords")


def request_from_json(data: bytes | str) -> ExportTraceServiceRequest:
    return request_from_json_obj(_load(data))


def request_from_protobuf(data: bytes) -> ExportTraceServiceRequest:
    try:
        return ExportTraceServiceRequest.FromString(data)
    except DecodeError as e:
        raise BadInput(f"malformed protobuf: {e}") from None


def logs_request_to_json(req: Any) -> bytes:
    """An ExportLogsServiceRequest as a line of OTLP/JSON (hex ids, as the file exporter)."""
    doc = json_format.MessageToDict(req, use_integers_for_enums=True)
    for rl in doc.get("resourceLogs") or ():
        for sl in rl.get("scopeLogs") or ():
            for lr in sl.get("logRecords") or ():
                _convert_ids(lr, _b64_to_hex, "")
    return orjson.dumps(doc)


def request_to_json(req: ExportTraceServiceRequest) -> bytes:
    """One request as a line of OTLP/JSON, as the OTel Collector's file exporter writes it."""
    doc = json_format.MessageToDict(req, use_integers_for_enums=True)
    for obj, _ in _walk_spans(doc):
        _convert_ids(obj, _b64_to_hex, "")
    return orjson.dumps(doc)


@dataclass
class FilePayload:
    """One undecoded request read from a file (`decode_payload` turns it into requests,
    possibly in another process), or the error reading that part of the file produced."""

    path: str
    line: int
    kind: str  # "json" or "protobuf"
    data: bytes = b""
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def decode_payload(kind: str, data: bytes) -> list[ExportTraceServiceRequest]:
    """The requests in one payload; raises BadInput with what is wrong."""
    if kind == "protobuf":
        try:
            return [request_from_protobuf(data)]
        except BadInput as e:
            raise BadInput(f"{e} (not JSON either)") from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise BadInput(f"malformed JSON: {e}") from None
    docs = doc if isinstance(doc, list) else [doc]
    return [request_from_json_obj(d) for d in docs]


def read_file(path: str | Path) -> Iterator[FilePayload]:
    """Yield every request payload of an OTLP file: JSON (one request per line, or one
    document per file) or protobuf, either optionally gzip-compressed. A file that cannot be
    read yields one error payload; a bad line is found when its payload is decoded, and the
    other lines are still read."""
    p = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        yield FilePayload(p, 0, "", error=f"cannot read: {e.strerror or e}")
        return
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, binascii.Error) as e:
            yield FilePayload(p, 0, "", error=f"broken gzip data: {e}")
            return
    stripped = data.strip()
    if not stripped:
        yield FilePayload(p, 0, "", error="file is empty")
        return
    if stripped[:1] not in (b"{", b"["):
        yield FilePayload(p, 1, "protobuf", data)
        return
    lines = data.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip())
    try:  # one JSON document per line (the file exporter's format)?
        orjson.loads(lines[first])
        jsonl = True
    except orjson.JSONDecodeError:
        jsonl = False  # a pretty-printed document, or a broken first line
    if not jsonl:
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError:
            jsonl = True  # not one document either: report line by line
    if not jsonl:
        yield FilePayload(p, first + 1, "json", data)
        return
    for n, line in enumerate(lines, start=1):
        if line.strip():
            yield FilePayload(p, n, "json", line)
