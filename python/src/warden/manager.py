"""``SecureModelManager``: the one object a Python process loads models and records
accesses through, on a local data directory or against a remote ``warden serve``."""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import tempfile
from typing import Any, BinaryIO, Dict, Iterable, Iterator, List, Mapping, Optional, Union

from ._native import InvalidInput, WardenError
from ._read import compliance_report, verify
from ._types import Decision, Delivered, Loaded, Receipt, VerifyReport

PathLike = Union[str, "os.PathLike[str]"]


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if not value:
        raise InvalidInput(f"{name} must not be empty")
    return value


def _opt_text(name: str, value: Any) -> Optional[str]:
    return None if value is None else _text(name, value)


def _path(name: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path, not {type(value).__name__}")
    return os.fspath(value)


class SecureModelManager:
    """Audited, policy-checked access to a Warden registry and ledger.

    Local mode, ``SecureModelManager(data_dir)``: entries go to the data directory's
    writer (``warden serve`` or ``warden writer``; started on demand when none runs,
    with ``warden_bin``, else ``WARDEN_BIN``, else ``warden`` on ``PATH``), and the
    registry is this machine's. ``acting_as`` names the principal; by default, the one
    bound to this process's operating-system user (``warden principal bind``). The data
    directory's owner and root may name any principal.

    Remote mode, ``SecureModelManager(url=..., token=...)``: the same methods against a
    ``warden serve`` over HTTPS (plain HTTP on loopback only), authenticated with a
    Warden token (default: ``WARDEN_TOKEN``).

    Every method is checked by the policy and recorded in the ledger before it returns;
    when the ledger cannot record, nothing is done (``AuditUnavailable``). Errors are
    typed: ``AccessDenied`` (and its ``Revoked``), ``IntegrityError``, ``NotFound``,
    ``Conflict``, ``InvalidInput``, ``AuditUnavailable``, all ``WardenError``; wrong
    Python types raise ``TypeError``.

    Example::

        with SecureModelManager("/srv/warden", acting_as="scorer") as m:
            model = m.load("fraud-detector", "production")
            weights = warden.safetensors.load(model.data)
            m.log_access("alice", "fraud-detector", "predict", "success", {"ip": ip})
    """

    def __init__(
        self,
        data_dir: Optional[PathLike] = None,
        *,
        url: Optional[str] = None,
        token: Optional[str] = None,
        acting_as: Optional[str] = None,
        warden_bin: Optional[PathLike] = None,
        deadline_ms: int = 30_000,
        timeout: float = 60.0,
        ca_file: Optional[PathLike] = None,
    ) -> None:
        if (data_dir is None) == (url is None):
            raise InvalidInput("give either data_dir (local mode) or url= (remote mode)")
        if not isinstance(deadline_ms, int) or isinstance(deadline_ms, bool) or deadline_ms <= 0:
            raise TypeError("deadline_ms must be a positive int")
        self._backend: Any
        if url is not None:
            from ._remote import RemoteBackend

            _text("url", url)
            tok = token if token is not None else os.environ.get("WARDEN_TOKEN")
            if tok is None:
                raise InvalidInput("remote mode needs token= (or WARDEN_TOKEN)")
            _text("token", tok)
            if acting_as is not None:
                raise InvalidInput("in remote mode the token names the principal; drop acting_as")
            if not isinstance(timeout, (int, float)) or timeout <= 0:
                raise TypeError("timeout must be a positive number of seconds")
            self._backend = RemoteBackend(
                url, tok, timeout=float(timeout), ca_file=None if ca_file is None else _path("ca_file", ca_file)
            )
        else:
            from ._local import LocalBackend

            self._backend = LocalBackend(
                _path("data_dir", data_dir),
                _opt_text("acting_as", acting_as),
                None if warden_bin is None else _path("warden_bin", warden_bin),
                deadline_ms,
            )

    @property
    def principal(self) -> Optional[str]:
        """The principal this manager acts as (``None`` in remote mode: the server
        knows it from the token)."""
        return self._backend.principal

    @property
    def remote(self) -> bool:
        """Whether this manager talks to a remote ``warden serve``."""
        return not hasattr(self._backend, "data_dir")

    # ------------------------------------------------------------------ models

    def load(
        self,
        model: str,
        version: str = "production",
        *,
        file: Optional[str] = None,
        to: Optional[PathLike] = None,
        mfa: bool = False,
    ) -> Union[Loaded, Delivered]:
        """Loads ``model`` at ``version`` (a version or an alias such as
        ``production``), checked by the policy, every byte verified against the signed
        manifest, the access durable in the ledger before anything is returned.

        Without ``to``: one file (``file``, or the version's only file) as a
        :class:`Loaded` whose ``data`` is ``bytes`` written once, in place. With
        ``to``: every file (or ``file``) written under ``to`` (or to ``to`` itself for
        one file), returned as :class:`Delivered`.

        Raises ``AccessDenied`` / ``Revoked`` (refusal recorded), ``IntegrityError``
        (stored bytes differ from the signed ones; an incident is recorded), ``NotFound``.
        """
        _text("model", model)
        _text("version", version)
        _opt_text("file", file)
        if to is not None:
            return self._backend.load_to(model, version, _path("to", to), file, bool(mfa))
        return self._backend.load(model, version, file, bool(mfa))

    @contextlib.contextmanager
    def open(
        self, model: str, version: str = "production", *, file: Optional[str] = None, mfa: bool = False
    ) -> Iterator[BinaryIO]:
        """Streams one verified file: loads it into a private (0700) temporary
        directory, yields it open for binary reading, and removes it on exit. For files
        too large for memory::

            with m.open("llm", "production", file="model.safetensors") as f:
                header = f.read(8)
        """
        _text("model", model)
        _text("version", version)
        _opt_text("file", file)
        tmp = tempfile.mkdtemp(prefix="warden-open-")
        try:
            d = self._backend.load_to(model, version, tmp, file, bool(mfa))
            if len(d.paths) != 1:
                raise InvalidInput(
                    f"{model}@{version} has {len(d.paths)} files; name the one to open with file="
                )
            with open(d.paths[0], "rb") as f:
                yield f
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def register(
        self,
        model: str,
        version: str,
        path: PathLike,
        *,
        key_file: Optional[PathLike] = None,
        provenance: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Registers the file or directory ``path`` as ``model@version``: every file
        hashed into the blob store, the manifest signed with this principal's key
        (``key_file``, default the data directory's key for the principal), the
        registration recorded. ``provenance`` is the signed provenance record
        (``datasets``, ``code_commit``, ``config_digest``, ``environment``,
        ``parent_model``). Returns the version as a dict."""
        _text("model", model)
        _text("version", version)
        p = _path("path", path)
        if provenance is not None and not isinstance(provenance, dict):
            raise TypeError("provenance must be a dict")
        kf = None if key_file is None else _path("key_file", key_file)
        return self._backend.register(model, version, p, kf, provenance)

    def promote(
        self, model: str, version: str, to: str, *, evidence: Any = None, mfa: bool = False
    ) -> Receipt:
        """Moves a version to ``validated`` (with ``evidence``, any JSON value) or
        ``production`` (approved by someone other than its registrant; the default
        policy asks for ``mfa``)."""
        _text("model", model)
        _text("version", version)
        _text("to", to)
        return self._backend.promote(model, version, to, evidence, bool(mfa))

    def revoke(self, model: str, version: str, reason: str, *, mfa: bool = False) -> Receipt:
        """Revokes a version, for good; it is never served again (``Revoked``)."""
        _text("model", model)
        _text("version", version)
        _text("reason", reason)
        return self._backend.revoke(model, version, reason, bool(mfa))

    def check(self, action: str, model: str, version: Optional[str] = None, *, mfa: bool = False) -> Decision:
        """Whether this principal may ``action`` (read, write, register, deploy, retire,
        load, revoke, audit) ``model`` (at ``version``); the decision is recorded."""
        _text("action", action)
        _text("model", model)
        _opt_text("version", version)
        return self._backend.check(action, model, version, bool(mfa))

    def show(self, model: str, version: str = "production") -> Dict[str, Any]:
        """The version: state, digests, registrant, provenance, aliases."""
        _text("model", model)
        _text("version", version)
        return self._backend.show(model, version)

    # ------------------------------------------------------------------ the ledger

    def log_access(
        self,
        user_id: str,
        resource: str,
        action: str,
        result: str,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> Receipt:
        """Records one access (the best-practices guide's ``SecurityAuditLogger`` call)
        and returns once it is durable. ``result`` values in ``warden.GRANTED`` are
        recorded as allowed (a ``model.access`` entry), anything else as denied (a
        ``model.denied`` entry); ``metadata`` is kept, sealed, in the entry's details."""
        return self._backend.log_access(user_id, resource, action, result, metadata)

    def log_access_batch(self, events: Iterable[Mapping[str, Any]]) -> List[int]:
        """Records many accesses at once; each item is a dict with the arguments of
        :meth:`log_access`. Every item is checked before anything is sent: a bad one
        records none. Returns the entries' indices, in order."""
        return self._backend.log_access_batch(events)

    def verify(self, *, auditor_key: Optional[PathLike] = None) -> VerifyReport:
        """Verifies the ledger: every signature, the hash chain, epochs and rotation,
        and (with ``auditor_key``) that every entry decrypts."""
        return self._backend_dir_call(verify, auditor_key=auditor_key)

    def compliance_report(
        self,
        start: Union[datetime.datetime, float],
        end: Union[datetime.datetime, float],
        *,
        auditor_key: Optional[PathLike] = None,
    ) -> Dict[str, Any]:
        """The compliance report for ``[start, end)`` (see
        :func:`warden.compliance_report`)."""
        return self._backend_dir_call(compliance_report, start, end, auditor_key=auditor_key)

    def _backend_dir_call(self, f: Any, *args: Any, **kw: Any) -> Any:
        d = getattr(self._backend, "data_dir", None)
        if d is None:
            return getattr(self._backend, f.__name__)(*args, **kw)
        return f(d, *args, **kw)

    def close(self) -> None:
        """Ends the session (everything already returned is durable either way)."""
        self._backend.close()

    def __enter__(self) -> "SecureModelManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
