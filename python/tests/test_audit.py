"""The audit half of the SDK: log_access (one and batched), verify, typed errors, many
processes at once, and one writer shared with the CLI."""

import multiprocessing
import os
from pathlib import Path

import pytest

import warden
from warden import AccessDenied, AuditUnavailable, InvalidInput, SecureModelManager


def test_log_access_is_recorded_sealed_and_verifies(ddir):
    with SecureModelManager(ddir.data) as m:
        r = m.log_access("alice", "fraud-detector", "load", "success", {"ip": "10.0.0.7"})
        d = m.log_access("mallory", "fraud-detector", "load", "denied")
        assert d.index == r.index + 1 and d.checkpoint_size > d.index
        report = m.verify(auditor_key=ddir.auditor)
    assert report.ok and report.findings == [] and report.decrypted == report.entries
    got = {e["index"]: e["event"] for e in ddir.entries("model.access") + ddir.entries("model.denied")}
    assert got[r.index]["user"] == "alice" and got[r.index]["decision"] == "allow"
    assert got[r.index]["model"] == "fraud-detector"
    assert got[r.index]["details"] == {"result": "success", "metadata": {"ip": "10.0.0.7"}}
    assert got[d.index]["decision"] == "deny"
    # The entry says which operating-system user sent it; the file holds ciphertext only.
    assert got[r.index]["via"].startswith("os-user=")
    assert b"alice" not in Path(warden._native.log_path(str(ddir.data))).read_bytes()


def test_a_batch_gets_contiguous_receipts_and_one_epoch_with_the_cli(ddir):
    events = [
        {"user_id": f"u{i % 7}", "resource": "churn", "action": "predict", "result": "success"}
        for i in range(5000)
    ]
    rotations = ddir.count("key.rotation")
    with SecureModelManager(ddir.data) as m:
        idx = m.log_access_batch(events)
    assert idx == list(range(idx[0], idx[0] + 5000))
    # The CLI appends through the same writer the SDK started: no new epoch.
    ddir.warden("log", "append", "--kind", "model.access", "--event", '{"user":"cli"}')
    assert ddir.count("key.rotation") == rotations + 1
    assert ddir.count("model.access") == 5001
    assert warden.verify(ddir.data).ok


def _worker(args):
    data, n, w = args
    with SecureModelManager(data) as m:
        return [m.log_access(f"worker{w}", "fraud-detector", "load", "success").index for _ in range(n)]


def test_sixteen_processes_log_at_once_each_access_once(ddir):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(16) as pool:
        results = pool.map(_worker, [(str(ddir.data), 25, w) for w in range(16)])
    indices = [i for r in results for i in r]
    assert len(indices) == len(set(indices)) == 400
    users = [e["event"]["user"] for e in ddir.entries("model.access")]
    assert sorted(users) == sorted(f"worker{w}" for w in range(16) for _ in range(25))
    assert warden.verify(ddir.data).ok


def test_bad_input_raises_typed_errors_and_records_nothing(ddir, tmp_path):
    with pytest.raises(InvalidInput, match="not a readable Warden data directory"):
        SecureModelManager(tmp_path / "missing")
    with pytest.raises(TypeError):
        SecureModelManager(42)  # type: ignore[arg-type]
    with SecureModelManager(ddir.data) as m:
        before = ddir.count("model.access")
        with pytest.raises(TypeError):
            m.log_access(5, "m", "load", "success")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            m.log_access("", "m", "load", "success")
        with pytest.raises(InvalidInput):
            m.log_access("a", "m", "load", "success", {"blob": "x" * 100_000})
        with pytest.raises(InvalidInput, match="has no 'result'"):
            m.log_access_batch(
                [
                    {"user_id": "a", "resource": "m", "action": "load", "result": "success"},
                    {"user_id": "a", "resource": "m", "action": "load"},
                ]
            )
        with pytest.raises(InvalidInput):
            m.log_access("a", "m", "load", "success", {"x": float("nan")})
        assert ddir.count("model.access") == before


def test_a_principal_the_os_user_may_not_act_as_is_refused_and_recorded(ddir):
    import shutil
    import subprocess
    import sys
    import tempfile

    py = "/usr/bin/python3"
    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists(py):
        pytest.skip("needs root, setpriv and a system python3 to act as another OS user")
    ddir.warden("principal", "add", "eng", "--role", "ml-engineer", "--as", "admin")
    # The operator moves the socket where user `nobody` may connect; the writer is
    # stopped first, since a running one keeps the socket it was started with.
    ddir.warden("writer", "--stop")
    shared = Path(tempfile.mkdtemp())
    shared.chmod(0o755)
    sock = shared / "writer.sock"
    with open(ddir.data / "warden.toml", "a") as f:
        f.write(f'\n[writer]\nsocket = "{sock}"\nsocket_mode = 0o666\n')
    ddir.warden("log", "append", "--kind", "system.check", "--event", "{}")
    code = (
        "import warden, sys\n"
        "try:\n"
        f"    warden.SecureModelManager({str(ddir.data)!r}, acting_as='eng')\n"
        "except warden.AccessDenied as e:\n"
        "    print('denied:', e); sys.exit(3)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e); sys.exit(1)\n"
    )
    package_root = str(Path(warden.__file__).parent.parent)
    p = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "-i",
         f"WARDEN_WRITER_SOCKET={sock}", f"PYTHONPATH={package_root}", py, "-c", code],
        capture_output=True, text=True,
    )
    try:
        assert p.returncode == 3, p.stdout + p.stderr
        assert "nobody" in p.stdout and "principal bind" in p.stdout, p.stdout
        refusals = [e for e in ddir.entries("auth.failure")
                    if e["event"].get("action") == "writer.identity"]
        assert refusals and refusals[-1]["event"]["details"]["claimed"] == "eng"
    finally:
        ddir.warden("writer", "--stop", check=False)
        shutil.rmtree(shared, ignore_errors=True)


def test_no_writer_and_no_way_to_start_one_is_audit_unavailable(ddir, monkeypatch):
    monkeypatch.delenv("WARDEN_BIN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AuditUnavailable, match="no `warden` executable"):
        SecureModelManager(ddir.data)


def test_a_tampered_ledger_fails_verification(ddir):
    with SecureModelManager(ddir.data) as m:
        m.log_access_batch(
            [{"user_id": "a", "resource": "m", "action": "load", "result": "success"}] * 50
        )
    ddir.warden("writer", "--stop")
    log = Path(warden._native.log_path(str(ddir.data)))
    data = bytearray(log.read_bytes())
    data[len(data) // 2] ^= 0x01
    log.write_bytes(bytes(data))
    report = warden.verify(ddir.data)
    assert not report.ok and report.findings


def test_compliance_report_has_the_guides_fields_and_exact_counts(ddir):
    import datetime

    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    with SecureModelManager(ddir.data) as m:
        m.log_access_batch(
            [{"user_id": "alice", "resource": "fraud", "action": "load", "result": "success"}] * 3
            + [{"user_id": "bob", "resource": "churn", "action": "load", "result": "denied"}] * 2
        )
        end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
        # One SIEM sink, exported up to here: the report shows its coverage.
        ddir.warden("export", "--to", f"file:{ddir.root / 'siem.log'}", "--format", "policy")
        r = m.compliance_report(start, end, auditor_key=ddir.auditor)
        blind = m.compliance_report(start, end)
    assert r["total_access_attempts"] == 5
    assert (r["successful_accesses"], r["denied_accesses"]) == (3, 2)
    assert r["unique_users"] == 2 and r["resources_accessed"] == ["churn", "fraud"]
    assert r["warden"]["integrity"]["invalid"] == []
    [sink] = r["warden"]["siem"]
    assert sink["format"] == "policy" and sink["delivered_in_period"] >= 5
    # Without the auditor key the counts stay exact; who and what stay sealed.
    assert blind["total_access_attempts"] == 5
    assert blind["unique_users"] is None and blind["resources_accessed"] is None
    with pytest.raises(InvalidInput):
        warden.compliance_report(ddir.data, end, start)
    with pytest.raises(InvalidInput):
        warden.compliance_report(ddir.data, datetime.datetime(2026, 1, 1), end)
