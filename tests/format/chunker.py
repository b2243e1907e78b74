#!/usr/bin/env python3
"""The chunker of docs/FORMAT.md ("The chunker"), written from the spec alone,
checked against the cut points of tests/fixtures/format/chunker.txt.

Usage: chunker.py CHUNKER_TXT [MAX_LEN]

Inputs longer than MAX_LEN (default: all) are skipped, and said to be.
Exits 1 naming the first input whose cut points differ. Standard library only.
"""

import hashlib
import sys

M64 = (1 << 64) - 1
MIN, AVG, MAX = 16384, 65536, 262144
GEAR = [int.from_bytes(hashlib.md5(bytes([i]) * 64).digest()[:8], "big") for i in range(256)]
GEAR_LS = [(g << 1) & M64 for g in GEAR]
MASK_S = 0x0000D90703537000
MASK_L = 0x0000D90F03530000
MASK_S_LS = (MASK_S << 1) & M64
MASK_L_LS = (MASK_L << 1) & M64


def cut(data, start):
    """The length of the chunk of data starting at start."""
    n = len(data) - start
    if n <= MIN:
        return n
    center = AVG
    if n > MAX:
        n = MAX
    elif n < center:
        center = n
    i, h = MIN // 2, 0
    while i < center // 2:
        a = 2 * i
        h = ((h << 2) + GEAR_LS[data[start + a]]) & M64
        if h & MASK_S_LS == 0:
            return a
        h = (h + GEAR[data[start + a + 1]]) & M64
        if h & MASK_S == 0:
            return a + 1
        i += 1
    while i < n // 2:
        a = 2 * i
        h = ((h << 2) + GEAR_LS[data[start + a]]) & M64
        if h & MASK_L_LS == 0:
            return a
        h = (h + GEAR[data[start + a + 1]]) & M64
        if h & MASK_L == 0:
            return a + 1
        i += 1
    return n


def lengths(data):
    out, at = [], 0
    while at < len(data):
        length = cut(data, at)
        out.append(length)
        at += length
    return out


def generate(generator, length):
    kind, arg = generator.split(":", 1)
    if kind == "fill":
        return bytes([int(arg, 0)]) * length
    if kind == "repeat":
        text = arg.encode()
        return (text * (length // len(text) + 1))[:length]
    if kind == "random":
        s, out = int(arg, 0), bytearray()
        while len(out) < length:
            s ^= s >> 12
            s = (s ^ (s << 25)) & M64
            s ^= s >> 27
            out += ((s * 0x2545F4914F6CDD1D) & M64).to_bytes(8, "little")
        return bytes(out[:length])
    raise ValueError("unknown generator " + generator)


def main():
    max_len = int(sys.argv[2]) if len(sys.argv) > 2 else None
    checked = 0
    for line in open(sys.argv[1]):
        if line.startswith("#"):
            continue
        # The generator holds ':' too: the last one ends "name kind:arg length".
        head, _, rest = line.rstrip("\n").rpartition(":")
        name, generator, length = head.split(" ")
        want = [int(x) for x in rest.split()]
        if max_len is not None and int(length) > max_len:
            print("skipped %s (%s bytes)" % (name, length))
            continue
        got = lengths(generate(generator, int(length)))
        if got != want:
            sys.exit("chunker.py: %s: cut points %s, pinned %s" % (name, got, want))
        checked += 1
    print("%d inputs cut as pinned" % checked)


if __name__ == "__main__":
    main()
