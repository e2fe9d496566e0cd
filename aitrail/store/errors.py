"""Errors that carry a message a person can act on."""


class StoreError(Exception):
    """Base class: anything the store refuses or cannot do."""


class BadInput(StoreError):
    """Input that cannot be decoded (malformed protobuf or JSON, wrong ids)."""


class NotFound(StoreError):
    """A trace, change or span id that the store does not hold."""


class QueryError(StoreError):
    """A user query that DuckDB rejected, or one that tried to write or leave the store."""


class ConfigError(StoreError):
    """An aitrail.toml that cannot be used as written."""
