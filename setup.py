"""Builds the compiled span-to-row converter; everything else is in pyproject.toml.

The extension is optional: where it cannot be compiled, records.py's reference converter does
the same work more slowly (tests/store/test_spanrows.py fails where it is missing, so CI always
runs with it).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("aitrail.store._spanrows", ["aitrail/store/_spanrows.c"],
                             extra_compile_args=["-O2", "-Wall", "-Wno-unused-variable"],
                             optional=True)])
