"""The local mode: a data directory on this machine, through its writer (started on
demand when none runs) and its registry."""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Dict, Iterable, List, Mapping, Optional

from . import _native
from ._types import Decision, Delivered, Loaded, Receipt


def _receipt(r: Any) -> Receipt:
    return Receipt(index=r[0], checkpoint_size=r[1])


class LocalBackend:
    def __init__(
        self,
        data_dir: str,
        acting_as: Optional[str],
        warden_bin: Optional[str],
        deadline_ms: int,
    ) -> None:
        self.data_dir = data_dir
        self._args = dict(acting_as=acting_as, warden_bin=warden_bin, deadline_ms=deadline_ms)
        self._ledger: Optional[_native.Ledger] = _native.Ledger(data_dir, **self._args)
        self._registry: Optional[_native.Registry] = None
        self._lock = threading.Lock()
        self._closed = False

    def _open_ledger(self) -> _native.Ledger:
        if self._ledger is None:
            raise _native.WardenError("this SecureModelManager is closed")
        return self._ledger

    def _open_registry(self) -> _native.Registry:
        # The registry (policy, database, blob store) opens on first use: a process
        # that only logs accesses never touches it.
        with self._lock:
            if self._closed:
                raise _native.WardenError("this SecureModelManager is closed")
            if self._registry is None:
                self._registry = _native.Registry(self.data_dir, **self._args)
            return self._registry

    @property
    def principal(self) -> str:
        return self._open_ledger().principal

    # ------------------------------------------------------------------ the ledger

    def log_access(self, user_id: Any, resource: Any, action: Any, result: Any, metadata: Any) -> Receipt:
        return _receipt(self._open_ledger().log_access(user_id, resource, action, result, metadata))

    def log_access_batch(self, events: Iterable[Mapping[str, Any]]) -> List[int]:
        return self._open_ledger().log_access_many(events)

    # ---------------------------------------------------------------- the registry

    def load(self, model: str, version: str, file: Optional[str], mfa: bool) -> Loaded:
        blob, info = self._open_registry().load_bytes(model, version, file=file, mfa=mfa)
        i = json.loads(info)
        return Loaded(
            data=memoryview(blob),
            model=i["model"],
            version=i["version"],
            file=i["file"],
            digest=i["digest"],
            size=i["size"],
            root_digest=i["root_digest"],
            receipt=Receipt(index=i["index"], checkpoint_size=i["checkpoint_size"]),
        )

    def load_to(self, model: str, version: str, dest: str, file: Optional[str], mfa: bool) -> Delivered:
        paths, info = self._open_registry().load_to(model, version, dest, file=file, mfa=mfa)
        i = json.loads(info)
        return Delivered(
            paths=[os.fspath(p) for p in paths],
            model=i["model"],
            version=i["version"],
            root_digest=i["root_digest"],
            files=i["files"],
            receipt=Receipt(index=i["index"], checkpoint_size=i["checkpoint_size"]),
        )

    def register(
        self, model: str, version: str, path: str, key_file: Optional[str], provenance: Optional[Dict[str, Any]]
    ) -> Dict[str, Any]:
        prov = None if provenance is None else json.dumps(provenance)
        return json.loads(
            self._open_registry().register(model, version, path, key_file=key_file, provenance=prov)
        )

    def promote(self, model: str, version: str, to: str, evidence: Any, mfa: bool) -> Receipt:
        ev = None if evidence is None else json.dumps(evidence)
        return _receipt(self._open_registry().promote(model, version, to, evidence=ev, mfa=mfa))

    def revoke(self, model: str, version: str, reason: str, mfa: bool) -> Receipt:
        return _receipt(self._open_registry().revoke(model, version, reason, mfa=mfa))

    def check(self, action: str, model: str, version: Optional[str], mfa: bool) -> Decision:
        allowed, reason = self._open_registry().check(action, model, version, mfa=mfa)
        return Decision(allowed=allowed, reason=reason)

    def show(self, model: str, version: str) -> Dict[str, Any]:
        return json.loads(self._open_registry().show(model, version))

    def holds_blob(self, digest: str) -> bool:
        return self._open_registry().holds_blob(digest)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            reg, self._registry = self._registry, None
            self._ledger = None
        if reg is not None:
            reg.close()
