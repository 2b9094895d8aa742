"""Remote mode's own failures: an unreachable server, an expired token, plain HTTP off
loopback, and a local-only method; each the typed exception with a clear message,
nothing recorded half."""

import socket
import time

import pytest

from warden import AccessDenied, AuditUnavailable, InvalidInput, SecureModelManager


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_audit_unavailable():
    m = SecureModelManager(url=f"http://127.0.0.1:{_free_port()}", token="wdn_x", timeout=5)
    with pytest.raises(AuditUnavailable, match="cannot reach"):
        m.load("fraud-detector", "production")
    with pytest.raises(AuditUnavailable, match="nothing was done"):
        m.log_access("alice", "fraud-detector", "load", "success")


def test_plain_http_off_loopback_and_missing_token_are_refused(monkeypatch):
    monkeypatch.delenv("WARDEN_TOKEN", raising=False)
    with pytest.raises(InvalidInput, match="loopback only"):
        SecureModelManager(url="http://192.0.2.7:8443", token="t")
    with pytest.raises(InvalidInput, match="needs token"):
        SecureModelManager(url="https://warden.example")
    with pytest.raises(InvalidInput, match="either data_dir"):
        SecureModelManager()
    with pytest.raises(TypeError):
        SecureModelManager(url="https://warden.example", token=7)  # type: ignore[arg-type]


def test_an_expired_token_is_refused_clearly_and_recorded(reg):
    if reg.mode != "remote":
        pytest.skip("tokens are the remote mode's credential")
    tok = reg.server.token("scorer", expires="1s")
    time.sleep(2.1)
    failures = reg.dir.count("auth.failure")
    m = SecureModelManager(url=reg.server.url, token=tok)
    with pytest.raises(AccessDenied, match="expired"):
        m.load("fraud-detector", "production")
    with pytest.raises(AccessDenied):
        m.log_access("alice", "fraud-detector", "load", "success")
    assert reg.dir.count("auth.failure") == failures + 2
    assert reg.dir.count("model.access") == 0


def test_a_token_without_audit_write_may_not_record_accesses(reg):
    if reg.mode != "remote":
        pytest.skip("scopes are the remote mode's")
    tok = reg.server.token("scorer", scopes="model:read,model:load")
    m = SecureModelManager(url=reg.server.url, token=tok)
    denied = reg.dir.count("model.denied")
    with pytest.raises(AccessDenied, match="audit:write"):
        m.log_access("alice", "fraud-detector", "load", "success")
    assert reg.dir.count("model.denied") == denied + 1
    # With the scope, the entry names the credential that sent it.
    r = reg.scorer().log_access("alice", "fraud-detector", "load", "success", {"ip": "10.1.2.3"})
    e = next(e for e in reg.dir.entries("model.access") if e["index"] == r.index)["event"]
    assert e["user"] == "alice" and e["via"].startswith("principal=scorer")
    with pytest.raises(InvalidInput, match="ledger's files"):
        reg.scorer().verify()
