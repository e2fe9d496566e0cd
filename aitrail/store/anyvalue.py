"""OTLP AnyValue <-> JSON-ready Python values, keeping every OTLP type.

Plain JSON already tells string, bool, int (orjson keeps 64-bit ints exact) and double
(orjson writes 1.0, not 1) apart. What JSON cannot say is tagged with a one-key object:

- bytes                 -> {"$bytes": "<base64>"}
- NaN / +-Infinity      -> {"$double": "NaN" | "Infinity" | "-Infinity"}, or the IEEE bits
                           as "0x7ff8..." for a NaN other than the usual one (sign, payload)
- a kvlist with a key starting with "$", or with repeated keys
                        -> {"$kvlist": [[key, value], ...]}
- an empty AnyValue     -> null
- placeholder for a value stored in an audit column (top-level span attributes only)
                        -> {"$col": "<column>"}

So the JSON reads naturally in SQL (`attributes->>'gen_ai.request.model'`) and still turns
back into the identical AnyValue.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

_SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


_CANONICAL_NAN = struct.pack(">d", math.nan)


def _double(x: float) -> Any:
    if math.isfinite(x):
        return x
    if math.isnan(x):
        bits = struct.pack(">d", x)
        return {"$double": "NaN" if bits == _CANONICAL_NAN else "0x" + bits.hex()}
    return {"$double": "Infinity" if x > 0 else "-Infinity"}


def _special_double(text: str) -> float:
    if text.startswith("0x"):
        return struct.unpack(">d", bytes.fromhex(text[2:]))[0]
    return _SPECIAL_DOUBLES[text]


def to_py(v: AnyValue) -> Any:
    """One AnyValue as a JSON-ready value (see the module docstring for tags)."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "bool_value":
        return v.bool_value
    if which == "double_value":
        return _double(v.double_value)
    if which == "array_value":
        return [to_py(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return kvlist_to_py(v.kvlist_value.values)
    if which == "bytes_value":
        return {"$bytes": base64.b64encode(v.bytes_value).decode()}
    return None


def kvlist_to_py(kvs: Iterable[KeyValue]) -> Any:
    pairs = [(kv.key, to_py(kv.value)) for kv in kvs]
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys) or any(k.startswith("$") for k in keys):
        return {"$kvlist": [[k, v] for k, v in pairs]}
    return dict(pairs)


def attrs_to_dict(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """Top-level attribute list as an ordered dict (OTLP requires unique keys)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        # Fast path for the common scalar types; everything else goes through to_py.
        if which == "string_value":
            out[kv.key] = v.string_value
        elif which == "int_value":
            out[kv.key] = v.int_value
        elif which == "bool_value":
            out[kv.key] = v.bool_value
        else:
            out[kv.key] = to_py(v)
    return out


def from_py(x: Any, out: AnyValue | None = None) -> AnyValue:
    """The inverse of `to_py`."""
    v = out if out is not None else AnyValue()
    if x is None:
        return v
    if isinstance(x, bool):
        v.bool_value = x
    elif isinstance(x, int):
        v.int_value = x
    elif isinstance(x, float):
        v.double_value = x
    elif isinstance(x, str):
        v.string_value = x
    elif isinstance(x, list):
        arr = v.array_value
        arr.SetInParent()
        for item in x:
            from_py(item, arr.values.add())
    elif isinstance(x, dict):
        if len(x) == 1:
            (tag, payload), = x.items()
            if tag == "$bytes":
                v.bytes_value = base64.b64decode(payload)
                return v
            if tag == "$double":
                v.double_value = _special_double(payload)
                return v
            if tag == "$kvlist":
                kvl = v.kvlist_value
                kvl.SetInParent()
                for key, item in payload:
                    kv = kvl.values.add()
                    kv.key = key
                    from_py(item, kv.value)
                return v
        kvl = v.kvlist_value
        kvl.SetInParent()
        for key, item in x.items():
            kv = kvl.values.add()
            kv.key = key
            from_py(item, kv.value)
    else:
        raise TypeError(f"cannot encode {type(x).__name__} as an OTLP AnyValue")
    return v


def dict_to_attrs(d: dict[str, Any], out: Any) -> None:
    """Fill a repeated KeyValue field from an attribute dict."""
    for key, item in d.items():
        kv = out.add()
        kv.key = key
        from_py(item, kv.value)
