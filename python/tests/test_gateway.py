"""The inference gateway, end to end: the real `openai` client (PyPI) against `warden
serve`, which forwards to a real OpenAI-compatible server (llama-cpp-python[server],
scripts/install-inference) serving a tiny random-weight llama model the tests write
themselves. Every case leaves its ledger entry, and the ledger verifies."""

import hashlib
import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import Server

sys.path.insert(0, str(Path(__file__).parent))
import tiny_llama  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    """llama-cpp-python's OpenAI-compatible server on a loopback port."""

    def __init__(self, model: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "512", "--embedding", "true", "--n_threads", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                urllib.request.urlopen(self.url + "/v1/models", timeout=1).read()
                return
            except Exception:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama_cpp.server did not start: " + log.read_text()[-2000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
        import openai  # noqa: F401
    except ImportError as e:
        pytest.fail(f"{e}: run scripts/install-inference (scripts/test-python does)")
    d = tmp_path_factory.mktemp("model")
    tiny_llama.write(d / "tiny.gguf")
    return d


@pytest.fixture(scope="module")
def upstream(model, tmp_path_factory):
    u = Upstream(model / "tiny.gguf", tmp_path_factory.mktemp("upstream") / "server.log")
    yield u
    u.stop()


def set_gateway(d, **limits) -> None:
    cfg = d.data / "warden.toml"
    text = cfg.read_text() + "\n[gateway]\n" + "".join(f"{k} = {v}\n" for k, v in limits.items())
    cfg.write_text(text)


def deployed(d, model_dir: Path, upstreams, name="tiny"):
    """tiny@1, registered by alice, validated by bob, deployed; ds may generate."""
    d.warden("principal", "add", "alice", "--role", "ml-engineer", "--as", "admin")
    d.warden("principal", "add", "bob", "--role", "ml-engineer", "--as", "admin")
    d.warden("principal", "add", "ds", "--role", "data-scientist", "--as", "admin")
    d.warden("principal", "add", "aud", "--role", "auditor", "--as", "admin")
    d.warden("model", "register", "tiny", "--version", "1", str(model_dir), "--as", "alice")
    d.warden("model", "promote", "tiny@1", "--to", "validated", "--as", "bob", "--mfa")
    deploy(d, upstreams, name)


def deploy(d, upstreams, name="tiny"):
    args = ["deploy", "tiny@1", "--as-name", name, "--as", "admin", "--mfa"]
    for u in upstreams:
        args += ["--upstream", u]
    d.warden(*args)


def verify_ok(d) -> None:
    r = d.warden("verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def post(url, token, body, timeout=30):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_the_openai_client_works_streaming_and_not_and_every_request_is_recorded(ddir, model, upstream):
    import openai

    deployed(ddir, model, [upstream.url])
    server = Server(ddir)
    try:
        token = server.token("ds", scopes="model:generate")
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=token, max_retries=0)
        chat = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "the model is"}], max_tokens=8)
        said = chat.choices[0].message.content
        assert chat.usage.completion_tokens > 0

        parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "audit the log"}], max_tokens=8, stream=True)
            if c.choices]
        streamed = "".join(parts)

        text = client.completions.create(model="tiny", prompt="the secret weights", max_tokens=6).choices[0].text
        streamed_text = "".join(c.choices[0].text for c in client.completions.create(
            model="tiny", prompt="the secret weights", max_tokens=6, stream=True) if c.choices)

        emb = client.embeddings.create(model="tiny", input="the model is")
        assert len(emb.data) == 1 and len(emb.data[0].embedding) > 0

        entries = ddir.entries("inference.request")
        assert len(entries) == 5, entries
        by = [e["event"]["details"] for e in entries]
        assert [b["endpoint"] for b in by] == [
            "/v1/chat/completions", "/v1/chat/completions", "/v1/completions", "/v1/completions", "/v1/embeddings"]
        assert [b["stream"] for b in by] == [False, True, False, True, False]
        assert all(b["status"] == 200 and b["outcome"] == "complete" for b in by), by
        # The answer's text, hashed: the same whether it arrived whole or streamed.
        assert by[0]["response_sha256"] == sha(said)
        assert by[1]["response_sha256"] == sha(streamed)
        assert by[2]["response_sha256"] == sha(text)
        assert by[3]["response_sha256"] == sha(streamed_text)
        assert by[0]["prompt_tokens"] == chat.usage.prompt_tokens
        assert by[0]["completion_tokens"] == chat.usage.completion_tokens
        assert by[1]["completion_tokens"] > 0
        # The prompt's JSON with sorted keys, compact: what an auditor recomputes.
        assert by[0]["prompt_sha256"] == sha(json.dumps([{"role": "user", "content": "the model is"}],
                                                        separators=(",", ":"), sort_keys=True))
        for e in entries:
            ev = e["event"]
            assert (ev["user"], ev["model"], ev["version"], ev["action"]) == ("ds", "tiny", "1", "generate")
            assert ev["digest"].startswith("sha256:") and ev["reason"] == "permit:role-data-scientist-generate"
            assert ev["details"]["upstream"] == upstream.url and ev["request_id"]
            assert ev["details"]["latency_ms"] > 0
    finally:
        server.stop()
    verify_ok(ddir)


def test_refusals_scope_policy_revocation_and_unknown_deployments_each_leave_an_entry(ddir, model, upstream):
    import openai

    deployed(ddir, model, [upstream.url])
    server = Server(ddir)
    try:
        chat = dict(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        # A token without model:generate.
        reader = openai.OpenAI(base_url=server.url + "/v1", api_key=server.token("ds", scopes="model:read"),
                               max_retries=0)
        with pytest.raises(openai.PermissionDeniedError):
            reader.chat.completions.create(**chat)
        # A principal the policy gives no generate (an auditor).
        auditor = openai.OpenAI(base_url=server.url + "/v1", api_key=server.token("aud", scopes="model:generate"),
                                max_retries=0)
        with pytest.raises(openai.PermissionDeniedError):
            auditor.chat.completions.create(**chat)
        # A deployment that does not exist.
        ds = openai.OpenAI(base_url=server.url + "/v1", api_key=server.token("ds", scopes="model:generate"),
                           max_retries=0)
        with pytest.raises(openai.NotFoundError):
            ds.chat.completions.create(**{**chat, "model": "no-such-model"})
        # More tokens than the cap.
        with pytest.raises(openai.BadRequestError):
            ds.chat.completions.create(**{**chat, "max_tokens": 100_000})
        # Undeployed: gone at the next request; deployed again: served.
        ddir.warden("undeploy", "tiny", "--as", "admin", "--mfa")
        with pytest.raises(openai.NotFoundError):
            ds.chat.completions.create(**chat)
        deploy(ddir, [upstream.url])
        # Served, then revoked: refused at the next request.
        ds.chat.completions.create(**chat)
        ddir.warden("model", "revoke", "tiny@1", "--reason", "leaked", "--as", "admin", "--mfa")
        with pytest.raises(openai.PermissionDeniedError) as revoked:
            ds.chat.completions.create(**chat)
        assert revoked.value.body["code"] == "revoked", revoked.value.body
    finally:
        server.stop()
    denied = [e["event"] for e in ddir.entries("model.denied")]
    reasons = [(d["user"], d["action"], d["reason"]) for d in denied]
    assert ("ds", "generate", "forbid:scope-model-generate") in reasons, reasons
    assert ("aud", "generate", "default-deny") in reasons, reasons
    assert reasons.count(("ds", "generate", "not-found")) == 2, reasons
    assert any(u == "ds" and r.startswith("forbid:") and "revoked-version" in r for u, _, r in reasons), reasons
    refused = [e["event"] for e in ddir.entries("inference.refused")]
    assert [(r["user"], r["reason"]) for r in refused] == [("ds", "input:max-tokens")], refused
    assert len(ddir.entries("inference.request")) == 1
    assert [e["event"]["details"]["deployment"] for e in ddir.entries("deployment.remove")] == ["tiny"]
    verify_ok(ddir)


def test_budgets_answer_429_with_ratelimit_fields_and_are_recorded(ddir, model, upstream):
    deployed(ddir, model, [upstream.url])
    set_gateway(ddir, requests_per_minute=3, tokens_per_day=60)
    server = Server(ddir)
    try:
        url = server.url + "/v1/chat/completions"
        body = {"model": "tiny", "messages": [{"role": "user", "content": "the model is"}], "max_tokens": 8}
        # Requests: three a minute (each a few tokens), then 429 with the IETF fields.
        quick = server.token("alice", scopes="model:generate")
        small = {"model": "tiny", "prompt": "a", "max_tokens": 1}
        for _ in range(3):
            status, headers, _ = post(server.url + "/v1/completions", quick, small)
            assert status == 200
            assert headers["ratelimit-policy"].startswith('"requests";q=3;w=60'), headers
        status, headers, answer = post(server.url + "/v1/completions", quick, small)
        assert status == 429, answer
        assert int(headers["Retry-After"]) >= 1
        assert '"requests";q=3;w=60' in headers["RateLimit-Policy"] and "r=0" in headers["RateLimit"]
        # Tokens per day: each request uses about 40; the third finds the budget spent.
        ds = server.token("ds", scopes="model:generate")
        assert post(url, ds, body)[0] == 200
        assert post(url, ds, body)[0] == 200
        status, headers, answer = post(url, ds, body)
        assert status == 429 and json.loads(answer)["error"]["code"] == "rate_limited", answer
        assert '"tokens-daily";q=60;w=86400' in headers["RateLimit-Policy"]
        assert int(headers["Retry-After"]) <= 86400
    finally:
        server.stop()
    refused = [(e["event"]["user"], e["event"]["reason"]) for e in ddir.entries("inference.refused")]
    assert refused == [("alice", "budget:requests"), ("ds", "budget:tokens-daily")], refused
    used = sum((e["event"]["details"]["prompt_tokens"] or 0) + e["event"]["details"]["completion_tokens"]
               for e in ddir.entries("inference.request") if e["event"]["user"] == "ds")
    assert used >= 60
    verify_ok(ddir)


def test_a_dead_upstream_fails_over_and_none_left_is_a_502(ddir, model, upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    deployed(ddir, model, [dead, upstream.url])
    deploy(ddir, [dead, f"http://127.0.0.1:{free_port()}"], name="gone")
    # Requests alone find the dead upstream here (no probe runs).
    set_gateway(ddir, health_check_secs=0)
    server = Server(ddir)
    try:
        token = server.token("ds", scopes="model:generate")
        body = {"model": "tiny", "prompt": "the", "max_tokens": 2}
        status, _, _ = post(server.url + "/v1/completions", token, body)
        assert status == 200
        status, headers, answer = post(server.url + "/v1/completions", token, {**body, "model": "gone"})
        assert status == 502 and json.loads(answer)["error"]["code"] == "upstream_unavailable", answer
        assert headers["Retry-After"] == "5"
    finally:
        server.stop()
    served, gone = [e["event"]["details"] for e in ddir.entries("inference.request")]
    assert served["upstream"] == upstream.url and served["status"] == 200
    assert [f["upstream"] for f in served["failover"]] == [dead]
    assert "connection failed" in served["failover"][0]["error"]
    assert gone["status"] == 502 and gone["outcome"] == "upstream-unavailable" and len(gone["failover"]) == 2
    verify_ok(ddir)


def test_health_probes_skip_a_dead_upstream_before_any_request_pays_for_it(ddir, model, upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    deployed(ddir, model, [dead, upstream.url])
    set_gateway(ddir, health_check_secs=1)
    server = Server(ddir)
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            metrics = urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()
            if f'warden_gateway_upstream_up{{upstream="{dead}"}} 0' in metrics:
                break
            time.sleep(0.2)
        assert f'warden_gateway_upstream_up{{upstream="{upstream.url}"}} 1' in metrics, metrics
        token = server.token("ds", scopes="model:generate")
        for _ in range(3):
            status, _, _ = post(server.url + "/v1/completions", token, {"model": "tiny", "prompt": "the", "max_tokens": 2})
            assert status == 200
    finally:
        server.stop()
    served = [e["event"]["details"] for e in ddir.entries("inference.request")]
    assert [d["upstream"] for d in served] == [upstream.url] * 3
    assert all("failover" not in d for d in served), served
    verify_ok(ddir)


def test_a_client_that_leaves_mid_stream_cancels_and_is_recorded(ddir, model, upstream):
    deployed(ddir, model, [upstream.url])
    server = Server(ddir)
    try:
        token = server.token("ds", scopes="model:generate")
        host, port = server.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/v1/completions", body=json.dumps(
            {"model": "tiny", "prompt": "the model is", "max_tokens": 400, "stream": True}),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
        first = r.read(16)
        assert first.startswith(b"data: "), first
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        end = time.monotonic() + 10
        entries = []
        while time.monotonic() < end and not entries:
            time.sleep(0.2)
            entries = ddir.entries("inference.request")
    finally:
        server.stop()
    assert len(entries) == 1, entries
    d = entries[0]["event"]["details"]
    assert d["outcome"] == "client-disconnected" and d["stream"] is True, d
    assert d["completion_tokens"] < 400, d
    verify_ok(ddir)


def test_systematic_prompts_raise_an_extraction_incident_and_then_403(ddir, model, upstream):
    deployed(ddir, model, [upstream.url])
    cfg = ddir.data / "warden.toml"
    text = cfg.read_text()
    assert "extraction_prompts = 60" in text
    cfg.write_text(text.replace("extraction_prompts = 60", "extraction_prompts = 20"))
    server = Server(ddir)
    try:
        token = server.token("ds", scopes="model:generate")
        url = server.url + "/v1/completions"
        # One template, one varying slot: the shape of a model being copied.
        answers = []
        for i in range(40):
            status, _, body = post(url, token, {"model": "tiny", "max_tokens": 1,
                                                "prompt": f"Translate into French, word by word: the item number {i}"})
            answers.append(status)
            if status == 403:
                break
        assert answers[-1] == 403, answers
        assert json.loads(body)["error"] == {"code": "suspicious_activity",
                                             "message": "Suspicious activity detected"}, body
        assert 20 <= len(answers) <= 25, answers
        incidents = [e for e in ddir.entries("incident") if e["event"]["details"]["detector"] == "extraction"]
        assert len(incidents) == 1, incidents
        inc = incidents[0]
        assert inc["event"]["user"] == "ds" and inc["event"]["details"]["severity"] == "HIGH"
        refused = [e["event"] for e in ddir.entries("inference.refused")]
        assert [r["reason"] for r in refused] == [f"suspicious:extraction:{inc['index']}"], refused
        # Other principals are not affected; an acknowledgement lifts the refusal.
        other = server.token("alice", scopes="model:generate")
        assert post(url, other, {"model": "tiny", "prompt": "the", "max_tokens": 1})[0] == 200
        ddir.warden("incident", "ack", str(inc["index"]), "--note", "load test by ds", "--as", "admin")
        assert post(url, token, {"model": "tiny", "prompt": "the weights", "max_tokens": 1})[0] == 200
    finally:
        server.stop()
    verify_ok(ddir)


def test_queued_release_answers_before_the_group_commit_and_loses_no_entry(ddir, model, upstream):
    deployed(ddir, model, [upstream.url])
    set_gateway(ddir, release='"queued"')
    server = Server(ddir)
    try:
        token = server.token("ds", scopes="model:generate")
        for i in range(20):
            status, headers, _ = post(server.url + "/v1/completions", token,
                                      {"model": "tiny", "prompt": f"question {i}", "max_tokens": 2})
            assert status == 200
            # Released before its index is known.
            assert headers.get("x-warden-audit-index") is None
    finally:
        server.stop()
    entries = ddir.entries("inference.request")
    assert len(entries) == 20 and all(e["event"]["details"]["outcome"] == "complete" for e in entries)
    verify_ok(ddir)
    # A mode that does not exist stops the server before it serves anything.
    cfg = ddir.data / "warden.toml"
    cfg.write_text(cfg.read_text().replace('release = "queued"', 'release = "eventually"'))
    with pytest.raises(RuntimeError, match="durable"):
        Server(ddir)


def test_sealed_content_opens_only_for_auditors_matches_its_entries_and_expires(ddir, model, upstream):
    deployed(ddir, model, [upstream.url])
    set_gateway(ddir, seal_content="true")
    server = Server(ddir)
    try:
        token = server.token("ds", scopes="model:generate")
        url = server.url + "/v1/chat/completions"
        secret = "the launch code is tangerine"
        status, _, answer = post(url, token, {"model": "tiny", "max_tokens": 6,
                                              "messages": [{"role": "user", "content": secret}]})
        assert status == 200, answer
        said = json.loads(answer)["choices"][0]["message"]["content"]
        host, port = server.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", "/v1/completions", body=json.dumps(
            {"model": "tiny", "prompt": "streamed " + secret, "max_tokens": 6, "stream": True}),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        streamed = conn.getresponse().read().decode()
        conn.close()
        assert streamed.endswith("data: [DONE]\n\n"), streamed
    finally:
        server.stop()
    entries = ddir.entries("inference.request")
    assert [e["event"]["details"]["content"] for e in entries] == ["sealed", "sealed"]
    # Nothing under the data directory holds the prompt in the clear.
    for f in ddir.data.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    parts = sorted((ddir.data / "inference").glob("*.jsonl"))
    assert len(parts) == 1 and oct(parts[0].stat().st_mode & 0o777) == "0o600"

    shown = ddir.warden("content", "show", "--auditor-key", str(ddir.auditor), "--json")
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    assert [r["request_id"] for r in records] == [e["event"]["request_id"] for e in entries]
    assert [r["entry"] for r in records] == [e["index"] for e in entries]
    assert all(r["problem"] is None for r in records), records
    assert records[0]["prompt"] == [{"role": "user", "content": secret}]
    assert records[0]["response"] == said
    assert records[1]["prompt"] == "streamed " + secret
    assert ddir.entries("content.read")[0]["event"]["details"]["records"] == 2

    # Another key opens nothing.
    other = ddir.root / "other.key"
    ddir.warden("auditor", "keygen", "--out", str(other))
    r = ddir.warden("content", "show", "--auditor-key", str(other), check=False)
    assert r.returncode == 0 and r.stdout == "" and "not sealed to this key" in r.stderr, r.stderr

    # A record swapped for another request's is named: it does not match its entry.
    lines = parts[0].read_bytes().splitlines(keepends=True)
    a, b = json.loads(lines[0]), json.loads(lines[1])
    a["request_id"], b["request_id"] = b["request_id"], a["request_id"]
    parts[0].write_bytes((json.dumps(a) + "\n" + json.dumps(b) + "\n").encode())
    r = ddir.warden("content", "show", "--auditor-key", str(ddir.auditor), "--json", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert [json.loads(line)["problem"] for line in r.stdout.splitlines()] == ["unreadable", "unreadable"]

    # Retention: a day past inference_content_days goes, key and records, recorded first.
    for f in (ddir.data / "inference").iterdir():
        f.rename(f.with_name("2020-01-01" + f.name[10:]))
    r = ddir.warden("content", "expire", "--days", "30", "--json")
    out = json.loads(r.stdout)
    assert out["details"]["inference_content"]["days"] == ["2020-01-01"], out
    assert list((ddir.data / "inference").iterdir()) == []
    deleted = ddir.entries("retention.delete")
    assert deleted[-1]["index"] == out["entry"]
    assert deleted[-1]["event"]["details"]["inference_content"]["days"] == ["2020-01-01"]
    verify_ok(ddir)


def test_seal_content_without_an_auditor_key_stops_the_server(ddir):
    for f in (ddir.data / "auditors").glob("*.pub"):
        f.unlink()
    set_gateway(ddir, seal_content="true")
    with pytest.raises(RuntimeError, match="auditor"):
        Server(ddir)
