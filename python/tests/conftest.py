"""Fixtures: a fresh development data directory made with the real `warden` binary
(`WARDEN_BIN`, which scripts/test-python points at the release build)."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

WARDEN = os.environ.get("WARDEN_BIN") or shutil.which("warden") or "warden"


def warden(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WARDEN_PASSPHRASE", "WARDEN_USER")}
    env["WARDEN_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [WARDEN, *args], env=env, capture_output=True, text=True, check=check, stdin=subprocess.DEVNULL
    )


class Dir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.auditor = root / "auditor.key"

    def warden(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return warden(self.data, *args, check=check)

    def entries(self, kind: str) -> List[Dict[str, Any]]:
        out = self.warden("log", "show", "--json", "--auditor-key", str(self.auditor)).stdout
        return [e for e in map(json.loads, out.splitlines()) if e["kind"] == kind]

    def count(self, kind: str) -> int:
        out = self.warden("log", "show", "--json").stdout
        return sum(1 for e in map(json.loads, out.splitlines()) if e["kind"] == kind)


@pytest.fixture
def ddir(tmp_path: Path):
    d = Dir(tmp_path)
    d.warden("auditor", "keygen", "--out", str(d.auditor))
    d.warden("init", "--dev", "--auditor", str(d.auditor) + ".pub")
    yield d
    d.warden("writer", "--stop", check=False)
