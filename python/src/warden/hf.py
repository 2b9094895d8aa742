"""Pointing ``huggingface_hub`` at a Warden server: ``warden serve`` answers the Hub's
download protocol (``/{repo}/resolve/{revision}/{file}``, ``/api/models/...``), so
``hf_hub_download``, ``snapshot_download`` and ``from_pretrained`` load registered
models through Warden's policy and ledger, with a Warden token.

Example::

    import warden.hf
    warden.hf.configure("https://warden.internal:8443", token=os.environ["WARDEN_TOKEN"])
    from huggingface_hub import hf_hub_download
    path = hf_hub_download("fraud-detector", "model.safetensors", revision="production")

A repository id is the Warden model name; a revision is a version, an alias
(``production``) or the commit id Warden gives each version.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Optional

from ._native import InvalidInput


def configure(url: str, token: Optional[str] = None, *, offline_cache: Optional[str] = None) -> Dict[str, str]:
    """Sets ``HF_ENDPOINT`` and ``HF_TOKEN`` for this process (and for
    ``huggingface_hub`` when it is already imported), so its downloads go to ``url``
    with the Warden ``token`` (default ``WARDEN_TOKEN``). ``offline_cache`` sets
    ``HF_HUB_CACHE`` (Warden's models kept apart from the public Hub's). Returns what
    was set."""
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise InvalidInput("url must be an http(s) URL of a warden serve")
    url = url.rstrip("/")
    tok = token if token is not None else os.environ.get("WARDEN_TOKEN")
    if not tok:
        raise InvalidInput("give token= (or set WARDEN_TOKEN)")
    env = {"HF_ENDPOINT": url, "HF_TOKEN": tok, "HF_HUB_DISABLE_TELEMETRY": "1"}
    if offline_cache is not None:
        env["HF_HUB_CACHE"] = os.fspath(offline_cache)
    os.environ.update(env)
    consts = sys.modules.get("huggingface_hub.constants")
    if consts is not None:
        # huggingface_hub reads its endpoint when it is imported; keep it in step.
        consts.ENDPOINT = url
        consts.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
        if offline_cache is not None:
            consts.HF_HUB_CACHE = env["HF_HUB_CACHE"]
    return {k: ("***" if k == "HF_TOKEN" else v) for k, v in env.items()}
