"""Boundary numbers for `scripts/api-fuzz`: every integer query and path parameter of the
OpenAPI document, the Range header and the Hub's tree cursor, each with 0, -1, 2^63,
2^64-1 and a 61-digit number, the other parameters seeded so the request reaches its
handler. Fails on a 5xx or a connection dropped without an answer.

    boundaries.py BASE_URL BEARER SEEDS_JSON
"""

import http.client
import json
import sys
import urllib.parse

VALUES = ["0", "-1", str(2**63), str(2**64 - 1), "9" * 61]


def main() -> None:
    base, bearer, seeds_path = sys.argv[1:4]
    seeds = json.load(open(seeds_path))
    url = urllib.parse.urlsplit(base)
    doc = request(url, "GET", "/v1/openapi.json", bearer)[1]
    spec = json.loads(doc)
    fill = {
        "model": seeds["model"],
        "version": seeds["version"],
        "file": seeds["file"],
        "name": seeds["principal"],
        "alias": "staging",
        "id": seeds["tokens"][-1],
        "digest": "sha256:" + seeds["blob"]["digest"],
    }
    cases = []
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method == "parameters":
                continue
            params = [resolve(spec, p) for p in shared + op.get("parameters", [])]
            body = b'{"note": "boundary"}' if "requestBody" in op else None
            for p in params:
                if p["schema"].get("type") != "integer":
                    continue
                for v in VALUES:
                    cases.append((method.upper(), build(path, params, p["name"], v, fill), body, {}))
    file_path = f"/v1/models/{fill['model']}/versions/{fill['version']}/files/{fill['file']}"
    for v in VALUES:
        for r in (f"bytes={v}-", f"bytes=0-{v}", f"bytes=-{v}", f"bytes={v}-{v}"):
            cases.append(("GET", file_path, None, {"Range": r}))
        cases.append(("GET", f"/api/models/{fill['model']}/tree/main?cursor={v}", None, {}))
    bad = 0
    for method, path, body, headers in cases:
        try:
            status, _ = request(url, method, path, bearer, body, headers)
        except (OSError, http.client.HTTPException) as e:
            print(f"boundaries: {method} {path} {headers}: no answer ({e})", file=sys.stderr)
            bad += 1
            continue
        if status >= 500:
            print(f"boundaries: {method} {path} {headers}: {status}", file=sys.stderr)
            bad += 1
    print(f"boundaries: {len(cases)} requests, {bad} answered 5xx or dropped")
    sys.exit(1 if bad else 0)


def resolve(spec, p):
    if "$ref" in p:
        node = spec
        for part in p["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return node
    return p


def build(path, params, target, value, fill):
    query = {}
    for p in params:
        v = value if p["name"] == target else None
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", urllib.parse.quote(v or fill.get(p["name"], "0"), safe=""))
        elif p["in"] == "query" and (v is not None or p.get("required")):
            query[p["name"]] = v if v is not None else "0"
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def request(url, method, path, bearer, body=None, headers=None):
    c = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    h = {"Authorization": f"Bearer {bearer}", **(headers or {})}
    if body is not None:
        h["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


if __name__ == "__main__":
    main()
