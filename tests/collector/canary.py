"""The redaction canary: a corpus of realistic fake secrets planted in every place a span or a
log record carries text, built with the OpenTelemetry SDK, and a scanner that looks for them
in every byte of a store directory, in every form they could be stored in.

A secret is "found" in a store when any of its forms occurs in the bytes of any file, or in
the decoded values of a Parquet or Arrow file (their pages are zstd / lz4 compressed, so the
raw bytes alone would prove nothing), or as a word of a tantivy text index.
"""

from __future__ import annotations

import base64
import binascii
import json
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TraceFlags

from aitrail.store.redaction import BUILTIN, fingerprint
from aitrail.store.text_index import MAX_WORD, TEXT_DIR, TextIndexes, words

from ..store.redaction_samples import ALNUM, Fakes

# Every class, the optional ones too, and one custom rule: the canary covers them all.
CUSTOM_RULE = {"name": "acme-session", "pattern": r"\bacme_sess_[A-Za-z0-9]{32}\b"}
ALL_CLASSES = ["cloud_key", "vcs_token", "saas_token", "private_key", "jwt", "bearer",
               "password", "connection_string", "payment_card", "email", "phone", "custom"]
POLICY_DOC = {"redaction": {"classes": ALL_CLASSES, "rules": [CUSTOM_RULE]}}
CONTROL_DOC = {"redaction": {"classes": []}}  # redaction switched off

MESSAGES = "gen_ai.input.messages"
# Where a span carries each secret, as the redaction record names the place.
SPAN_PATHS = ("name", "status.message", "attributes.canary.note",
              f"attributes.{MESSAGES}[0].parts[0].content", "events[0].attributes.canary.event",
              "links[0].attributes.canary.link")
LOG_PATHS = ("body", "attributes.canary.log")


@dataclass(frozen=True)
class Plant:
    rule: str
    cls: str
    text: str    # what the application sent: the secret in context
    secret: str  # what must never be stored

    def forms(self) -> list[str]:
        """The secret as written, and the pieces that identify it when it is stored
        differently: a card's digits, each line of a PEM body."""
        out = [self.secret]
        if self.cls == "payment_card":
            out.append("".join(c for c in self.secret if c.isdigit()))
        if self.cls == "private_key":
            out += [ln for ln in self.secret.splitlines() if len(ln) >= 16
                    and not ln.startswith("-----")]
        return out

    def fp(self, key: bytes) -> str:
        """The fingerprint the store must record for this secret."""
        if self.cls == "custom":
            return fingerprint(key, self.secret)
        rule = next(r for r in BUILTIN if r.name == self.rule)
        return fingerprint(key, rule.fingerprint_text(self.secret))


def corpus(seed: int) -> list[Plant]:
    """One or more realistic fake secrets of every rule class; every seed gives new ones."""
    f = Fakes(seed)
    pw = f.password()
    bearer = f.s(ALNUM, 40)
    sess = "acme_sess_" + f.s(ALNUM, 32)
    email = f"{f.s(string.ascii_lowercase, 9)}.{f.s(string.ascii_lowercase, 7)}@example-corp.io"
    phone = f"+4420{f.s(string.digits, 8)}"
    items = [
        ("aws-access-key-id", "cloud_key", "export AWS_ACCESS_KEY_ID={}", f.aws_key_id()),
        ("aws-secret-access-key", "cloud_key", "aws_secret_access_key = {}", f.aws_secret()),
        ("gcp-api-key", "cloud_key", "https://maps.googleapis.com/maps/api/geocode/json?key={}",
         f.gcp_api_key()),
        ("github-pat", "vcs_token", "my token is {} can you check the CI", f.github_pat()),
        ("github-fine-grained-pat", "vcs_token", "GITHUB_TOKEN={}", f.github_fine_grained()),
        ("gitlab-pat", "vcs_token", "use the token {} for the registry", f.gitlab_pat()),
        ("npm-access-token", "vcs_token", "//registry.npmjs.org/:_authToken={}", f.npm()),
        ("slack-token", "saas_token", "SLACK_BOT_TOKEN: {}", f.slack_bot()),
        ("stripe-key", "saas_token", "stripe.api_key = '{}'", f.stripe_live()),
        ("openai-api-key", "saas_token", "OPENAI_API_KEY={}", f.openai_project()),
        ("anthropic-api-key", "saas_token", 'client = Anthropic(api_key="{}")', f.anthropic()),
        ("huggingface-token", "saas_token", "huggingface-cli login --token {}",
         f.huggingface()),
        ("sendgrid-api-token", "saas_token", "SENDGRID_API_KEY={}", f.sendgrid()),
        ("private-key", "private_key", "here is the deploy key:\n{}\nplease add it", f.pem()),
        ("private-key", "private_key", "{}", f.pem("EC PRIVATE KEY", 3)),
        ("private-key", "private_key", "ssh key:\n{}", f.pem("OPENSSH PRIVATE KEY", 6)),
        ("jwt", "jwt", "the session cookie was {} yesterday", f.jwt()),
        ("bearer-token", "bearer",
         "curl -H 'Authorization: Bearer {}' https://api.acme.dev/v1/orders", bearer),
        ("url-credentials", "connection_string",
         "DATABASE_URL=postgres://orders_app:{}@db.prod.internal:5432/orders", pw),
        ("password-assignment", "password", 'db:\n  password = "{}"\n  pool: 5',
         f.password()),
        ("payment-card", "payment_card", "please charge card {} for the renewal",
         f.card("visa", " ")),
        ("payment-card", "payment_card", "card on file: {}", f.card("mastercard")),
        ("payment-card", "payment_card", "Amex {} exp 04/29", f.card("amex", " ")),
        ("payment-card", "payment_card", "refund to {} please", f.card("discover", "-")),
        ("email", "email", "contact {} about the invoice", email),
        ("phone", "phone", "call me back on {} after 5pm", phone),
        ("acme-session", "custom", "cookie acme_session={}", sess),
    ]
    return [Plant(rule, cls, text.format(secret), secret) for rule, cls, text, secret in items]


# -- the corpus as the OpenTelemetry SDK sends it ----------------------------------------------

def sdk_spans(plants: list[Plant], service: str) -> list[ReadableSpan]:
    """Span i carries plant i in every place of SPAN_PATHS; one more span sits under a
    resource whose attributes `canary.r<i>` carry every plant."""
    out: list[ReadableSpan] = []
    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("canary")
    other = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, False,
                        TraceFlags(1))
    for i, p in enumerate(plants):
        messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": p.text}]}])
        link = Link(other, {"canary.link": p.text})
        with tracer.start_as_current_span(p.text, links=[link]) as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "canary.plant": i,
                                 "canary.note": p.text, MESSAGES: messages})
            span.add_event("canary", {"canary.event": p.text})
            span.set_status(Status(StatusCode.ERROR, p.text))
    provider.shutdown()
    out += mem.get_finished_spans()
    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(
        {"service.name": service, **{f"canary.r{i}": p.text for i, p in enumerate(plants)}}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    with provider.get_tracer("canary").start_as_current_span("resource carrier"):
        pass
    provider.shutdown()
    out += mem.get_finished_spans()
    return out


def sdk_logs(plants: list[Plant], service: str) -> list[ReadableLogRecord]:
    """Record i carries plant i in its body and an attribute; one more record sits under a
    resource carrying every plant, with a map body `{"b<i>": ...}` holding them again."""
    out: list[ReadableLogRecord] = []
    for resource, bodies in (({"service.name": service}, True),
                             ({"service.name": service,
                               **{f"canary.r{i}": p.text for i, p in enumerate(plants)}}, False)):
        mem = InMemoryLogRecordExporter()
        provider = LoggerProvider(resource=Resource.create(resource))
        provider.add_log_record_processor(SimpleLogRecordProcessor(mem))
        logger = provider.get_logger("canary")
        if bodies:
            for i, p in enumerate(plants):
                logger.emit(body=p.text, attributes={"canary.log": p.text, "canary.plant": i})
        else:
            logger.emit(body={f"b{i}": p.text for i, p in enumerate(plants)},
                        attributes={"canary.plant": -1})
        provider.shutdown()
        out += mem.get_finished_logs()
    return out


def trace_request(plants: list[Plant], service: str) -> ExportTraceServiceRequest:
    return encode_spans(sdk_spans(plants, service))


def logs_request(plants: list[Plant], service: str) -> ExportLogsServiceRequest:
    return encode_logs(sdk_logs(plants, service))


# -- the scanner -------------------------------------------------------------------------------

def encodings(text: str) -> dict[str, bytes]:
    """`text` as it could sit in a file: raw, JSON-escaped, URL-encoded, hex, and base64
    (standard and URL-safe) at each of the three alignments it can have inside a longer
    encoded value (only the characters that depend on `text` alone are kept)."""
    raw = text.encode()
    out = {"raw": raw, "json": json.dumps(text)[1:-1].encode(),
           "url": quote(text, safe="").encode(), "url+": quote_plus(text).encode(),
           "hex": binascii.hexlify(raw), "HEX": binascii.hexlify(raw).upper()}
    for pad in range(3):
        for name, enc in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            full = enc(b"\0" * pad + raw)
            start = (4 * pad + 2) // 3  # characters that mix in the bytes before
            end = 4 * ((pad + len(raw)) // 3)  # and the ones that mix in the bytes after
            out[f"{name}@{pad}"] = full[start:end]
    return out


@dataclass
class Finding:
    plant: Plant
    form: str       # which encoding
    where: str      # file (relative), and "values" / "index" when decoded


@dataclass
class Scan:
    files: int = 0
    parquet_files: int = 0
    arrow_files: int = 0
    indexes: int = 0
    kinds: set[str] = field(default_factory=set)  # "wal", "parquet", "seen", ...
    findings: list[Finding] = field(default_factory=list)

    def found(self, plant: Plant) -> list[Finding]:
        return [f for f in self.findings if f.plant is plant]


def _strings(value: object) -> Iterator[str | bytes]:
    if isinstance(value, str | bytes):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _table_bytes(table: pa.Table) -> bytes:
    """Every string and binary value of a table (any nesting), decompressed, one per line,
    plus its schema metadata."""
    parts: list[bytes] = []
    for value in _strings(table.to_pylist()):
        parts.append(value.encode() if isinstance(value, str) else value)
    for k, v in (table.schema.metadata or {}).items():
        parts += [k, v]
    return b"\n".join(parts)


def _kind(rel: Path) -> str:
    if rel.parts[0] == "_wal":
        return "seen" if "seen" in rel.parts else rel.suffix.lstrip(".") or rel.name
    if TEXT_DIR in rel.parts:
        return "text-index"
    return rel.suffix.lstrip(".") or rel.name


def scan_store(root: Path, plants: list[Plant], extra: dict[str, bytes] | None = None) -> Scan:
    """Look for every plant, in every form, everywhere under `root` (and in `extra`)."""
    needles = [(p, f"{form}:{enc}", data) for p in plants for form in p.forms()
               for enc, data in encodings(form).items()]
    scan = Scan()
    blobs: list[tuple[str, bytes]] = list((extra or {}).items())
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root)
        scan.files += 1
        scan.kinds.add(_kind(rel))
        data = path.read_bytes()
        blobs.append((str(rel), data))
        if data[:4] == b"PAR1":
            scan.parquet_files += 1
            blobs.append((f"{rel} values", _table_bytes(pq.read_table(path))))
        elif data[:6] == b"ARROW1":
            scan.arrow_files += 1
            blobs.append((f"{rel} values", _table_bytes(ipc.open_file(path).read_all())))
    for where, data in blobs:
        for plant, form, needle in needles:
            if needle in data:
                scan.findings.append(Finding(plant, form, where))
    _scan_indexes(root, plants, scan)
    return scan


def index_words(plant: Plant) -> list[str]:
    """Words of the secret a text index would hold and no other text has: long runs of
    letters and digits, or of 13 digits and more (a card written without separators)."""
    return [w for w in words(plant.secret) if 12 <= len(w.encode()) <= MAX_WORD
            and ((w.isdigit() and len(w) >= 13)
                 or (any(c.isdigit() for c in w) and any(c.isalpha() for c in w)))]


def _scan_indexes(root: Path, plants: list[Plant], scan: Scan) -> None:
    """Ask every tantivy index for each secret's words: its terms are stored compressed."""
    indexes = TextIndexes()
    for part in sorted({p.parent.parent for p in root.rglob(f"{TEXT_DIR}/COVERS")}):
        scan.indexes += 1
        for plant in plants:
            for w in index_words(plant):
                hits = indexes.search(part, [w.lower()], 10)
                if hits is not None and hits.spans:
                    scan.findings.append(Finding(plant, f"word:{w}",
                                                 f"{part.relative_to(root)} index"))
