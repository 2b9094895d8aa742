"""The measuring half of bench/dashboard: signs in as a browser does, waits for the
counts to catch up, then times the dashboard's data reads against /healthz while a
writer appends. Arguments: URL TOKEN REQUESTS ROUNDS START_EPOCH WARDEN."""
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

url, token, requests, rounds, start, warden = sys.argv[1:7]
requests, rounds, start = int(requests), int(rounds), float(start)
host = urllib.parse.urlparse(url).netloc
conn = http.client.HTTPConnection(host, timeout=120)


def get(path, cookie=None):
    h = {"Cookie": cookie} if cookie else {}
    t = time.perf_counter()
    conn.request("GET", path, headers=h)
    r = conn.getresponse()
    body = r.read()
    return r.status, r.headers, body, time.perf_counter() - t


# Sign in through the form, as a browser does.
status, headers, body, _ = get("/dashboard/sign-in")
nonce = headers["set-cookie"].split("warden_signin=", 1)[1].split(";", 1)[0]
form = urllib.parse.urlencode({"token": token, "csrf": nonce})
conn.request("POST", "/dashboard/sign-in", body=form, headers={
    "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"warden_signin={nonce}"})
r = conn.getresponse()
r.read()
assert r.status == 303, r.status
cookie = r.headers["set-cookie"].split(";", 1)[0]

# 1. The counts catch up with the ledger in the background from start-up.
while True:
    status, _, body, _ = get("/dashboard/api/overview", cookie)
    assert status == 200, (status, body[:200])
    d = json.loads(body)
    if d["counting"]["behind"] == 0:
        break
    time.sleep(0.5)
caught_up = time.time() - start
size = d["ledger"]["size"]
print(f"counts caught up with {size:,} entries {caught_up:.1f} s after start-up "
      f"({size / caught_up:,.0f} entries/s, decrypting every entry)")

# 2. Reads under a steady stream of appends.
stop = threading.Event()


def append():
    p = subprocess.Popen([warden, "log", "append", "--stdin"], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    i = 0
    while not stop.is_set():
        for _ in range(20):
            p.stdin.write(json.dumps({"kind": "model.access", "event": {
                "user": f"live{i % 50}", "model": "model-1", "version": "1.0.0", "action": "load",
                "decision": "allow"}}) + "\n")
            i += 1
        p.stdin.flush()
        time.sleep(0.1)
    p.stdin.close()
    p.wait()


writer = threading.Thread(target=append)
writer.start()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


rows = []
try:
    for rnd in range(rounds):
        over, health, models, review = [], [], [], []
        for i in range(requests):
            s, _, _, t = get("/healthz")
            assert s == 200
            health.append(t)
            s, _, b, t = get("/dashboard/api/overview", cookie)
            assert s == 200, b[:200]
            over.append(t)
        for i in range(20):
            s, _, b, t = get("/dashboard/api/models", cookie)
            assert s == 200, b[:200]
            models.append(t)
            s, _, b, t = get("/dashboard/api/access-review", cookie)
            assert s == 200, b[:200]
            review.append(t)
        row = [pct(over, 0.5), pct(over, 0.99), pct(health, 0.5), pct(health, 0.99),
               pct(models, 0.5), pct(models, 0.99), pct(review, 0.5), pct(review, 0.99)]
        rows.append(row)
        print(f"round {rnd + 1}: overview p50 {row[0]:.1f} ms p99 {row[1]:.1f} ms; "
              f"/healthz p50 {row[2]:.2f} ms p99 {row[3]:.2f} ms", file=sys.stderr)
finally:
    stop.set()
    writer.join()

med = [statistics.median(r[k] for r in rows) for k in range(8)]
d = json.loads(get("/dashboard/api/overview", cookie)[2])
print(f"median of {rounds} rounds of {requests} overview reads, ledger of {d['ledger']['size']:,} entries, "
      f"200 appends/s alongside")
print(f"  overview            p50 {med[0]:8.1f} ms   p99 {med[1]:8.1f} ms   target p99 <= 300 ms: "
      f"{med[1] / 300:.3f} of target")
print(f"  /healthz (baseline) p50 {med[2]:8.2f} ms   p99 {med[3]:8.2f} ms   overview p99 = "
      f"{med[1] / med[3]:.1f} x baseline")
print(f"  models              p50 {med[4]:8.1f} ms   p99 {med[5]:8.1f} ms")
print(f"  access review       p50 {med[6]:8.1f} ms   p99 {med[7]:8.1f} ms")
