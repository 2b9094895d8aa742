"""The remote mode: the same methods against a ``warden serve`` over HTTP(S), with a
Warden token. Plain HTTP only to loopback; TLS 1.3 otherwise. Errors are chosen from
the server's error code (its documented ``error.code``), never from message text."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, BinaryIO, Dict, Iterable, List, Mapping, Optional, Tuple

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
from ._types import Decision, Delivered, Loaded, Receipt

_CHUNK = 1 << 20
#: Most accesses per request (the server's limit).
MAX_BATCH = 10_000
#: Largest JSON answer read.
_MAX_JSON = 64 << 20

_CODES = {
    "unauthenticated": AccessDenied,
    "denied": AccessDenied,
    "revoked": Revoked,
    "not_found": NotFound,
    "conflict": Conflict,
    "bad_request": InvalidInput,
    "digest_mismatch": InvalidInput,
    "body_too_large": InvalidInput,
    "unsupported_media_type": InvalidInput,
    "range_not_satisfiable": InvalidInput,
    "integrity_failure": IntegrityError,
    "audit_unavailable": AuditUnavailable,
    # The registry's database is down or failing over: refused, retry later (the
    # module's own mapping of a store failure, too).
    "store_unavailable": AuditUnavailable,
}


def _q(s: str, safe: str = "") -> str:
    return urllib.parse.quote(s, safe=safe)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _no_mfa(mfa: bool) -> None:
    if mfa:
        raise InvalidInput(
            "in remote mode a second factor comes from the credential (an OIDC token whose "
            "amr names one), not from the client; drop mfa="
        )


def _access(i: int, e: Mapping[str, Any]) -> Dict[str, Any]:
    if not isinstance(e, Mapping):
        raise TypeError(f"event {i} must be a dict")
    out: Dict[str, Any] = {}
    for k in ("user_id", "resource", "action", "result"):
        if k not in e:
            raise InvalidInput(f"event {i} has no '{k}'")
        v = e[k]
        if not isinstance(v, str):
            raise TypeError(f"event {i}: {k} must be str, not {type(v).__name__}")
        if not v:
            raise InvalidInput(f"event {i}: {k} must not be empty")
        out[k] = v
    m = e.get("metadata")
    if m is not None:
        if not isinstance(m, dict):
            raise TypeError(f"event {i}: metadata must be a dict")
        try:
            json.dumps(m, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise InvalidInput(f"event {i}: metadata is not JSON ({err})") from None
        out["metadata"] = m
    return out


class RemoteBackend:
    def __init__(self, url: str, token: str, *, timeout: float, ca_file: Optional[str]) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise InvalidInput(f"url {url!r}: expected https://HOST[:PORT]")
        if u.scheme == "http" and not _loopback(u.hostname):
            raise InvalidInput(f"url {url!r}: plain HTTP is allowed to loopback only; use https://")
        self.base = url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._ctx: Optional[ssl.SSLContext] = None
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            self._ctx = ctx

    principal = None  # the server knows it from the token

    # ------------------------------------------------------------------ HTTP

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: Optional[BinaryIO] = None,
        length: Optional[int] = None,
        stream: bool = False,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self._token}", "User-Agent": f"warden-python/{_native.VERSION}"}
        payload: Any = None
        if body is not None:
            payload = json.dumps(body, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        elif data is not None:
            payload = data
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Length"] = str(length)
        req = urllib.request.Request(self.base + path, data=payload, method=method, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=self._timeout, context=self._ctx)
        except urllib.error.HTTPError as e:
            raise self._error(e) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, ssl.SSLError) as e:
            reason = getattr(e, "reason", e)
            raise AuditUnavailable(f"cannot reach {self.base} ({reason}); nothing was done") from None
        if stream:
            return resp
        with resp:
            raw = resp.read(_MAX_JSON + 1)
        if len(raw) > _MAX_JSON:
            raise WardenError("the server's answer is too large")
        return json.loads(raw) if raw else None

    def _error(self, e: "urllib.error.HTTPError") -> WardenError:
        try:
            err = json.loads(e.read(1 << 16))["error"]
            code, message = err["code"], err["message"]
        except (ValueError, KeyError, TypeError):
            code, message = "", e.reason
        if code == "unauthenticated":
            message = "the server refused the token (missing, unknown, expired or revoked)"
        if code == "rate_limited":
            retry = e.headers.get("retry-after", "?")
            return WardenError(f"rate limited by {self.base}; retry after {retry} s")
        return _CODES.get(code, WardenError)(f"{message} (HTTP {e.code})")

    def _version(self, model: str, version: str) -> str:
        return f"/v1/models/{_q(model)}/versions/{_q(version)}"

    # ------------------------------------------------------------------ the ledger

    def log_access(self, user_id: Any, resource: Any, action: Any, result: Any, metadata: Any) -> Receipt:
        e = _access(0, {"user_id": user_id, "resource": resource, "action": action, "result": result, "metadata": metadata})
        r = self._request("POST", "/v1/audit/accesses", {"events": [e]})["receipts"][0]
        return Receipt(index=r["index"], checkpoint_size=r["tree_size"])

    def log_access_batch(self, events: Iterable[Mapping[str, Any]]) -> List[int]:
        evs = [_access(i, e) for i, e in enumerate(events)]
        out: List[int] = []
        for k in range(0, len(evs), MAX_BATCH):
            got = self._request("POST", "/v1/audit/accesses", {"events": evs[k : k + MAX_BATCH]})
            out.extend(r["index"] for r in got["receipts"])
        return out

    # ---------------------------------------------------------------- the registry

    def show(self, model: str, version: str) -> Dict[str, Any]:
        return self._request("GET", self._version(model, version))

    def _one_file(self, info: Dict[str, Any], file: Optional[str]) -> Dict[str, Any]:
        files = info["files"]
        if file is not None:
            for f in files:
                if f["name"] == file:
                    return f
            raise NotFound(f"{info['model']}@{info['version']} has no file {file!r}")
        if len(files) != 1:
            raise InvalidInput(
                f"{info['model']}@{info['version']} has {len(files)} files; name one with file=, or load to a directory with to="
            )
        return files[0]

    def _download(self, info: Dict[str, Any], f: Dict[str, Any], sink: Any) -> Receipt:
        """Streams one file into ``sink(chunk)``, hashing it; the bytes must be the
        signed ones (digest and size) or IntegrityError."""
        path = self._version(info["model"], info["version"]) + "/files/" + _q(f["name"], safe="/")
        resp = self._request("GET", path, stream=True)
        h = hashlib.sha256()
        n = 0
        try:
            with resp:
                index = int(resp.headers.get("x-warden-audit-index", "-1"))
                size = int(resp.headers.get("x-warden-audit-tree-size", "0"))
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    n += len(chunk)
                    if n > f["size"]:
                        break
                    h.update(chunk)
                    sink(chunk)
        except (OSError, ValueError) as e:
            raise IntegrityError(f"{f['name']}: the download broke off ({e}); the server records why") from None
        if n != f["size"] or h.hexdigest() != f["digest"]:
            raise IntegrityError(f"{f['name']}: the bytes received do not match the signed digest")
        return Receipt(index=index, checkpoint_size=size)

    def load(self, model: str, version: str, file: Optional[str], mfa: bool) -> Loaded:
        _no_mfa(mfa)
        info = self.show(model, version)
        f = self._one_file(info, file)
        buf = bytearray(f["size"])
        pos = 0

        def sink(chunk: bytes) -> None:
            nonlocal pos
            buf[pos : pos + len(chunk)] = chunk
            pos += len(chunk)

        try:
            r = self._download(info, f, sink)
        except BaseException:
            buf[:] = bytes(len(buf))  # nothing unverified stays behind
            raise
        return Loaded(
            data=memoryview(buf).toreadonly(),
            model=info["model"],
            version=info["version"],
            file=f["name"],
            digest=f["digest"],
            size=f["size"],
            root_digest=info["root_digest"],
            receipt=r,
        )

    def load_to(self, model: str, version: str, dest: str, file: Optional[str], mfa: bool) -> Delivered:
        _no_mfa(mfa)
        info = self.show(model, version)
        files = [self._one_file(info, file)] if file is not None else info["files"]
        single = len(files) == 1 and not os.path.isdir(dest)
        stage_dir = os.path.dirname(os.path.abspath(dest)) if single else dest
        if not os.path.isdir(stage_dir):
            raise InvalidInput(f"{stage_dir} is not a directory")
        staged: List[Tuple[str, str]] = []
        receipt = Receipt(index=-1, checkpoint_size=0)
        try:
            for f in files:
                target = dest if single else os.path.join(dest, *f["name"].split("/"))
                os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".warden-load-", dir=os.path.dirname(os.path.abspath(target)))
                staged.append((tmp, target))
                with os.fdopen(fd, "wb") as out:
                    receipt = self._download(info, f, out.write)
                    out.flush()
                    os.fsync(out.fileno())
            paths = []
            for tmp, target in staged:
                os.link(tmp, target)  # never replaces an existing file
                paths.append(target)
        finally:
            for tmp, _ in staged:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
        return Delivered(
            paths=paths,
            model=info["model"],
            version=info["version"],
            root_digest=info["root_digest"],
            files=[{"name": f["name"], "digest": f["digest"], "size": f["size"]} for f in files],
            receipt=receipt,
        )

    def register(
        self, model: str, version: str, path: str, key_file: Optional[str], provenance: Optional[Dict[str, Any]]
    ) -> Dict[str, Any]:
        if key_file is None:
            raise InvalidInput("in remote mode register needs key_file=: your principal's signing key")
        files = _native.registration_files(path)
        signed = []
        for name, p, size in files:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    h.update(chunk)
            digest = h.hexdigest()
            with open(p, "rb") as f:
                self._request(
                    "PUT", f"/v1/models/{_q(model)}/blobs/sha256:{digest}", data=f, length=size
                )
            signed.append((name, digest, size))
        prov = None if provenance is None else json.dumps(provenance)
        _, envelope = _native.sign_registration(model, version, signed, key_file, provenance=prov)
        got = self._request("POST", self._version(model, version), {"envelope": json.loads(envelope)})
        return got["version"]

    def promote(self, model: str, version: str, to: str, evidence: Any, mfa: bool) -> Receipt:
        _no_mfa(mfa)
        body: Dict[str, Any] = {"to": to}
        if evidence is not None:
            body["evidence"] = evidence
        a = self._request("POST", self._version(model, version) + "/promote", body)["audit"]
        return Receipt(index=a["index"], checkpoint_size=a["tree_size"])

    def revoke(self, model: str, version: str, reason: str, mfa: bool) -> Receipt:
        _no_mfa(mfa)
        a = self._request("POST", self._version(model, version) + "/revoke", {"reason": reason})["audit"]
        return Receipt(index=a["index"], checkpoint_size=a["tree_size"])

    def check(self, action: str, model: str, version: Optional[str], mfa: bool) -> Decision:
        _no_mfa(mfa)
        if version is None:
            raise InvalidInput("in remote mode a decision is about a version: give version=")
        d = self._request("POST", self._version(model, version) + "/decision", {"action": action})
        return Decision(allowed=bool(d["allowed"]), reason=d["reason"])

    def holds_blob(self, digest: str) -> bool:
        raise InvalidInput("the guard needs a local manager")

    def verify(self, **_: Any) -> Any:
        raise InvalidInput(
            "verify reads the ledger's files: run it where the data directory is "
            "(SecureModelManager(data_dir) or `warden verify`)"
        )

    def compliance_report(self, *_: Any, **__: Any) -> Any:
        raise InvalidInput(
            "compliance_report reads the ledger's files: run it where the data directory is "
            "(SecureModelManager(data_dir) or `warden report`)"
        )

    def close(self) -> None:
        pass
