"""Schemathesis hooks for `scripts/api-fuzz`: seed ids that exist, so generated requests
reach each handler's logic instead of stopping at 404.

The seeds (written by `scripts/api-fuzz`, named by $WARDEN_FUZZ_SEEDS) are real: model
versions registered for this run, tokens issued for it, an incident it raised, signed
manifests for versions not yet registered, a blob and its digest. The first of each is
the operation's example (the examples and coverage phases start from it); in the fuzzing
phase every operation generates its own cases and, about half the time, the same case
with the example's ids and a valid body. Operations that change state for good (promote,
retire, revoke, register a version, revoke a token) swap the example's id for a fresh
seed at each request, until the seeds run out.
"""

import copy
import hashlib
import itertools
import json
import os
import subprocess

import schemathesis
from hypothesis import strategies as st
from schemathesis.core import NOT_SET
from schemathesis.generation.modes import GenerationMode
from schemathesis.transport.serialization import serialize_binary

with open(os.environ["WARDEN_FUZZ_SEEDS"]) as f:
    SEEDS = json.load(f)

VERSION = "/v1/models/{model}/versions/{version}"


def _fresh(values):
    """Each call takes the next value; the last one repeats once they run out."""
    it = itertools.chain(values, itertools.repeat(values[-1]))
    return lambda: next(it)


# operation label -> (path parameters, body) of the first seed, used as the example.
EXAMPLES = {
    f"GET {VERSION}": ({"model": SEEDS["model"], "version": SEEDS["version"]}, None),
    f"POST {VERSION}": (
        {"model": SEEDS["model"], "version": SEEDS["register"][0]["version"]},
        SEEDS["register"][0]["body"],
    ),
    f"GET {VERSION}/files/{{file}}": (
        {"model": SEEDS["model"], "version": SEEDS["version"], "file": SEEDS["file"]},
        None,
    ),
    f"POST {VERSION}/decision": (
        {"model": SEEDS["model"], "version": SEEDS["version"]},
        {"action": "load"},
    ),
    f"POST {VERSION}/promote": (
        {"model": SEEDS["model"], "version": SEEDS["promote"][0]},
        {"to": "validated", "evidence": {"auc": 0.9}},
    ),
    f"POST {VERSION}/retire": ({"model": SEEDS["model"], "version": SEEDS["retire"][0]}, None),
    f"POST {VERSION}/revoke": (
        {"model": SEEDS["model"], "version": SEEDS["revoke"][0]},
        {"reason": "api-fuzz"},
    ),
    "PUT /v1/models/{model}/aliases/{alias}": (
        {"model": SEEDS["model"], "alias": "staging"},
        # Not the version reads use: aliases are names a revoke can resolve.
        {"version": SEEDS["alias_target"]},
    ),
    "PUT /v1/models/{model}/blobs/{digest}": (
        {"model": SEEDS["model"], "digest": "sha256:" + SEEDS["blob"]["digest"]},
        SEEDS["blob"]["text"],
    ),
    "POST /v1/principals": (None, {"name": "fuzz-new", "roles": ["ml-engineer"]}),
    "POST /v1/principals/{name}/roles": ({"name": SEEDS["principal"]}, {"role": "ml-engineer"}),
    "POST /v1/principals/{name}/grants": (
        {"name": SEEDS["principal"]},
        {"model": SEEDS["model"], "actions": ["load"], "expires_in_secs": 600},
    ),
    "POST /v1/principals/{name}/suspend": ({"name": SEEDS["principal"]}, None),
    "POST /v1/principals/{name}/enable": ({"name": SEEDS["principal"]}, None),
    "POST /v1/tokens": (
        None,
        {"principal": SEEDS["principal"], "scopes": ["model:read"], "expires_in_secs": 600},
    ),
    "DELETE /v1/tokens/{id}": ({"id": SEEDS["tokens"][0]}, None),
    "GET /v1/incidents/{index}": ({"index": SEEDS["incident"]}, None),
    "POST /v1/incidents/{index}/ack": ({"index": SEEDS["incident"]}, {"note": "seen"}),
}

# State changes that happen once per id (retire, revoke, register a version, revoke a
# token): a request about to send the example's id (or the version reads use) gets a
# fresh seed instead, so every phase, not only the first request, reaches the handler
# with an id it can act on, and reads keep a version that is served.
# operation label -> (path parameter, example value, next fresh (value, body or None)).
FRESH = {}


def _pool(label, param, values, bodies=None):
    take = _fresh(list(zip(values[1:], (bodies or [None] * len(values))[1:])))
    FRESH[label] = (param, values[0], take)


_pool(f"POST {VERSION}/promote", "version", SEEDS["promote"])
_pool(f"POST {VERSION}/retire", "version", SEEDS["retire"])
_pool(f"POST {VERSION}/revoke", "version", SEEDS["revoke"])
_pool(
    f"POST {VERSION}",
    "version",
    [r["version"] for r in SEEDS["register"]],
    [r["body"] for r in SEEDS["register"]],
)
_pool("DELETE /v1/tokens/{id}", "id", SEEDS["tokens"])


def _resolve(raw, node):
    ref = node.get("$ref")
    if ref is None:
        return copy.deepcopy(node)
    target = raw
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return copy.deepcopy(target)


@schemathesis.hook
def before_load_schema(context, raw_schema):
    """Gives every seeded operation its own examples: path parameters are copied into
    the operation (so two operations on one path can differ) with the seed as example."""
    for path, item in raw_schema["paths"].items():
        shared = item.pop("parameters", [])
        for method, op in item.items():
            own = [_resolve(raw_schema, p) for p in shared + op.get("parameters", [])]
            if own:
                op["parameters"] = own
            seeded = EXAMPLES.get(f"{method.upper()} {path}")
            if seeded is None:
                continue
            params, body = seeded
            for p in own:
                if params and p["in"] == "path" and p["name"] in params:
                    p["example"] = params[p["name"]]
            if body is not None:
                for media in op["requestBody"]["content"].values():
                    media["example"] = body


@schemathesis.hook
def before_generate_case(context, strategy):
    """About half the fuzzing phase's cases carry the example's ids (and, when they are
    positive, its valid body) instead of generated ones."""
    op = context.operation
    seeded = EXAMPLES.get(f"{op.method.upper()} {op.path}")
    if seeded is None:
        return strategy
    params, body = seeded

    def seed(case):
        if params:
            case.path_parameters = {**case.path_parameters, **params}
        positive = case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE
        if body is not None and positive:
            case.body = body.encode() if isinstance(body, str) else copy.deepcopy(body)
        return case

    return st.one_of(strategy, strategy.map(seed))


def _sign(model, version):
    """The body a client would send to register `model@version`: a manifest of the
    seeded file signed with the administrator's key, or None when it cannot be signed."""
    r = subprocess.run(
        [SEEDS["warden"], "model", "sign", model, "--version", version, SEEDS["model_file"],
         "--as", "admin"],
        capture_output=True,
        check=False,
    )
    return json.loads(r.stdout) if r.returncode == 0 else None


@schemathesis.hook
def before_call(context, case, kwargs):
    label = f"{context.operation.method.upper()} {context.operation.path}"
    fresh = FRESH.get(label)
    if fresh is not None:
        param, example, take = fresh
        # The version every read uses is never promoted, retired or revoked.
        if case.path_parameters.get(param) in (example, SEEDS["version"]):
            value, body = take()
            case.path_parameters = {**case.path_parameters, param: value}
            if body is not None and case.body == EXAMPLES[label][1]:
                case.body = copy.deepcopy(body)
    positive = case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE
    if not positive:
        return
    # Content-bound requests: what a client sends is bound to the path by a hash or a
    # signature, which a schema cannot say. Where the generated case varies one side, a
    # valid case makes the other side match, as every real client does.
    if label == "PUT /v1/models/{model}/blobs/{digest}":
        data = b"" if case.body is NOT_SET else serialize_binary(case.body)
        case.path_parameters = {
            **case.path_parameters,
            "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        }
    if label == f"POST {VERSION}" and isinstance(case.body, dict) and "envelope" in case.body:
        p = case.path_parameters
        if case.body["envelope"] == EXAMPLES[label][1]["envelope"] or case.body in [
            r["body"] for r in SEEDS["register"]
        ]:
            signed = _sign(str(p.get("model")), str(p.get("version")))
            if signed is not None:
                case.body = signed
