"""The collector applies the store's retention policy on its own (docs/retention.md)."""

from __future__ import annotations

import shutil

from aitrail.store.integrity.verify import verify_store
from aitrail.store.retention.policy import RetentionPolicy

from .conftest import start_collector


def test_a_running_collector_retires_what_is_past_retention(sample_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(sample_store, store)
    n = len(list(store.glob("spans/*/*/*/*.parquet")))
    c = start_collector(store, retention=RetentionPolicy(days=1, interval_s=3600))
    try:
        assert c.retention.ran.wait(60)
        assert c.retention.error is None
        assert len(c.retention.last.retired) == n
    finally:
        c.stop(grace_s=1)
    assert not list(store.glob("spans/*/*/*/*.parquet"))
    report = verify_store(store)
    assert report.ok and report.retired == n
