"""Tamper evidence for the store (docs/integrity.md): row digests (rows.py), per-writer
append-only leaf logs (log.py) forming RFC 6962 trees (merkle.py), Ed25519-signed
checkpoints (keys.py), the writers' hooks (publish.py) and `aitrail verify` (verify.py)."""
