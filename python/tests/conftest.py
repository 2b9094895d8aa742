"""Fixtures: a fresh development data directory made with the real `warden` binary
(`WARDEN_BIN`, which scripts/test-python points at the release build)."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

WARDEN = os.environ.get("WARDEN_BIN") or shutil.which("warden") or "warden"


def warden(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WARDEN_PASSPHRASE", "WARDEN_USER")}
    env["WARDEN_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [WARDEN, *args], env=env, capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL
    )


class Dir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.auditor = root / "auditor.key"

    def warden(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return warden(self.data, *args, check=check)

    def entries(self, kind: str) -> List[Dict[str, Any]]:
        out = self.warden("log", "show", "--json", "--auditor-key", str(self.auditor)).stdout
        return [e for e in map(json.loads, out.splitlines()) if e["kind"] == kind]

    def count(self, kind: str) -> int:
        out = self.warden("log", "show", "--json").stdout
        return sum(1 for e in map(json.loads, out.splitlines()) if e["kind"] == kind)


@pytest.fixture
def ddir(tmp_path: Path):
    d = Dir(tmp_path)
    d.warden("auditor", "keygen", "--out", str(d.auditor))
    d.warden("init", "--dev", "--auditor", str(d.auditor) + ".pub")
    yield d
    d.warden("writer", "--stop", check=False)


class Registry:
    """A data directory with a registered, production model (`fraud-detector@1.4.0`,
    registered by alice, validated and approved by bob) that `scorer` may load, and
    managers for each principal in the mode under test."""

    def __init__(self, d: Dir, mode: str) -> None:
        self.dir = d
        self.mode = mode
        self.server = None
        self.tokens: Dict[str, str] = {}
        self._open: List[Any] = []
        d.warden("principal", "add", "alice", "--role", "ml-engineer", "--as", "admin")
        d.warden("principal", "add", "bob", "--role", "ml-engineer", "--as", "admin")
        d.warden("principal", "add", "scorer", "--role", "service", "--service", "--as", "admin")
        d.warden("principal", "add", "sec", "--role", "security-officer", "--as", "admin")
        self.model_file = d.root / "model.safetensors"
        write_safetensors(self.model_file)
        if mode == "remote":
            self.server = Server(d)
            for p in ("alice", "bob", "scorer", "sec"):
                self.tokens[p] = self.server.token(p)
        a = self.alice()
        a.register("fraud-detector", "1.4.0", self.model_file, provenance={"code_commit": "abc123"},
                   **self.key("alice"))
        self.promote("fraud-detector", "1.4.0", "validated", evidence={"auc": 0.97})
        self.promote("fraud-detector", "1.4.0", "production")
        d.warden("principal", "grant", "scorer", "--model", "fraud-detector", "--actions", "load,read",
                 "--expires", "30d", "--as", "admin")

    def manager(self, principal: str) -> "warden.SecureModelManager":
        import warden

        if self.mode == "local":
            m = warden.SecureModelManager(self.dir.data, acting_as=principal)
        else:
            m = warden.SecureModelManager(url=self.server.url, token=self.tokens[principal])
        self._open.append(m)
        return m

    def key(self, principal: str) -> Dict[str, Any]:
        """What register needs to sign: in remote mode the client holds its key."""
        if self.mode == "local":
            return {}
        return {"key_file": self.dir.data / "keys" / "principals" / f"{principal}.key"}

    def _with_mfa(self, principal: str, method: str, *args: Any, **kw: Any) -> None:
        """A step the default policy allows only with a second factor: through the SDK
        with mfa=True locally; remotely an opaque token carries none, so the SDK's
        attempt must be refused (and recorded), and the step is taken with the CLI."""
        import warden

        m = self.manager(principal)
        if self.mode == "local":
            getattr(m, method)(*args, mfa=True, **kw)
            return
        with pytest.raises(warden.AccessDenied):
            getattr(m, method)(*args, **kw)

    def promote(self, model: str, version: str, to: str, evidence: Any = None) -> None:
        self._with_mfa("bob", "promote", model, version, to, evidence=evidence)
        if self.mode == "remote":
            args = ["model", "promote", f"{model}@{version}", "--to", to, "--as", "bob", "--mfa"]
            self.dir.warden(*args)

    def revoke(self, model: str, version: str, reason: str) -> None:
        self._with_mfa("sec", "revoke", model, version, reason)
        if self.mode == "remote":
            self.dir.warden("model", "revoke", f"{model}@{version}", "--reason", reason, "--as", "sec", "--mfa")

    def alice(self):
        return self.manager("alice")

    def bob(self):
        return self.manager("bob")

    def scorer(self):
        return self.manager("scorer")

    def sec(self):
        return self.manager("sec")

    def worker_args(self, n: int):
        if self.mode == "local":
            return ("local", str(self.dir.data), None, n)
        return ("remote", self.server.url, self.tokens["scorer"], n)

    def verify(self) -> bool:
        import warden

        return warden.verify(self.dir.data).ok

    def close(self) -> None:
        for m in self._open:
            m.close()
        if self.server is not None:
            self.server.stop()


def write_safetensors(path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(7)
    save_file(
        {"w": rng.standard_normal((64, 32)).astype(np.float32), "b": np.arange(32, dtype=np.int64)},
        str(path),
        metadata={"format": "np"},
    )


class Server:
    """A real `warden serve` on a loopback port of the system's choosing."""

    SCOPES = "model:read,model:load,model:register,model:admin,audit:write"

    def __init__(self, d: Dir, args: tuple = (), listen: str = "127.0.0.1:0") -> None:
        import subprocess

        env = {k: v for k, v in os.environ.items() if k not in ("WARDEN_PASSPHRASE", "WARDEN_USER")}
        env["WARDEN_DATA_DIR"] = str(d.data)
        self.dir = d
        self.proc = subprocess.Popen(
            [WARDEN, "serve", "--listen", listen, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = None
        seen = []
        for line in self.proc.stderr:
            seen.append(line)
            if "serving http://" in line:
                self.url = line.split("serving ", 1)[1].split()[0]
                break
        if self.url is None:
            raise RuntimeError("warden serve did not start: " + "".join(seen))

    def token(self, principal: str, scopes: str = SCOPES, expires: str = "1h") -> str:
        out = self.dir.warden(
            "token", "create", "--principal", principal, "--scopes", scopes, "--expires", expires, "--as", "admin"
        ).stdout
        return out.strip().splitlines()[-1]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(params=["local", "remote"])
def reg(request, ddir):
    r = Registry(ddir, request.param)
    yield r
    r.close()
