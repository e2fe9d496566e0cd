"""The record: schema, decoding, normalization, Parquet files and queries.

Never imports textual or grpc (a test checks it): the collector and the TUI both stand on it.
"""
