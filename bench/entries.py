"""Writes N synthetic ledger entries as `warden log append --stdin` lines: six in ten
model accesses, two denials, one incident (rotating severity), one registration; 997
users, 101 models. Used by bench/report and bench/dashboard.
    python3 bench/entries.py N | warden log append --stdin
"""
import json, sys
n = int(sys.argv[1])
kinds = ["model.access"] * 6 + ["model.denied"] * 2 + ["incident", "registry.register"]
sev = ["CRITICAL", "HIGH", "MEDIUM", "LOW"]
out = sys.stdout
buf = []
for i in range(n):
    k = kinds[i % 10]
    ev = {"user": f"user{i % 997}", "ip": f"10.{i % 200}.{i % 250}.{i % 7}", "model": f"model-{i % 101}",
          "version": "1.0.0", "action": "load", "decision": "deny" if k == "model.denied" else "allow",
          "request_id": f"req-{i}"}
    if k == "incident":
        ev["details"] = {"severity": sev[i % 4], "type": "extraction"}
    buf.append(json.dumps({"kind": k, "event": ev}))
    if len(buf) == 10000:
        out.write("\n".join(buf) + "\n"); buf = []
if buf:
    out.write("\n".join(buf) + "\n")
