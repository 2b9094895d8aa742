"""Drives the real huggingface_hub client against `warden serve` (HF_ENDPOINT).

Usage: client.py STEP SPEC.json   (the endpoint, token and cache come from the
environment: HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE). Each step asserts what the client
must see and exits non-zero, naming the check, when it does not.
"""

import hashlib
import json
import os
import sys

from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub import errors


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def expect(exc_type, fn, what):
    try:
        fn()
    except exc_type as e:
        return e
    except Exception as e:  # noqa: BLE001 - report what was raised instead
        raise AssertionError(f"{what}: raised {type(e).__name__}: {e}") from e
    raise AssertionError(f"{what}: nothing raised")


def expect_cause(exc_type, fn, what):
    """`exc_type`, raised directly or as the cause of the client's report that it
    cannot locate the files (its LocalEntryNotFoundError)."""
    e = expect(Exception, fn, what)
    check(
        isinstance(e, exc_type) or isinstance(e.__cause__, exc_type),
        f"{what}: expected {exc_type.__name__}, got {e!r} from {e.__cause__!r}",
    )
    return e if isinstance(e, exc_type) else e.__cause__


def files_of(spec, version):
    return spec["versions"][version]["files"]


def download(spec):
    repo = spec["repo"]
    api = HfApi()
    # Repository metadata: id, commit sha, siblings with sizes and LFS digests.
    for version, rev in [("1.0", "stable"), ("1.0", "1.0"), ("2.0", "main")]:
        info = api.model_info(repo, revision=rev, files_metadata=True)
        v = spec["versions"][version]
        check(info.id == repo, f"model_info id {info.id}")
        check(info.sha == v["commit"], f"model_info({rev}) sha {info.sha} != {v['commit']}")
        sib = {s.rfilename: s for s in info.siblings}
        check(sorted(sib) == sorted(v["files"]), f"siblings {sorted(sib)}")
        for name, digest in v["files"].items():
            check(sib[name].lfs.sha256 == digest, f"lfs.sha256 of {name}")
            check(sib[name].size == v["sizes"][name], f"size of {name}")
    tree = list(api.list_repo_tree(repo, revision="stable", recursive=True))
    paths = sorted(t.path for t in tree if t.__class__.__name__ == "RepoFile")
    check(paths == sorted(files_of(spec, "1.0")), f"tree {paths}")
    check(any(t.path == "tokenizer" for t in tree), "the tree lists the folder")

    # Single files, by branch-like alias, by version and by commit id.
    for version, rev in [
        ("1.0", "stable"),
        ("2.0", "2.0"),
        ("1.0", spec["versions"]["1.0"]["commit"]),
        ("2.0", "main"),
    ]:
        for name, digest in files_of(spec, version).items():
            p = hf_hub_download(repo, name, revision=rev)
            check(sha256(p) == digest, f"hf_hub_download {name}@{rev} hashes to the registered digest")

    # Whole snapshots.
    for version, rev in [("1.0", "stable"), ("2.0", spec["versions"]["2.0"]["commit"])]:
        d = snapshot_download(repo, revision=rev)
        for name, digest in files_of(spec, version).items():
            check(sha256(os.path.join(d, name)) == digest, f"snapshot {name}@{rev}")
    print("download ok")


def repeat(spec):
    """Everything again: served from the client's cache (the caller counts downloads)."""
    repo = spec["repo"]
    for version, rev in [("1.0", "stable"), ("1.0", spec["versions"]["1.0"]["commit"])]:
        for name, digest in files_of(spec, version).items():
            p = hf_hub_download(repo, name, revision=rev)
            check(sha256(p) == digest, f"cached {name}@{rev}")
        d = snapshot_download(repo, revision=rev)
        for name, digest in files_of(spec, version).items():
            check(sha256(os.path.join(d, name)) == digest, f"cached snapshot {name}@{rev}")
    print("repeat ok")


def failures(spec):
    repo = spec["repo"]
    name = next(iter(files_of(spec, "1.0")))
    expect(errors.RepositoryNotFoundError, lambda: hf_hub_download("org/nope", name), "unknown repo")
    e = expect(errors.RepositoryNotFoundError, lambda: HfApi().model_info("org/nope"), "unknown repo info")
    check(not isinstance(e, errors.GatedRepoError), "unknown repo is not gated")
    expect(errors.RevisionNotFoundError, lambda: hf_hub_download(repo, name, revision="9.9"), "unknown revision")
    expect(errors.RevisionNotFoundError, lambda: snapshot_download(repo, revision="9.9"), "unknown revision snapshot")
    expect(errors.RemoteEntryNotFoundError, lambda: hf_hub_download(repo, "nope.bin", revision="stable"), "missing file")
    expect(
        errors.GatedRepoError,
        lambda: hf_hub_download(repo, name, revision="stable", token=spec["outsider_token"]),
        "denied by policy",
    )
    # A revoked version: the metadata call raises DisabledRepoError; a file download
    # raises it from the metadata request, which the client reports as a file it
    # cannot locate (its own LocalEntryNotFoundError, caused by the DisabledRepoError).
    expect(errors.DisabledRepoError, lambda: HfApi().model_info(repo, revision="3.0"), "revoked version info")
    expect_cause(errors.DisabledRepoError, lambda: hf_hub_download(repo, name, revision="3.0"), "revoked version")
    expect_cause(errors.DisabledRepoError, lambda: snapshot_download(repo, revision="3.0"), "revoked snapshot")
    # A bad token: the client cannot locate the file; the cause is the 401.
    cause = expect_cause(
        errors.HfHubHTTPError, lambda: hf_hub_download(repo, name, revision="1.0", token="wdn_bad"), "bad token"
    )
    check(cause.response.status_code == 401, f"bad token status {cause.response.status_code}")
    check(
        cause.response.headers.get("x-error-message") == "Invalid credentials in Authorization header",
        "bad token message",
    )
    e = expect(errors.HfHubHTTPError, lambda: HfApi(token="wdn_bad").model_info(repo), "bad token info")
    check(e.response.status_code == 401, "bad token info status")
    print("failures ok")


def tampered(spec):
    """The blob of a file was altered on the server: never served, nothing cached.

    Warden verifies while streaming: a small file is refused before the response
    (500), a larger one is cut before any unverified byte leaves, which the client
    sees as a body ending early; the CRITICAL incident's playbook then revokes the
    version, so its retry meets a disabled repository.
    """
    repo = spec["repo"]
    name = spec["tampered_file"]
    digest = spec["versions"]["2.0"]["files"][name]
    e = expect(Exception, lambda: hf_hub_download(repo, name, revision="2.0"), "tampered blob")
    chain = [e, e.__cause__, getattr(e.__cause__, "__cause__", None)]
    refused = any(isinstance(x, errors.HfHubHTTPError) and x.response.status_code == 500 for x in chain)
    cut = any(type(x).__name__ == "RemoteProtocolError" for x in chain)
    # The integrity incident is CRITICAL: the playbook revokes the version, so the
    # client's retries meet a disabled repository.
    revoked = any(isinstance(x, errors.DisabledRepoError) for x in chain)
    check(refused or cut or revoked, f"tampered blob: refused, cut or revoked, got {e!r}")
    for root, _, files in os.walk(os.environ["HF_HUB_CACHE"]):
        for f in files:
            p = os.path.join(root, f)
            check(f != digest, f"nothing is cached under the file's digest: {p}")
            if os.path.isfile(p):
                check(sha256(p) != spec["tampered_digest_of_altered_bytes"], f"altered bytes cached at {p}")
                if p.endswith(".incomplete"):
                    check(os.path.getsize(p) == 0, f"unverified bytes reached the client: {p}")
    print("tampered ok")


if __name__ == "__main__":
    step, spec_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    {"download": download, "repeat": repeat, "failures": failures, "tampered": tampered}[step](spec)
