"""Measures the Python SDK's log_access throughput (see bench/python)."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from warden import SecureModelManager

WARDEN = os.environ["WARDEN_BIN"]


def fresh(root):
    env = dict(os.environ, WARDEN_DATA_DIR=os.path.join(root, "data"))
    env.pop("WARDEN_PASSPHRASE", None)
    run = lambda *a, **k: subprocess.run([WARDEN, *a], env=env, check=True, capture_output=True, **k)
    run("auditor", "keygen", "--out", os.path.join(root, "a.key"))
    run("init", "--dev", "--auditor", os.path.join(root, "a.key.pub"))
    return env, run


def event(i):
    return {
        "user_id": f"svc-{i % 13}",
        "resource": "fraud-detector",
        "action": "predict",
        "result": "success",
        "metadata": {"ip": "192.0.2.7", "request_id": f"r{i}"},
    }


def one_run(n):
    with tempfile.TemporaryDirectory() as root:
        env, run = fresh(root)
        data = env["WARDEN_DATA_DIR"]
        evs = [event(i) for i in range(n)]
        with SecureModelManager(data) as m:
            m.log_access("warm", "m", "load", "success")
            t = time.perf_counter()
            for k in range(0, n, 10_000):
                m.log_access_batch(evs[k : k + 10_000])
            batched = n / (time.perf_counter() - t)
            single_n = min(n, 5_000)
            t = time.perf_counter()
            for e in evs[:single_n]:
                m.log_access(e["user_id"], e["resource"], e["action"], e["result"], e["metadata"])
            single = single_n / (time.perf_counter() - t)
        lines = "".join(
            json.dumps({"kind": "model.access", "event": {"user": e["user_id"], "model": e["resource"],
                        "action": e["action"], "decision": "allow",
                        "details": {"result": e["result"], "metadata": e["metadata"]}}}) + "\n"
            for e in evs
        ).encode()
        t = time.perf_counter()
        run("log", "append", "--stdin", input=lines)
        cli = n / (time.perf_counter() - t)
        run("writer", "--stop")
        return batched, single, cli


def main():
    runs, n = int(sys.argv[1]), int(sys.argv[2])
    res = []
    for i in range(runs):
        print(f"run {i + 1} of {runs} ...", file=sys.stderr)
        res.append(one_run(n))
    b, s, c = (statistics.median(x) for x in zip(*res))
    print(f"median of {runs} runs, {n} events each")
    print(f"  CLI log append --stdin (baseline)   {c:10.0f} events/s")
    print(f"  log_access_batch                    {b:10.0f} events/s  {b / c:.2f} x CLI  (goal >= 100000/s)")
    print(f"  log_access, one at a time           {s:10.0f} events/s  {s / c:.2f} x CLI")


if __name__ == "__main__":
    main()
