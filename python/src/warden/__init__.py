"""Warden for Python: audited, policy-checked model loading, and every access recorded
in Warden's signed (ML-DSA), sealed (ChaCha20-Poly1305) ledger.

Entries go to the data directory's writer (``warden serve`` or ``warden writer``);
when none runs, the first session starts one on demand, as a ``warden`` command does.
Many processes (``multiprocessing``, gunicorn workers, notebooks) may work at once:
the writer gives each entry one place in one ledger.

Example::

    import warden
    from warden import SecureModelManager

    with SecureModelManager("/srv/warden", acting_as="scorer") as m:
        tensors = warden.safetensors.load_file(m, "fraud-detector", "production")
        m.log_access("alice", "fraud-detector", "predict", "success", {"ip": "10.0.0.7"})
        assert m.verify().ok

Errors are typed, chosen from the Rust error kind (never from message text):
:class:`AccessDenied` and its :class:`Revoked`, :class:`IntegrityError`,
:class:`NotFound`, :class:`Conflict`, :class:`InvalidInput`, :class:`AuditUnavailable`,
all subclasses of :class:`WardenError`. Wrong Python types raise :class:`TypeError`.
"""

from __future__ import annotations

from . import _native
from ._native import (
    AccessDenied,
    AuditUnavailable,
    Conflict,
    IntegrityError,
    InvalidInput,
    NotFound,
    Revoked,
    WardenError,
)
from ._read import compliance_report, verify
from ._types import Decision, Delivered, Loaded, Receipt, VerifyReport
from .manager import SecureModelManager

__version__: str = _native.VERSION

__all__ = [
    "AccessDenied",
    "AuditUnavailable",
    "Conflict",
    "Decision",
    "Delivered",
    "IntegrityError",
    "InvalidInput",
    "Loaded",
    "NotFound",
    "Receipt",
    "Revoked",
    "SecureModelManager",
    "VerifyReport",
    "WardenError",
    "compliance_report",
    "verify",
]

#: ``result`` values recorded as an allowed access (case-insensitive); anything else is
#: a denial.
GRANTED = frozenset(_native.GRANTED)

#: The entry kinds of an allowed and of a refused access.
ACCESS_KIND = "model.access"
DENIED_KIND = "model.denied"


def __getattr__(name: str):  # the integrations import their frameworks lazily
    if name in ("safetensors", "guard", "hf"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'warden' has no attribute {name!r}")
