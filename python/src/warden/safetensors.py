"""safetensors through the manager: ``load_file`` and ``safe_open`` that load the
verified, audited bytes of a registered model and give numpy arrays over them.

The arrays are views of the one ``bytes`` object the load wrote (no copy of the
weights after the verified read), so they are read-only; ``array.copy()`` gives a
writable one. Needs ``numpy``; the ``safetensors`` package itself is not used.

Example::

    import warden.safetensors
    tensors = warden.safetensors.load_file(m, "fraud-detector", "production")
    with warden.safetensors.safe_open(m, "llm", "1.2.0", file="model.safetensors") as f:
        emb = f.get_tensor("embed.weight")
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ._native import InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .manager import SecureModelManager

#: The format's limit on the JSON header (as the reference implementation).
MAX_HEADER = 100 * 1000 * 1000

_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
}


def _parse(data: bytes) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, str], int]:
    """The tensors' descriptions, the metadata, and where the data starts; every
    offset checked against the buffer."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    if len(data) < 8:
        raise InvalidInput("not a safetensors file: shorter than its header length")
    (n,) = struct.unpack_from("<Q", data, 0)
    if n > MAX_HEADER or 8 + n > len(data):
        raise InvalidInput(f"not a safetensors file: a header of {n} bytes")
    try:
        header = json.loads(bytes(data[8 : 8 + n]))
    except ValueError as e:
        raise InvalidInput(f"not a safetensors file: the header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise InvalidInput("not a safetensors file: the header is not an object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise InvalidInput("safetensors: __metadata__ is not an object")
    start = 8 + n
    size = len(data) - start
    for name, t in header.items():
        try:
            dtype, shape, (b, e) = t["dtype"], t["shape"], t["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(f"safetensors: tensor {name!r} is malformed") from None
        if dtype not in _DTYPES:
            raise InvalidInput(f"safetensors: tensor {name!r} has dtype {dtype}, which numpy cannot hold")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise InvalidInput(f"safetensors: tensor {name!r} has a malformed shape")
        count = 1
        for d in shape:
            count *= d
        item = int(_DTYPES[dtype][-1]) if dtype not in ("BOOL",) else 1
        if not (isinstance(b, int) and isinstance(e, int) and 0 <= b <= e <= size) or e - b != count * item:
            raise InvalidInput(f"safetensors: tensor {name!r} lies outside the data or has the wrong size")
    return header, meta, start


def _tensor(data: bytes, start: int, t: Dict[str, Any]) -> "np.ndarray":
    import numpy as np

    b, e = t["data_offsets"]
    dt = np.dtype(_DTYPES[t["dtype"]])
    return np.frombuffer(data, dtype=dt, count=(e - b) // dt.itemsize, offset=start + b).reshape(t["shape"])


def load(data: bytes) -> Dict[str, "np.ndarray"]:
    """Every tensor of the safetensors ``data``, as read-only numpy arrays over it."""
    header, _, start = _parse(data)
    return {name: _tensor(data, start, t) for name, t in header.items()}


def load_file(
    manager: "SecureModelManager",
    model: str,
    version: str = "production",
    *,
    file: Optional[str] = None,
    mfa: bool = False,
) -> Dict[str, "np.ndarray"]:
    """``safetensors.numpy.load_file`` for a registered model: the file loaded through
    ``manager`` (policy, verification, audit), then every tensor as a read-only array
    over the verified bytes."""
    return load(manager.load(model, version, file=file, mfa=mfa).data)


class SafeOpen:
    """What :func:`safe_open` yields: ``keys()``, ``get_tensor(name)``,
    ``metadata()``, over one verified load."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._header, self._meta, self._start = _parse(data)

    def keys(self) -> List[str]:
        return sorted(self._header)

    def metadata(self) -> Dict[str, str]:
        return dict(self._meta)

    def get_tensor(self, name: str) -> "np.ndarray":
        t = self._header.get(name)
        if t is None:
            raise KeyError(name)
        return _tensor(self._data, self._start, t)

    def __enter__(self) -> "SafeOpen":
        return self

    def __exit__(self, *exc: object) -> None:
        self._data = b""
        self._header = {}


def safe_open(
    manager: "SecureModelManager",
    model: str,
    version: str = "production",
    *,
    framework: str = "np",
    file: Optional[str] = None,
    mfa: bool = False,
) -> SafeOpen:
    """``safetensors.safe_open`` for a registered model (framework ``"np"``)."""
    if framework not in ("np", "numpy"):
        raise InvalidInput(f"framework {framework!r}: this integration gives numpy arrays (\"np\")")
    return SafeOpen(manager.load(model, version, file=file, mfa=mfa).data)
