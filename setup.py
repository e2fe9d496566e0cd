"""Builds the compiled span-to-row converter and row digests; the rest is in pyproject.toml.

Both extensions are optional: where one cannot be compiled, the pure Python code beside it
does the same work more slowly (records.append_request, integrity/rows.py's Arrow join), and
tests/store/test_spanrows.py fails, so CI always runs with them. The digests need OpenSSL's
headers (Debian's libssl-dev, on every machine here).
"""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Wno-unused-variable"]

setup(ext_modules=[
    Extension("aitrail.store._spanrows", ["aitrail/store/_spanrows.c"],
              extra_compile_args=_FLAGS, optional=True),
    # Row digests from Arrow buffers with the GIL released, through hashlib's OpenSSL.
    Extension("aitrail.store.integrity._digests", ["aitrail/store/integrity/_digests.c"],
              libraries=["crypto"], extra_compile_args=_FLAGS, optional=True),
])
