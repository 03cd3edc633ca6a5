"""Plain data <-> bytes for the host state a store keeps (msgpack, no pickle: opening a store
never runs code from it).

Handles what ``state_dict()`` methods return: dicts, lists, tuples (kept as tuples), str,
bool, None, ints of any size, floats (NaN and inf included), numpy scalars (as Python values)
and numpy arrays (dtype and shape kept).
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

_ARRAY, _TUPLE, _BIGINT = 1, 2, 3


def _default(obj: Any):
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("object arrays are not plain data")
        return msgpack.ExtType(_ARRAY, msgpack.packb([obj.dtype.str, list(obj.shape), np.ascontiguousarray(obj).tobytes()]))
    if isinstance(obj, tuple):
        return msgpack.ExtType(_TUPLE, dumps(list(obj)))
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, int):  # only ints msgpack cannot hold (outside 64 bits) get here
        return msgpack.ExtType(_BIGINT, str(int(obj)).encode())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):  # a float subclass
        return float(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as plain data")


def _ext(code: int, data: bytes):
    if code == _ARRAY:
        dtype, shape, raw = msgpack.unpackb(data)
        return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape).copy()
    if code == _TUPLE:
        return tuple(loads(data))
    if code == _BIGINT:
        return int(data.decode())
    return msgpack.ExtType(code, data)


def dumps(obj: Any) -> bytes:
    """Plain data -> bytes."""
    try:
        return msgpack.packb(obj, default=_default, strict_types=True)
    except OverflowError:
        return msgpack.packb(_widen(obj), default=_default, strict_types=True)


def _widen(obj: Any) -> Any:
    # msgpack raises on ints past 64 bits instead of calling ``default``: wrap them first.
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, int) and not -(2**63) <= obj < 2**64:
        return msgpack.ExtType(_BIGINT, str(obj).encode())
    if isinstance(obj, dict):
        return {k: _widen(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_widen(v) for v in obj]
    if isinstance(obj, tuple):
        return msgpack.ExtType(_TUPLE, dumps([_widen(v) for v in obj]))
    return obj


def loads(data: bytes) -> Any:
    """Bytes from :func:`dumps` -> plain data."""
    return msgpack.unpackb(data, ext_hook=_ext, strict_map_key=False)
