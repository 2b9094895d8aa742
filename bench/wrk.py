"""Reads wrk's report. Only successful work counts: a run with any non-2xx answer or
socket error is a failed run, and the scripts that use this exit non-zero on one."""
import re
import sys

UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse(path):
    """Returns {"rps", "requests", "seconds", "p99_ms", "text"} for a run in which every
    request succeeded; exits with the report otherwise."""
    t = open(path).read()
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", t)
    if not m:
        sys.exit(f"{path}: not a wrk report:\n{t}")
    seconds = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    requests = int(m.group(1))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    bad = (int(failed.group(1)) if failed else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    if bad or requests == 0:
        sys.exit(f"{path}: {bad} of {requests} requests failed; no figure is computed over failed work:\n{t}")
    p99 = re.search(r"\n\s+99%\s+([\d.]+)(us|ms|s)", t)
    p50 = re.search(r"\n\s+50%\s+([\d.]+)(us|ms|s)", t)
    return {
        "rps": requests / seconds,
        "requests": requests,
        "seconds": seconds,
        "p99_ms": float(p99.group(1)) * UNIT_MS[p99.group(2)] if p99 else None,
        "p50_ms": float(p50.group(1)) * UNIT_MS[p50.group(2)] if p50 else None,
        "text": t,
    }
