"""A real collector (gRPC and HTTP servers on free loopback ports) over a temporary store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aitrail.collector.auth import Authenticator
from aitrail.collector.options import ServeOptions
from aitrail.collector.serve import Collector
from aitrail.store.pipeline import Limits


def start_collector(store: Path, auth: Authenticator | None = None,
                    limits: Limits | None = None, **opts) -> Collector:
    c = Collector(ServeOptions(store=store, grpc_address="127.0.0.1:0",
                               http_address="127.0.0.1:0", writer_id="test",
                               limits=limits or Limits(flush_interval_s=3600), **opts),
                  auth or Authenticator({}))
    c.start()
    return c


@pytest.fixture()
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = start_collector(tmp_path / "store")
    try:
        yield c
    finally:
        c.stop(grace_s=1)
