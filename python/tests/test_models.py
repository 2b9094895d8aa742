"""The registry half of the SDK: register -> promote -> load, the policy's verification
loop, tampering, revocation, many processes loading at once, bad input, and the
safetensors and pickle integrations. Each test runs in local mode and against a real
`warden serve` (remote mode), through the same methods."""

import hashlib
import multiprocessing
import os
import pickle
from pathlib import Path

import pytest

import warden
import warden.guard
import warden.safetensors
from warden import (
    AccessDenied,
    IntegrityError,
    InvalidInput,
    NotFound,
    Revoked,
    SecureModelManager,
    WardenError,
)


def test_register_promote_load_round_trip(reg):
    data = reg.model_file.read_bytes()
    loaded = reg.scorer().load("fraud-detector", "production")
    # Read-only memory of the load's own, shared rather than copied.
    assert loaded.data == data and loaded.data.readonly and len(loaded.data) == len(data)
    with pytest.raises(TypeError):
        loaded.data[0] = 0  # type: ignore[index]
    assert loaded.version == "1.4.0" and loaded.file == "model.safetensors"
    assert loaded.digest == hashlib.sha256(data).hexdigest() and loaded.size == len(data)
    # Exactly one access entry, for the scorer, at the receipt's index.
    acc = reg.dir.entries("model.access")
    assert [e["index"] for e in acc] == [loaded.receipt.index]
    assert acc[0]["event"]["user"] == "scorer" and acc[0]["event"]["version"] == "1.4.0"
    # To a path, and streamed.
    out = reg.dir.root / "out.bin"
    d = reg.scorer().load("fraud-detector", "1.4.0", to=out)
    assert Path(d.path).read_bytes() == data and d.paths == [str(out)]
    assert os.stat(out).st_mode & 0o077 == 0
    with reg.scorer().open("fraud-detector", "production") as f:
        assert f.read(8) == data[:8] and len(f.read()) == len(data) - 8
    assert len(reg.dir.entries("model.access")) == 3
    # The safetensors integration gives the same tensors as safetensors itself.
    import numpy as np
    from safetensors.numpy import load_file

    want = load_file(str(reg.model_file))
    got = warden.safetensors.load_file(reg.scorer(), "fraud-detector", "production")
    assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)
    with warden.safetensors.safe_open(reg.scorer(), "fraud-detector") as st:
        assert st.keys() == sorted(want)
        assert np.array_equal(st.get_tensor("b"), want["b"])
    assert len(reg.dir.entries("model.access")) == 5


def test_the_policys_verification_loop_written_with_the_sdk(reg):
    """SEC-ML: before serving, verify each production model's digest, record the check,
    and confirm the audit log itself verifies."""
    m = reg.scorer()
    for model in ["fraud-detector"]:
        assert m.check("load", model, "production").allowed
        info = m.show(model, "production")
        loaded = m.load(model, "production")
        assert hashlib.sha256(loaded.data).hexdigest() == info["files"][0]["digest"]
        assert info["root_digest"] == loaded.root_digest
        m.log_access("scorer", model, "integrity-check", "success", {"digest": loaded.digest})
    assert reg.verify()
    assert reg.dir.count("model.decision") >= 1


def test_a_tampered_blob_raises_integrity_error_and_writes_an_incident(reg):
    digest = hashlib.sha256(reg.model_file.read_bytes()).hexdigest()
    blob = next(p for p in (reg.dir.data / "blobs").rglob("*") if p.is_file() and digest in p.name)
    b = bytearray(blob.read_bytes())
    b[len(b) // 2] ^= 1
    os.chmod(blob, 0o600)
    blob.write_bytes(bytes(b))
    incidents = reg.dir.count("incident")
    with pytest.raises(IntegrityError):
        reg.scorer().load("fraud-detector", "production")
    # A server responds to the incident by revoking the version (its detector), so
    # the next load there may already be refused as revoked.
    again = IntegrityError if reg.mode == "local" else (IntegrityError, Revoked)
    with pytest.raises(again):
        reg.scorer().load("fraud-detector", "1.4.0", to=reg.dir.root / "t.bin")
    assert not (reg.dir.root / "t.bin").exists()
    assert not [p for p in reg.dir.root.iterdir() if p.name.startswith(".warden-load-")]
    inc = reg.dir.entries("incident")
    assert len(inc) >= incidents + (2 if reg.mode == "local" else 1)
    integrity = [e for e in inc[incidents:] if e["event"]["details"].get("type") == "integrity"]
    assert integrity and all(e["event"]["details"]["severity"] == "CRITICAL" for e in integrity)
    if reg.mode == "local":
        # Locally the access entry follows verification; a server records the
        # download's access first, then the incident when the bytes fail.
        assert reg.dir.count("model.access") == 0


def test_a_revoked_version_raises_revoked(reg):
    reg.revoke("fraud-detector", "1.4.0", "poisoned training data")
    denied = reg.dir.count("model.denied")
    with pytest.raises(Revoked) as e:
        reg.alice().load("fraud-detector", "1.4.0")
    assert isinstance(e.value, AccessDenied)
    assert reg.dir.count("model.denied") == denied + 1
    # The production alias left with the revocation.
    with pytest.raises(NotFound):
        reg.scorer().load("fraud-detector", "production")
    assert reg.dir.count("model.access") == 0


def _load_worker(args):
    mode, target, token, n = args
    if mode == "local":
        m = SecureModelManager(target, acting_as="scorer")
    else:
        m = SecureModelManager(url=target, token=token)
    with m:
        return [m.load("fraud-detector", "production").receipt.index for _ in range(n)]


def test_sixteen_processes_loading_give_one_entry_per_load(reg):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(16) as pool:
        got = pool.map(_load_worker, [reg.worker_args(4)] * 16)
    indices = [i for r in got for i in r]
    assert len(indices) == len(set(indices)) == 64
    acc = reg.dir.entries("model.access")
    assert sorted(e["index"] for e in acc) == sorted(indices)
    assert reg.verify()


def test_bad_input_raises_typed_errors_and_writes_nothing_half(reg, tmp_path):
    m = reg.alice()
    before = {k: reg.dir.count(k) for k in ("registry.register", "model.access")}
    blobs_before = sorted(p.name for p in (reg.dir.data / "blobs").rglob("*"))
    with pytest.raises(TypeError):
        m.load(42, "production")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        m.register("m2", "1", 3.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="must not be empty"):
        m.load("", "production")
    with pytest.raises(InvalidInput):
        m.register("m2", "1", tmp_path / "missing.bin")
    with pytest.raises(NotFound):
        m.load("no-such-model", "1")
    with pytest.raises(InvalidInput):
        m.promote("fraud-detector", "1.4.0", "sideways")
    with pytest.raises(InvalidInput):
        m.check("fly", "fraud-detector")
    after = {k: reg.dir.count(k) for k in before}
    assert after == before
    assert sorted(p.name for p in (reg.dir.data / "blobs").rglob("*")) == blobs_before
    assert issubclass(NotFound, WardenError) and issubclass(Revoked, AccessDenied)


def test_pickle_of_a_registered_model_is_refused_unless_through_the_manager(reg, tmp_path):
    if reg.mode != "local":
        pytest.skip("the guard compares with the local blob store")
    obj = {"weights": list(range(1000))}
    f = tmp_path / "model.pkl"
    f.write_bytes(pickle.dumps(obj))
    a = reg.alice()
    a.register("pickled", "1", f, **reg.key("alice"))
    copy = tmp_path / "copy.pkl"
    copy.write_bytes(f.read_bytes())
    warden.guard.install(reg.alice())
    try:
        denied = reg.dir.count("model.denied")
        with pytest.raises(AccessDenied, match="registered model file"):
            with open(copy, "rb") as fh:
                pickle.load(fh)
        with pytest.raises(AccessDenied):
            pickle.loads(copy.read_bytes())
        assert reg.dir.count("model.denied") == denied + 2
        assert pickle.loads(pickle.dumps([1, 2])) == [1, 2]  # anything else passes
        assert warden.guard.pickle_load(a, "pickled", "1") == obj
    finally:
        warden.guard.uninstall()
    assert pickle.loads(copy.read_bytes()) == obj


def test_huggingface_hub_downloads_through_warden(reg, tmp_path):
    """warden.hf.configure points the real huggingface_hub client at `warden serve`;
    its download is policy-checked, verified and recorded like any load."""
    if reg.mode != "remote":
        pytest.skip("the Hub endpoint is the server's")
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys, warden.hf
        shown = warden.hf.configure(sys.argv[1], token=sys.argv[2], offline_cache=sys.argv[3])
        assert shown["HF_TOKEN"] == "***"
        from huggingface_hub import hf_hub_download
        print(hf_hub_download("fraud-detector", "model.safetensors", revision="production"))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k not in ("HTTP_PROXY", "HTTPS_PROXY")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), NO_PROXY="127.0.0.1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    out = subprocess.run(
        [sys.executable, "-c", code, reg.server.url, reg.tokens["scorer"], str(tmp_path / "hf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip().splitlines()[-1]).read_bytes() == reg.model_file.read_bytes()
    assert reg.dir.count("model.access") >= 1
