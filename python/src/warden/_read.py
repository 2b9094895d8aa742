"""Reading a data directory's ledger: verification and the compliance report."""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Dict, Optional, Union

from . import _native
from ._native import InvalidInput
from ._types import VerifyReport

PathLike = Union[str, "os.PathLike[str]"]


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
    report under ``"warden"`` (what ``warden report`` computes: integrity, key
    rotation, incidents, each SIEM sink's coverage). Users and resources need
    ``auditor_key``; without it they are ``None``."""
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
