#!/usr/bin/env python3
"""A second reader of layerstore's seekable layers, written from
docs/FORMAT.md ("Seekable layers") alone.

Usage: seekable.py BLOB [TOC-DIGEST]

Reads the footer, then the table of contents it locates (its sha256 checked
against TOC-DIGEST when given), decodes the layer from the TOC's objects,
pairs each chunk of the layer's files with its place, decompresses the
frame of each and checks the chunk's BLAKE3, and checks that the frames,
decompressed and concatenated, are what a plain zstd decoder makes of the
whole blob. Prints:

    layer blake3:<id>
    frames <count>
    chunks <count>
    prefetch <path> ...   (one line per path, if any)
    tar sha256:<hex of the decompressed tar>

Exits 1 at the first thing wrong. Needs `zstandard` and `blake3`.
"""

import hashlib
import os
import struct
import sys

import blake3
import zstandard

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reader import Bad, Body, idtext, object_body, read_tree  # noqa: E402

FOOTER_LEN = 48
TOC_MAGIC = 0x184D2A5C
FOOTER_MAGIC = 0x184D2A5D
MAX_TOC_LEN = 256 << 20
MAX_TOC_RAW = 1 << 30
MAX_FRAME_RAW = 16 << 20


class Objects:
    """The TOC's objects, read by id as a store would read them."""

    def __init__(self, objects):
        self.by_id = {blake3.blake3(o).digest(): o for o in objects}

    def read(self, oid):
        if oid not in self.by_id:
            raise Bad("object %s is not in the TOC" % idtext(oid))
        return self.by_id[oid]


def footer(blob):
    if len(blob) < FOOTER_LEN:
        raise Bad("shorter than a footer")
    z = blob[-FOOTER_LEN:]
    magic, size = struct.unpack_from("<II", z, 0)
    if magic != FOOTER_MAGIC or size != FOOTER_LEN - 8 or z[8:16] != b"LSSEEK\x00\x01":
        raise Bad("not a layerstore footer")
    offset, length, raw = struct.unpack_from("<QQQ", z, 16)
    if z[40:48] != bytes(8):
        raise Bad("reserved footer bytes")
    if offset + length + FOOTER_LEN != len(blob) or not 9 <= length <= MAX_TOC_LEN or raw > MAX_TOC_RAW:
        raise Bad("the footer's TOC does not fit the blob")
    return offset, length, raw


def layer_files(objects, layer_id):
    """The layer's upserts that are files, in path order: (path, chunks)."""
    data = objects.read(layer_id)
    what = "layer %s" % idtext(layer_id)
    if data[4:5] == b"\x05":
        body = object_body(data, 5, what)
        tree = body.id()
        body.end()
        entries = read_tree(objects, tree)
    else:
        body = object_body(data, 2, what)
        entries = body.seq(lambda: (body.bytes(), body.entry_kind(), body.metadata()))
        body.seq(body.bytes)
        body.seq(body.bytes)
        body.end()
    return [(path, kind[2]) for path, kind, _ in entries if kind[0] == "file"]


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: seekable.py BLOB [TOC-DIGEST]")
    with open(sys.argv[1], "rb") as f:
        blob = f.read()
    offset, length, raw_len = footer(blob)
    frame = blob[offset:offset + length]
    if len(sys.argv) == 3 and "sha256:" + hashlib.sha256(frame).hexdigest() != sys.argv[2]:
        raise Bad("the TOC's digest is not the annotation's")
    magic, size = struct.unpack_from("<II", frame, 0)
    if magic != TOC_MAGIC or size + 8 != length:
        raise Bad("not a layerstore TOC frame")
    raw = zstandard.ZstdDecompressor().decompress(frame[8:], max_output_size=raw_len)
    if len(raw) != raw_len or raw[:8] != b"LSTOC\x00\x01\x00":
        raise Bad("the TOC's length or magic")
    body = Body(raw[8:], "TOC")
    layer = body.id()
    objects = Objects(body.seq(body.bytes))
    frames = body.seq(lambda: (body.u32(), body.u32()))
    places = body.seq(lambda: (body.u32(), body.u32()))
    prefetch = body.seq(body.bytes)
    body.end()

    starts, at = [], 0
    for length_, raw_ in frames:
        if length_ == 0 or raw_ > MAX_FRAME_RAW:
            raise Bad("a frame of %d bytes, %d decompressed" % (length_, raw_))
        starts.append(at)
        at += length_
    if at != offset:
        raise Bad("the frames end at %d, the TOC begins at %d" % (at, offset))
    dctx = zstandard.ZstdDecompressor()
    plain = []
    for (length_, raw_), start in zip(frames, starts):
        out = dctx.decompress(blob[start:start + length_], max_output_size=max(raw_, 1))
        if len(out) != raw_:
            raise Bad("the frame at %d decompresses to %d bytes, not %d" % (start, len(out), raw_))
        plain.append(out)

    seen, n = set(), 0
    for path, chunks in layer_files(objects, layer):
        for cid, clen in chunks:
            if cid in seen:
                continue
            seen.add(cid)
            if n >= len(places):
                raise Bad("fewer places than chunks")
            f, off = places[n]
            n += 1
            if f >= len(frames) or off + clen > frames[f][1]:
                raise Bad("%s: chunk %s outside its frame" % (path.decode(errors="replace"), idtext(cid)))
            if blake3.blake3(plain[f][off:off + clen]).digest() != cid:
                raise Bad("%s: chunk %s does not match its bytes" % (path.decode(errors="replace"), idtext(cid)))
    if n != len(places):
        raise Bad("%d places for %d chunks" % (len(places), n))

    tar = b"".join(plain)
    whole = dctx.stream_reader(blob, read_across_frames=True).read()
    if whole != tar:
        raise Bad("a plain zstd decoder reads other bytes from the blob")
    print("layer %s" % idtext(layer))
    print("frames %d" % len(frames))
    print("chunks %d" % n)
    for p in prefetch:
        print("prefetch %s" % p.decode(errors="replace"))
    print("tar sha256:%s" % hashlib.sha256(tar).hexdigest())


if __name__ == "__main__":
    try:
        main()
    except (Bad, OSError, ValueError, zstandard.ZstdError) as e:
        sys.exit("seekable.py: %s" % e)
