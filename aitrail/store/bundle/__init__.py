"""Trace bundles for postmortems (docs/bundles.md): `export` writes a self-contained,
verifiable bundle; `verify` checks one offline (no store, no DuckDB: this package's
__init__ imports nothing, and verify.py only pyarrow, cryptography and protobuf); `import_`
loads one into another store; `timeline` writes the narrative."""
