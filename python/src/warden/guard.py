"""A guard against loading registered models around the manager with ``pickle`` or
``torch.load``.

``install(manager)`` wraps ``pickle.load``, ``pickle.loads`` and (when importable)
``torch.load``. Each wrapped call hashes its input (a path, a file object, or bytes)
with SHA-256; when the digest is the content of a file in the manager's registry, the
call is refused with :class:`AccessDenied` and the attempt is recorded in the ledger
(a ``model.denied`` entry, action ``load-bypass``). Anything else is passed through.
Registered models load through :func:`torch_load` / :func:`pickle_load` instead, which
go through the manager (policy, verification, audit) and then unpickle.

What it covers: the wrapped functions called through their modules (``pickle.load``,
``torch.load``) after ``install``, on exact copies of registered files, anywhere on
disk or in memory.

What it cannot cover, and what does: a copy that differs by one byte (another
digest); code that kept a reference to the original function before ``install``
(``from pickle import load``), ``pickle.Unpickler`` used directly, C extensions and
other processes that never call ``install``. Those are closed by the operating system:
the blob store is readable only by the data directory's owner, so a process of another
user reaches model bytes only through the manager (and the writer, which records it).
The guard is a safety net for code that shares that user, not a sandbox.
Local mode only: a remote manager has no blob store to compare with.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from ._native import AccessDenied, InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from .manager import SecureModelManager

_CHUNK = 4 << 20
_originals: Dict[str, Callable[..., Any]] = {}
_manager: "Optional[SecureModelManager]" = None


def _digest_of(source: Any) -> Optional[str]:
    """SHA-256 of what a load call would read, leaving a file object where it was;
    ``None`` when it cannot be read without consuming it."""
    h = hashlib.sha256()
    if isinstance(source, (bytes, bytearray, memoryview)):
        h.update(source)
        return h.hexdigest()
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    h.update(chunk)
        except OSError:
            return None  # the wrapped call reports it
        return h.hexdigest()
    seekable = getattr(source, "seekable", None)
    if callable(seekable) and seekable():
        pos = source.tell()
        try:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                h.update(chunk)
        finally:
            source.seek(pos)
        return h.hexdigest()
    return None


def _check(via: str, source: Any) -> None:
    m = _manager
    if m is None:
        return
    digest = _digest_of(source)
    if digest is None or not m._backend.holds_blob(digest):
        return
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None)
    m.log_access(
        m.principal,
        f"sha256:{digest}",
        "load-bypass",
        "refused",
        {"via": via, "path": None if name is None else str(name)},
    )
    raise AccessDenied(
        f"{via} of a registered model file (sha256:{digest}) outside the manager was refused and recorded; "
        "load it with warden.guard.torch_load / pickle_load or SecureModelManager.load"
    )


def _wrap(key: str, via: str, f: Callable[..., Any]) -> Callable[..., Any]:
    _originals[key] = f

    @functools.wraps(f)
    def guarded(source: Any, *args: Any, **kw: Any) -> Any:
        _check(via, source)
        return f(source, *args, **kw)

    guarded.__warden_guard__ = True  # type: ignore[attr-defined]
    return guarded


def install(manager: "SecureModelManager") -> None:
    """Guards ``pickle.load``, ``pickle.loads`` and ``torch.load`` (when torch is
    importable) for this process, against ``manager``'s registry. Installing again
    switches the manager."""
    global _manager
    if manager.remote:
        raise InvalidInput("the guard needs a local manager (it compares with the blob store)")
    _manager = manager
    if "pickle.load" not in _originals:
        pickle.load = _wrap("pickle.load", "pickle.load", pickle.load)  # type: ignore[assignment]
        pickle.loads = _wrap("pickle.loads", "pickle.loads", pickle.loads)  # type: ignore[assignment]
    if "torch.load" not in _originals:
        try:
            import torch  # type: ignore[import-not-found]
        except ImportError:
            return
        torch.load = _wrap("torch.load", "torch.load", torch.load)


def uninstall() -> None:
    """Restores the original functions."""
    global _manager
    _manager = None
    if "pickle.load" in _originals:
        pickle.load = _originals.pop("pickle.load")  # type: ignore[assignment]
        pickle.loads = _originals.pop("pickle.loads")  # type: ignore[assignment]
    if "torch.load" in _originals:
        import torch  # type: ignore[import-not-found]

        torch.load = _originals.pop("torch.load")


def pickle_load(manager: "SecureModelManager", model: str, version: str = "production", **kw: Any) -> Any:
    """Unpickles a registered model loaded through ``manager`` (audited, verified)."""
    f = _originals.get("pickle.loads", pickle.loads)
    return f(manager.load(model, version, file=kw.pop("file", None), mfa=kw.pop("mfa", False)).data, **kw)


def torch_load(manager: "SecureModelManager", model: str, version: str = "production", **kw: Any) -> Any:
    """``torch.load`` of a registered model loaded through ``manager`` (audited,
    verified); ``weights_only=True`` unless given."""
    import torch  # type: ignore[import-not-found]

    f = _originals.get("torch.load", torch.load)
    data = manager.load(model, version, file=kw.pop("file", None), mfa=kw.pop("mfa", False)).data
    kw.setdefault("weights_only", True)
    return f(io.BytesIO(data), **kw)
