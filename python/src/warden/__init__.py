"""Warden for Python: every model access recorded in Warden's ledger.

Entries go to the data directory's writer (``warden serve`` or ``warden writer``),
which signs them (ML-DSA) and seals them (ChaCha20-Poly1305) like every other entry;
when none runs, the first session starts one on demand, as a ``warden`` command does.
Many processes (``multiprocessing``, gunicorn workers, notebooks) may log at once:
the writer gives each entry one place in one ledger.

Example::

    from warden import SecureModelManager

    with SecureModelManager("/srv/warden") as m:
        m.log_access("alice", "fraud-detector", "load", "success", {"ip": "10.0.0.7"})
        m.log_access_batch(
            {"user_id": u, "resource": "fraud-detector", "action": "predict", "result": "success"}
            for u in users
        )
        assert m.verify().ok

Errors are typed: :class:`AccessDenied` (the operating-system user may not act as the
named principal; the refusal is itself an entry), :class:`AuditUnavailable` (nothing can
be recorded, so nothing was done), :class:`InvalidInput`, :class:`IntegrityError`, all
subclasses of :class:`WardenError`. Wrong Python types raise :class:`TypeError`.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from . import _native
from ._native import (
    AccessDenied,
    AuditUnavailable,
    IntegrityError,
    InvalidInput,
    WardenError,
)

__version__: str = _native.VERSION

__all__ = [
    "AccessDenied",
    "AuditUnavailable",
    "IntegrityError",
    "InvalidInput",
    "Receipt",
    "SecureModelManager",
    "VerifyReport",
    "WardenError",
    "compliance_report",
    "verify",
]

PathLike = Union[str, "os.PathLike[str]"]

#: ``result`` values recorded as an allowed access (case-insensitive); anything else is
#: a denial.
GRANTED = frozenset(_native.GRANTED)

#: The entry kinds of an allowed and of a refused access.
ACCESS_KIND = "model.access"
DENIED_KIND = "model.denied"


@dataclass(frozen=True)
class Receipt:
    """Where an entry landed: its index, and the size of the signed checkpoint that
    covers it (the entry is durable once you hold this)."""

    index: int
    checkpoint_size: int


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of verifying a ledger (see ``warden verify``)."""

    ok: bool
    entries: int
    checkpoints: int
    epochs: int
    decrypted: int
    findings: List[Dict[str, Any]] = field(default_factory=list)
    pending: Optional[Dict[str, Any]] = None


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if not value:
        raise InvalidInput(f"{name} must not be empty")
    return value


def verify(data_dir: PathLike, *, auditor_key: Optional[PathLike] = None) -> VerifyReport:
    """Verifies the ledger of ``data_dir``: every signature, the hash chain, epochs and
    rotation, and (with ``auditor_key``) that every entry decrypts."""
    raw = json.loads(
        _native.verify(
            os.fspath(data_dir),
            auditor_key=None if auditor_key is None else os.fspath(auditor_key),
        )
    )
    return VerifyReport(
        ok=bool(raw["ok"]),
        entries=raw["entries"],
        checkpoints=raw["checkpoints"],
        epochs=raw["epochs"],
        decrypted=raw["decrypted"],
        findings=raw.get("findings", []),
        pending=raw.get("pending"),
    )


def _micros(name: str, t: Any) -> int:
    if isinstance(t, datetime.datetime):
        if t.tzinfo is None:
            raise InvalidInput(f"{name} must be timezone-aware (UTC is datetime.timezone.utc)")
        return int(t.timestamp() * 1_000_000)
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return int(t * 1_000_000)
    raise TypeError(f"{name} must be a datetime or Unix seconds, not {type(t).__name__}")


def compliance_report(
    data_dir: PathLike,
    start: Union[datetime.datetime, float],
    end: Union[datetime.datetime, float],
    *,
    auditor_key: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """The compliance report for entries in ``[start, end)``: the best-practices
    guide's fields (``total_access_attempts``, ``successful_accesses``,
    ``denied_accesses``, ``unique_users``, ``resources_accessed``) next to Warden's own
    report under ``"warden"`` (what ``warden report`` computes, without SIEM
    coverage). Users and resources need ``auditor_key``; without it they are ``None``."""
    raw = json.loads(
        _native.compliance_report(
            os.fspath(data_dir),
            _micros("start", start),
            _micros("end", end),
            auditor_key=None if auditor_key is None else os.fspath(auditor_key),
        )
    )
    acc = raw["accesses"]
    by_model = acc.get("by_model")
    return {
        "total_access_attempts": acc["total"],
        "successful_accesses": acc["granted"],
        "denied_accesses": acc["denied"],
        "unique_users": acc.get("unique_users"),
        "resources_accessed": None if by_model is None else sorted(by_model),
        "warden": raw,
    }


class SecureModelManager:
    """A session with a Warden data directory's ledger.

    ``acting_as`` names the principal the entries are recorded for; by default, the
    principal bound to this process's operating-system user (``warden principal bind``).
    The data directory's owner and root may name any principal. ``warden_bin`` is the
    ``warden`` executable used to start a writer when none runs (default: ``WARDEN_BIN``,
    then ``PATH``). ``deadline_ms`` bounds how long one entry may wait for the writer.
    """

    def __init__(
        self,
        data_dir: PathLike,
        *,
        acting_as: Optional[str] = None,
        warden_bin: Optional[PathLike] = None,
        deadline_ms: int = 30_000,
    ) -> None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(f"data_dir must be a path, not {type(data_dir).__name__}")
        if acting_as is not None:
            _text("acting_as", acting_as)
        if not isinstance(deadline_ms, int) or deadline_ms <= 0:
            raise TypeError("deadline_ms must be a positive int")
        self._data_dir = os.fspath(data_dir)
        self._ledger: Optional[_native.Ledger] = _native.Ledger(
            self._data_dir,
            acting_as=acting_as,
            warden_bin=None if warden_bin is None else os.fspath(warden_bin),
            deadline_ms=deadline_ms,
        )

    @property
    def principal(self) -> str:
        """The principal this session records as."""
        return self._open().principal

    def _open(self) -> _native.Ledger:
        if self._ledger is None:
            raise WardenError("this SecureModelManager is closed")
        return self._ledger

    def log_access(
        self,
        user_id: str,
        resource: str,
        action: str,
        result: str,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> Receipt:
        """Records one access (the best-practices guide's ``SecurityAuditLogger`` call)
        and returns once it is durable. ``result`` values in :data:`GRANTED` are
        recorded as allowed (a ``model.access`` entry), anything else as denied (a
        ``model.denied`` entry); ``metadata`` is kept, sealed, in the entry's
        details."""
        index, size = self._open().log_access(user_id, resource, action, result, metadata)
        return Receipt(index=index, checkpoint_size=size)

    def log_access_batch(self, events: Iterable[Mapping[str, Any]]) -> List[int]:
        """Records many accesses at once; each item is a dict with the arguments of
        :meth:`log_access` (``user_id``, ``resource``, ``action``, ``result``, optional
        ``metadata``). Every item is checked before anything is sent: a bad one records
        none. All are sent before any receipt is awaited, so they share checkpoints.
        Returns the entries' indices, in order."""
        return self._open().log_access_many(events)

    def verify(self, *, auditor_key: Optional[PathLike] = None) -> VerifyReport:
        """Verifies this data directory's ledger (see :func:`verify`)."""
        return verify(self._data_dir, auditor_key=auditor_key)

    def compliance_report(
        self,
        start: Union[datetime.datetime, float],
        end: Union[datetime.datetime, float],
        *,
        auditor_key: Optional[PathLike] = None,
    ) -> Dict[str, Any]:
        """This data directory's compliance report (see :func:`compliance_report`)."""
        return compliance_report(self._data_dir, start, end, auditor_key=auditor_key)

    def close(self) -> None:
        """Ends the session (entries already returned are durable either way)."""
        self._ledger = None

    def __enter__(self) -> "SecureModelManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
