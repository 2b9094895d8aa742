#!/usr/bin/env python3
"""Writes a text corpus for bench/sanitize: log-like and prose lines, about one PII
value (of every type, in varied formats) per 150 bytes, and look-alikes."""
import random
import sys

out, size = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
words = ("the model training run customer said please contact about invoice dataset "
         "shipment account review weights update team support ticket record notes follow "
         "up regarding batch report epoch loss accuracy learning rate checkpoint").split()


def luhn_complete(prefix, n):
    s = prefix + "".join(rng.choice("0123456789") for _ in range(n - len(prefix) - 1))
    for d in "0123456789":
        t = s + d
        total = 0
        for i, c in enumerate(reversed(t)):
            v = int(c)
            if i % 2:
                v *= 2
                if v > 9:
                    v -= 9
            total += v
        if total % 10 == 0:
            return t


def iban():
    bban = "".join(rng.choice("0123456789") for _ in range(18))
    rearranged = bban + "1314" + "00"  # D=13, E=14
    check = 98 - int(rearranged) % 97
    return f"DE{check:02d}{bban}"


def pii():
    k = rng.randrange(8)
    if k == 0:
        return f"{rng.choice(['jane', 'ops.team', 'li.wei'])}{rng.randrange(100)}@example.com"
    if k == 1:
        return f"+1 {rng.randrange(200, 999)} {rng.randrange(200, 999)} {rng.randrange(10000):04d}"
    if k == 2:
        return f"({rng.randrange(200, 999)}) {rng.randrange(200, 999)}-{rng.randrange(10000):04d}"
    if k == 3:
        return f"{rng.randrange(1, 899):03d}-{rng.randrange(1, 99):02d}-{rng.randrange(1, 9999):04d}"
    if k == 4:
        return luhn_complete("4", 16)
    if k == 5:
        return ".".join(str(rng.randrange(256)) for _ in range(4))
    if k == 6:
        return iban()
    return f"2026-11-{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}"


with open(out, "w") as f:
    written = 0
    lines = []
    while written < size:
        parts = []
        for _ in range(rng.randrange(1, 3)):
            parts.append(" ".join(rng.choice(words) for _ in range(rng.randrange(8, 20))))
            parts.append(pii())
        line = " ".join(parts) + "\n"
        lines.append(line)
        written += len(line)
        if len(lines) >= 10000:
            f.write("".join(lines))
            lines = []
    f.write("".join(lines))
