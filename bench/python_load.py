"""Measures an audited load of a large safetensors model from Python (see bench/python):
`warden.safetensors.load_file` through the manager (policy, SHA-256 of every byte
against the signed manifest, a durable access entry) next to plain
`safetensors.numpy.load_file` of the same file, and SHA-256 of the file's bytes alone
(hashlib, one core): the bound of a load that verifies every byte. Same run, same file,
warm page cache, alternating order."""

import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from safetensors.numpy import load_file, save_file

import warden.safetensors
from warden import SecureModelManager

WARDEN = os.environ["WARDEN_BIN"]


def main(runs, mib):
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as root:
        env = dict(os.environ, WARDEN_DATA_DIR=os.path.join(root, "data"))
        env.pop("WARDEN_PASSPHRASE", None)
        run = lambda *a: subprocess.run([WARDEN, *a], env=env, check=True, capture_output=True)
        run("auditor", "keygen", "--out", os.path.join(root, "a.key"))
        run("init", "--dev", "--auditor", os.path.join(root, "a.key.pub"))
        run("principal", "add", "eng", "--role", "ml-engineer", "--as", "admin")
        path = os.path.join(root, "big.safetensors")
        n = mib // 16
        rng = np.random.default_rng(1)
        save_file({f"layer{i}": rng.standard_normal((1024, 4096), dtype=np.float32) for i in range(n)}, path)
        size = os.path.getsize(path)
        data_dir = env["WARDEN_DATA_DIR"]
        with SecureModelManager(data_dir, acting_as="eng") as m:
            m.register("big", "1", path)
            warden.safetensors.load_file(m, "big", "1")  # warm: page cache, writer, registry
            load_file(path)
            audited, plain, sha = [], [], []
            for _ in range(runs):
                t = time.perf_counter()
                got = load_file(path)
                plain.append(time.perf_counter() - t)
                del got
                t = time.perf_counter()
                got = warden.safetensors.load_file(m, "big", "1")
                audited.append(time.perf_counter() - t)
                del got
                with open(path, "rb") as f:
                    b = f.read()
                t = time.perf_counter()
                hashlib.sha256(b).digest()
                sha.append(time.perf_counter() - t)
                del b
        a, p, s = (statistics.median(x) for x in (audited, plain, sha))
        gib = size / 2**30
        print(f"file: {gib:.2f} GiB, {n} tensors; median of {runs}")
        print(f"safetensors.numpy.load_file        {p:.3f} s  ({gib / p:.2f} GiB/s)  baseline")
        print(f"warden.safetensors.load_file       {a:.3f} s  ({gib / a:.2f} GiB/s)  {a / p:.2f}x baseline, overhead {100 * (a / p - 1):+.1f}% (goal <= +5%)")
        print(f"SHA-256 of the bytes alone         {s:.3f} s  ({gib / s:.2f} GiB/s)  the bound of a load that verifies every byte: {s / p:.2f}x baseline")
        print(f"runs: audited {[round(x, 3) for x in audited]} plain {[round(x, 3) for x in plain]} sha256 {[round(x, 3) for x in sha]}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else 1024)
