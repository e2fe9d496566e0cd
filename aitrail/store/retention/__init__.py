"""Retention and legal hold (docs/retention.md)."""
