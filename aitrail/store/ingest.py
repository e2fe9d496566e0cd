"""The ingest pipeline shared by `aitrail ingest` and the collector:
decode -> normalize -> Parquet."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .normalize import Normalizer
from .otlp_decode import read_file
from .records import Batch, append_request
from .writer import ParquetWriter, check_tenant

# Flush to a file every this many spans: bounds memory on big files.
FLUSH_SPANS = 200_000


@dataclass
class IngestReport:
    spans: int = 0
    files_written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "file:line: what is wrong"
    rejected: list[str] = field(default_factory=list)  # "file:line: span ...: why"
    requests: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors and not self.rejected


class Ingester:
    """Accumulates requests and writes them as Parquet."""

    def __init__(self, root: Path, tenant: str = "default",
                 normalizer: Normalizer | None = None, writer_id: str | None = None) -> None:
        self.tenant = check_tenant(tenant)
        self.normalizer = normalizer or Normalizer()
        self.writer = ParquetWriter(root, writer_id)
        self.batch = Batch()
        self.report = IngestReport()

    def add(self, req: ExportTraceServiceRequest, where: str = "") -> None:
        before = len(self.batch.rejected)
        append_request(self.batch, req, self.tenant, self.normalizer)
        self.report.requests += 1
        for msg in self.batch.rejected[before:]:
            self.report.rejected.append(f"{where}: {msg}" if where else msg)
        if len(self.batch) >= FLUSH_SPANS:
            self.flush()

    def flush(self) -> None:
        if len(self.batch):
            self.report.files_written += self.writer.write(self.batch)
            self.report.spans += len(self.batch)
        self.batch = Batch()

    def add_files(self, paths: Iterable[str | Path],
                  progress: Callable[[str], None] | None = None) -> IngestReport:
        for path in paths:
            if progress:
                progress(str(path))
            for chunk in read_file(path):
                where = f"{chunk.path}:{chunk.line}"
                if chunk.error is not None:
                    self.report.errors.append(f"{where}: {chunk.error}")
                elif chunk.request is not None:
                    self.add(chunk.request, where)
        self.flush()
        return self.report
