"""The values the SDK returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


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


@dataclass(frozen=True)
class Loaded:
    """A verified, audited load of one file.

    ``data`` is a read-only ``memoryview`` of the file's bytes, checked against the
    SHA-256 in the signed manifest before the access entry was made durable. The bytes
    were read once, into memory of the load's own; ``numpy.frombuffer``, ``hashlib``,
    ``pickle.loads`` and slicing use them in place (``bytes(data)`` copies).
    ``receipt`` is the ledger entry of the access."""

    data: memoryview
    model: str
    version: str
    file: str
    digest: str
    size: int
    root_digest: str
    receipt: Receipt


@dataclass(frozen=True)
class Delivered:
    """A verified, audited load to the filesystem: the files written (0600, renamed
    into place only once every byte matched), and the receipt of the access."""

    paths: List[str]
    model: str
    version: str
    root_digest: str
    files: List[Dict[str, Any]]
    receipt: Receipt

    @property
    def path(self) -> str:
        """The one path written (the first, when the version has several files)."""
        return self.paths[0]


@dataclass(frozen=True)
class Decision:
    """A policy decision, as recorded in the ledger."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed
