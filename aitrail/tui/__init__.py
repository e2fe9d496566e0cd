"""`aitrail tui`: the responder's terminal UI (Textual).

It reads the record only through `aitrail.store.query.Store` and the store modules built on
it (replay, pivots, workspace): no SQL text and no DuckDB here (tests/tui checks).
"""
