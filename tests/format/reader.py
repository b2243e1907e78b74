#!/usr/bin/env python3
"""A second reader of layerstore stores, written from docs/FORMAT.md alone.

Usage: reader.py STORE
       reader.py --refusals tests/fixtures/format/bad-objects.txt

Opens the store read-only, checks every index (header, fanout, order,
checksum), walks every indexed pack frame by frame verifying each frame's
header check and each chunk's BLAKE3, then lists the refs and every image
they reach, with each image's layers, config, history and tree (every path
with its metadata and the BLAKE3 of its content), in the form that
tests/format/listing.rs describes. Exits 1, naming the file and offset, at
the first thing wrong.

Needs Python 3.8+ and the PyPI packages `zstandard` and `blake3`.
"""

import os
import sys

import blake3
import zstandard

MAX_FRAME_RAW = 64 << 20
MAX_FRAME_STORED = MAX_FRAME_RAW + (4 << 20)
MAX_DEPTH = 4096


class Bad(Exception):
    """Something in the store breaks the spec: refused as malformed."""


class InvalidTree(Bad):
    """A tree or layer breaks a rule every tree obeys: refused as an invalid tree."""


def b3(data):
    return blake3.blake3(data).digest()


def u32(b, at):
    return int.from_bytes(b[at:at + 4], "little")


def u64(b, at):
    return int.from_bytes(b[at:at + 8], "little")


def esc(data):
    out = []
    for c in data:
        if 0x21 <= c <= 0x7E and c != 0x5C:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def idtext(raw):
    return "blake3:" + raw.hex()


# --- config -----------------------------------------------------------------

def read_config(root):
    path = os.path.join(root, "config")
    with open(path, "rb") as f:
        data = f.read(64 * 1024 + 1)
    if len(data) > 64 * 1024:
        raise Bad("%s: too long" % path)
    pairs = {}
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise Bad("%s: line %d has no '='" % (path, number))
        key, value = (part.strip() for part in line.split("=", 1))
        if key in pairs:
            raise Bad("%s: '%s' given twice" % (path, key))
        pairs[key] = value
    if pairs.get("format") != "layerstore":
        raise Bad("%s: not a layerstore config" % path)
    if pairs.get("version") != "3":
        raise Bad("%s: unsupported version %s" % (path, pairs.get("version")))
    expected = {
        "chunker": "fastcdc-v2020",
        "chunk-min": "16384",
        "chunk-avg": "65536",
        "chunk-max": "262144",
        "compression": "zstd",
    }
    for key in pairs:
        if key not in ("format", "version", "level") and key not in expected:
            raise Bad("%s: unknown key '%s'" % (path, key))
    for key, value in expected.items():
        if pairs.get(key) != value:
            raise Bad("%s: %s is %r" % (path, key, pairs.get(key)))
    level = int(pairs["level"])
    if level == 0 or not -7 <= level <= 22:
        raise Bad("%s: level %d" % (path, level))


# --- packs, frames and indexes ----------------------------------------------

PACK_MAGIC = b"LSPACK\x00\x01"
FRAME_MAGIC = b"LSFR"
INDEX_MAGIC = b"LSIDX\x00\x00\x01"
INDEX_HEADER = 8 + 4 + 4 + 8 + 256 * 4


def decode_payload(codec, stored, raw_len, where):
    if codec == 0:
        if len(stored) != raw_len:
            raise Bad("%s: raw frame of the wrong length" % where)
        return stored
    if codec == 1:
        try:
            raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_len)
        except zstandard.ZstdError as e:
            raise Bad("%s: zstd: %s" % (where, e))
        if len(raw) != raw_len:
            raise Bad("%s: frame decodes to %d bytes, not %d" % (where, len(raw), raw_len))
        return raw
    raise Bad("%s: unknown codec %d" % (where, codec))


def walk_pack(path, data):
    """Every frame of a pack: (payload offset, codec, stored, raw, [(id, len)]);
    checks each header and every chunk's id."""
    if data[:8] != PACK_MAGIC:
        raise Bad("%s: bad pack magic" % path)
    frames = []
    at = 8
    while at < len(data):
        where = "%s at %d" % (path, at)
        fixed = data[at:at + 28]
        if len(fixed) < 28 or fixed[:4] != FRAME_MAGIC:
            raise Bad("%s: not a frame header" % where)
        codec = fixed[4]
        if codec not in (0, 1) or fixed[5:8] != b"\x00\x00\x00":
            raise Bad("%s: bad codec or reserved bytes" % where)
        stored, raw, count = u32(fixed, 8), u32(fixed, 12), u32(fixed, 16)
        if raw > MAX_FRAME_RAW or stored > MAX_FRAME_STORED:
            raise Bad("%s: frame too large" % where)
        if count == 0 or count > raw or (codec == 0 and stored != raw):
            raise Bad("%s: bad lengths" % where)
        table = data[at + 28:at + 28 + 36 * count]
        if len(table) != 36 * count:
            raise Bad("%s: truncated table" % where)
        if b3(fixed[:20] + table)[:8] != fixed[20:28]:
            raise Bad("%s: header check mismatch" % where)
        chunks = []
        for i in range(count):
            row = table[36 * i:36 * i + 36]
            if u32(row, 32) == 0:
                raise Bad("%s: empty chunk" % where)
            chunks.append((row[:32], u32(row, 32)))
        if sum(length for _, length in chunks) != raw:
            raise Bad("%s: chunk lengths do not sum to raw" % where)
        payload_at = at + 28 + 36 * count
        if payload_at + stored > len(data):
            raise Bad("%s: the pack ends inside this frame" % where)
        payload = decode_payload(codec, data[payload_at:payload_at + stored], raw, where)
        offset = 0
        for chunk_id, length in chunks:
            if b3(payload[offset:offset + length]) != chunk_id:
                raise Bad("%s: chunk %s does not match its bytes" % (where, chunk_id.hex()))
            offset += length
        frames.append((payload_at, codec, stored, raw, chunks))
        at = payload_at + stored
    return frames


def read_index(path, data):
    """The records of an index: {id: (payload offset, stored, raw, offset, len, codec)}."""
    if len(data) < INDEX_HEADER + 32 or data[:8] != INDEX_MAGIC:
        raise Bad("%s: bad index header" % path)
    if u32(data, 8) != 64 or data[12:16] != b"\x00" * 4:
        raise Bad("%s: bad record length" % path)
    count = u64(data, 16)
    if len(data) != INDEX_HEADER + 64 * count + 32:
        raise Bad("%s: claims %d records in %d bytes" % (path, count, len(data)))
    previous = 0
    for b in range(256):
        f = u32(data, 24 + 4 * b)
        if f < previous or f > count:
            raise Bad("%s: fanout not monotonic at %d" % (path, b))
        previous = f
    if previous != count:
        raise Bad("%s: fanout does not end at the count" % path)
    if b3(data[:-32]) != data[-32:]:
        raise Bad("%s: checksum mismatch" % path)
    records = {}
    last = None
    for i in range(count):
        r = data[INDEX_HEADER + 64 * i:INDEX_HEADER + 64 * (i + 1)]
        chunk_id = r[:32]
        if last is not None and last >= chunk_id:
            raise Bad("%s: records %d and %d out of order" % (path, i - 1, i))
        last = chunk_id
        # The fanout bucket of the id must hold record i.
        lo = 0 if chunk_id[0] == 0 else u32(data, 24 + 4 * (chunk_id[0] - 1))
        if not lo <= i < u32(data, 24 + 4 * chunk_id[0]):
            raise Bad("%s: record %d outside its fanout bucket" % (path, i))
        if r[58:64] != b"\x00" * 6:
            raise Bad("%s: record %d: reserved bytes" % (path, i))
        records[chunk_id] = (u64(r, 32), u32(r, 40), u32(r, 44), u32(r, 48), u32(r, 52), r[56])
    return records


class Store:
    def __init__(self, root):
        self.root = root
        read_config(root)
        packs_dir = os.path.join(root, "packs")
        self.chunks = {}  # id -> (pack path, record)
        self.packs = {}  # pack path -> bytes
        names = sorted(os.listdir(packs_dir))
        for name in names:
            stem, _, ext = name.rpartition(".")
            if ext != "idx" or len(stem) != 64 or any(c not in "0123456789abcdef" for c in stem):
                continue
            idx_path = os.path.join(packs_dir, name)
            pack_path = os.path.join(packs_dir, stem + ".pack")
            with open(idx_path, "rb") as f:
                records = read_index(idx_path, f.read())
            with open(pack_path, "rb") as f:
                pack = f.read()
            if b3(pack).hex() != stem:
                raise Bad("%s: the pack's BLAKE3 is not its name" % pack_path)
            # Every record names a chunk of a frame of the pack, where it is.
            located = {}
            for payload_at, codec, stored, raw, frame_chunks in walk_pack(pack_path, pack):
                offset = 0
                for chunk_id, length in frame_chunks:
                    located.setdefault(chunk_id, (payload_at, stored, raw, offset, length, codec))
                    offset += length
            for chunk_id, record in records.items():
                if located.get(chunk_id) != record and not self._record_points_at(pack, record, chunk_id):
                    raise Bad("%s: record of %s does not match the pack" % (idx_path, chunk_id.hex()))
                self.chunks.setdefault(chunk_id, (pack_path, record))
            self.packs[pack_path] = pack

    @staticmethod
    def _record_points_at(pack, record, chunk_id):
        payload_at, stored, raw, offset, length, codec = record
        if payload_at + stored > len(pack) or length == 0 or offset + length > raw:
            return False
        try:
            payload = decode_payload(codec, pack[payload_at:payload_at + stored], raw, "")
        except Bad:
            return False
        return b3(payload[offset:offset + length]) == chunk_id

    def read(self, chunk_id):
        if chunk_id not in self.chunks:
            raise Bad("chunk %s is not in the store" % chunk_id.hex())
        pack_path, (payload_at, stored, raw, offset, length, codec) = self.chunks[chunk_id]
        pack = self.packs[pack_path]
        where = "%s at %d" % (pack_path, payload_at)
        if payload_at + stored > len(pack) or offset + length > raw or raw > MAX_FRAME_RAW:
            raise Bad("%s: record outside the pack" % where)
        payload = decode_payload(codec, pack[payload_at:payload_at + stored], raw, where)
        data = payload[offset:offset + length]
        if b3(data) != chunk_id:
            raise Bad("%s: chunk %s does not match its bytes" % (where, chunk_id.hex()))
        return data


# --- postcard and objects ---------------------------------------------------

class Body:
    """A postcard body, read strictly (canonical varints, 0/1 tags)."""

    def __init__(self, data, what):
        self.data, self.at, self.what = data, 0, what

    def bad(self, reason):
        return Bad("%s: %s at body offset %d" % (self.what, reason, self.at))

    def invalid(self, reason):
        return InvalidTree("%s: %s at body offset %d" % (self.what, reason, self.at))

    def byte(self):
        if self.at >= len(self.data):
            raise self.bad("truncated")
        self.at += 1
        return self.data[self.at - 1]

    def take(self, n):
        if self.at + n > len(self.data):
            raise self.bad("truncated")
        self.at += n
        return self.data[self.at - n:self.at]

    def varint(self, max_bytes):
        value, shift = 0, 0
        for i in range(max_bytes):
            b = self.byte()
            value |= (b & 0x7F) << shift
            shift += 7
            if b & 0x80 == 0:
                if b == 0 and i > 0:
                    raise self.bad("over-long varint")
                return value
        raise self.bad("varint too long")

    def u32(self):
        v = self.varint(5)
        if v >= 1 << 32:
            raise self.bad("u32 out of range")
        return v

    def u64(self):
        v = self.varint(10)
        if v >= 1 << 64:
            raise self.bad("u64 out of range")
        return v

    def i64(self):
        z = self.u64()
        return (z >> 1) ^ -(z & 1)

    def flag(self):
        b = self.byte()
        if b > 1:
            raise self.bad("a boolean or option tag of %d" % b)
        return b == 1

    def bytes(self):
        return self.take(self.u64())

    def string(self):
        try:
            return self.bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise self.bad("a string that is not UTF-8")

    def seq(self, item):
        return [item() for _ in range(self.u64())]

    def id(self):
        return self.take(32)

    def option(self, item):
        return item() if self.flag() else None

    def timestamp(self):
        return (self.i64(), self.u32())

    def metadata(self):
        mode, uid, gid, mtime = self.u32(), self.u32(), self.u32(), self.timestamp()
        xattrs = self.seq(lambda: (self.bytes(), self.bytes()))
        names = [k for k, _ in xattrs]
        if names != sorted(set(names)):
            raise self.bad("xattrs not strictly increasing")
        if mode & ~0o7777 or mtime[1] >= 1_000_000_000 or any(not k or 0 in k for k in names):
            raise self.invalid("invalid metadata")
        return {"mode": mode, "uid": uid, "gid": gid, "mtime": mtime, "xattrs": xattrs}

    def entry_kind(self):
        variant = self.u32()
        if variant == 0:
            size = self.u64()
            chunks = self.seq(lambda: (self.id(), self.u32()))
            if sum(length for _, length in chunks) != size:
                raise self.invalid("a file whose size is not its chunks' total")
            return ("file", size, chunks)
        if variant == 1:
            return ("dir",)
        if variant == 2:
            return ("symlink", self.bytes())
        if variant == 3:
            return ("hardlink", self.bytes())
        if variant == 4:
            return ("char", self.u64())
        if variant == 5:
            return ("block", self.u64())
        if variant == 6:
            return ("fifo",)
        raise self.bad("unknown entry kind %d" % variant)

    def end(self):
        if self.at != len(self.data):
            raise self.bad("%d trailing bytes" % (len(self.data) - self.at))


def object_body(data, kind, what):
    if len(data) < 8 or data[:4] != b"LSOB":
        raise Bad("%s: not an object" % what)
    if data[4] != kind:
        raise Bad("%s: object kind %d, not %d" % (what, data[4], kind))
    if data[5] != 0 or int.from_bytes(data[6:8], "little") != 1:
        raise Bad("%s: reserved byte or version" % what)
    return Body(data[8:], what)


def path_key(path):
    return path.split(b"/") if path else []


def read_directory(store, dir_id):
    what = "directory %s" % idtext(dir_id)
    body = object_body(store.read(dir_id), 4, what)
    meta = body.metadata()
    children = []
    for _ in range(body.u64()):
        name = body.bytes()
        if not name or name in (b".", b"..") or b"/" in name or b"\x00" in name:
            raise body.bad("a bad name %r" % name)
        if children and children[-1][0] >= name:
            raise body.bad("names out of order")
        variant = body.u32()
        if variant == 0:
            children.append((name, ("dir", body.id(), body.u64()), None))
        elif variant == 1:
            kind = body.entry_kind()
            if kind[0] == "dir":
                raise body.bad("a directory as a leaf")
            children.append((name, kind, body.metadata()))
        else:
            raise body.bad("unknown node %d" % variant)
    body.end()
    return meta, children


def read_tree(store, root_id):
    """The entries of the tree, in path order: (path, kind, meta)."""
    meta, children = read_directory(store, root_id)
    out = [(b"", ("dir",), meta)]

    def expand(path, children, depth):
        links = 0
        for name, kind, meta in children:
            child = path + b"/" + name if path else name
            if kind[0] == "dir":
                if depth >= MAX_DEPTH:
                    raise Bad("%s: too deep" % child)
                sub_meta, sub_children = read_directory(store, kind[1])
                out.append((child, ("dir",), sub_meta))
                found = expand(child, sub_children, depth + 1)
                if found != kind[2]:
                    raise Bad("%s: said to hold %d hard links, holds %d" % (child, kind[2], found))
                links += found
            else:
                out.append((child, kind, meta))
                links += kind[0] == "hardlink"
        return links

    expand(b"", children, 1)
    files = {path for path, kind, _ in out if kind[0] == "file"}
    for path, kind, _ in out:
        if kind[0] == "hardlink" and (kind[1] not in files or path_key(kind[1]) >= path_key(path)):
            raise InvalidTree("%s: a hard link to %r" % (path, kind[1]))
        if kind[0] == "symlink" and (not kind[1] or b"\x00" in kind[1]):
            raise InvalidTree("%s: a bad symlink target" % path)
    return out


def read_image(store, image_id):
    body = object_body(store.read(image_id), 3, "image %s" % idtext(image_id))
    layers = body.seq(body.id)
    rootfs = body.id()
    config = {
        "env": body.seq(body.string),
        "cmd": body.seq(body.string),
        "entrypoint": body.seq(body.string),
        "workdir": body.string(),
        "user": body.string(),
        "labels": body.seq(lambda: (body.string(), body.string())),
        "created": body.option(body.timestamp),
        "author": body.string(),
    }
    keys = [k.encode() for k, _ in config["labels"]]
    if keys != sorted(set(keys)):
        raise body.bad("labels not strictly increasing")
    history = body.seq(lambda: (body.string(), body.string(), body.option(body.timestamp), body.flag()))
    body.end()
    if sum(1 for h in history if not h[3]) != len(layers):
        raise Bad("image %s: history does not match the layers" % idtext(image_id))
    return layers, rootfs, config, history


def valid_tree(entries):
    """Whether (path, kind) entries, in path order, form a tree: a root
    directory, every parent a directory, every hard link to an earlier file,
    every symlink target non-empty without NUL."""
    kinds = {}
    for path, kind in entries:
        if path == b"":
            if kind[0] != "dir":
                return False
        elif kinds.get(path.rpartition(b"/")[0], ("",))[0] != "dir":
            return False
        if kind[0] == "hardlink" and kinds.get(kind[1], ("",))[0] != "file":
            return False
        if kind[0] == "symlink" and (not kind[1] or b"\x00" in kind[1]):
            return False
        kinds[path] = kind
    return b"" in kinds


EMPTY_ROOT = {"mode": 0o755, "uid": 0, "gid": 0, "mtime": (0, 0), "xattrs": []}


def layer_line(store, layer_id):
    data = store.read(layer_id)
    what = "layer %s" % idtext(layer_id)
    if data[4:5] == b"\x05":
        body = object_body(data, 5, what)
        tree = body.id()
        body.end()
        return "layer %s tree %s" % (idtext(layer_id), idtext(tree))
    body = object_body(data, 2, what)

    def entry():
        path = body.bytes()
        return path, body.entry_kind(), body.metadata()

    upserts = body.seq(entry)
    whiteouts = body.seq(body.bytes)
    opaque = body.seq(body.bytes)
    body.end()
    for paths in ([p for p, _, _ in upserts], whiteouts, opaque):
        keys = [path_key(p) for p in paths]
        if any(a >= b for a, b in zip(keys, keys[1:])):
            raise InvalidTree("%s: a list out of order" % what)
    if b"" in whiteouts:
        raise InvalidTree("%s: the root whited out" % what)
    for path, kind, _ in upserts:
        if path == b"" and kind[0] != "dir":
            raise InvalidTree("%s: the root upserted as a %s" % (what, kind[0]))
        if kind[0] == "symlink" and (not kind[1] or b"\x00" in kind[1]):
            raise InvalidTree("%s: a bad symlink target at %r" % (what, path))
    # Canonical rule 6: the layer that makes a whole tree of the empty tree
    # is stored as kind 5, never as kind 2.
    if not whiteouts and not opaque and upserts:
        entries = [(p, k) for p, k, _ in upserts]
        root = [m for p, _, m in upserts if p == b""]
        if not root:
            entries.insert(0, (b"", ("dir",)))
        if (not root or root[0] != EMPTY_ROOT) and valid_tree(entries):
            raise Bad("%s: a layer of a whole tree stored entry by entry" % what)
    return "layer %s upserts %d whiteouts %d opaque %d" % (
        idtext(layer_id), len(upserts), len(whiteouts), len(opaque))


def read_flat_snapshot(data):
    """A flat snapshot (kind 1): its entries, a tree."""
    body = object_body(data, 1, "flat snapshot")
    entries = body.seq(lambda: (body.bytes(), body.entry_kind(), body.metadata()))
    body.end()
    keys = [path_key(p) for p, _, _ in entries]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        raise InvalidTree("flat snapshot: entries out of order")
    if not valid_tree([(p, k) for p, k, _ in entries]):
        raise InvalidTree("flat snapshot: not a tree")
    return entries


# --- refs and the listing ---------------------------------------------------

def parse_id(text, where):
    text = text.strip()
    if not text.startswith("blake3:") or len(text) != 71:
        raise Bad("%s: '%s' is not an id" % (where, text))
    return bytes.fromhex(text[7:])


def ref_names(root, group):
    path = os.path.join(root, "refs", group)
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def read_ref(root, group, name):
    path = os.path.join(root, "refs", group, name)
    with open(path, "rb") as f:
        data = f.read(4097)
    if len(data) > 4096:
        raise Bad("%s: too long" % path)
    return data.decode("utf-8"), path


def time_text(t):
    return "-" if t is None else "%d.%09d" % t


def listing(store):
    root = store.root
    out = ["store packs %d chunks %d" % (len(store.packs), len(store.chunks))]
    images = set()
    for name in ref_names(root, "tags"):
        text, path = read_ref(root, "tags", name)
        image = parse_id(text, path)
        out.append("tag %s %s" % (name.replace("%2F", "/"), idtext(image)))
        images.add(image)
    for key in ref_names(root, "cache"):
        text, path = read_ref(root, "cache", key)
        image = parse_id(text, path)
        out.append("cache %s %s" % (key, idtext(image)))
        images.add(image)
    for group in ref_names(root, ""):
        if group in ("tags", "cache") or not os.path.isdir(os.path.join(root, "refs", group)):
            continue
        for name in ref_names(root, group):
            text, path = read_ref(root, group, name)
            for line in text.splitlines():
                if not line.strip():
                    continue
                pinned = parse_id(line, path)
                out.append("pin %s/%s %s" % (group, name, idtext(pinned)))
                if store.read(pinned)[:5] == b"LSOB\x03":
                    images.add(pinned)
    lazy = set()
    for name in ref_names(root, "lazy"):
        text, path = read_ref(root, "lazy", name)
        lazy.update(parse_id(line, path) for line in text.splitlines() if line.strip())
    for image in sorted(images):
        layers, rootfs, config, history = read_image(store, image)
        out.append("image %s" % idtext(image))
        for layer in layers:
            out.append(" " + layer_line(store, layer))
        strings = lambda items: "[%s]" % ",".join(esc(s.encode()) for s in items)
        out.append(" config env=%s cmd=%s entrypoint=%s workdir=%s user=%s labels={%s} created=%s author=%s" % (
            strings(config["env"]), strings(config["cmd"]), strings(config["entrypoint"]),
            esc(config["workdir"].encode()), esc(config["user"].encode()),
            ",".join("%s:%s" % (esc(k.encode()), esc(v.encode())) for k, v in config["labels"]),
            time_text(config["created"]), esc(config["author"].encode())))
        for created_by, comment, created, empty_layer in history:
            out.append(" history created_by=%s comment=%s created=%s empty_layer=%d" % (
                esc(created_by.encode()), esc(comment.encode()), time_text(created), empty_layer))
        out.append(" rootfs %s" % idtext(rootfs))
        for path, kind, meta in read_tree(store, rootfs):
            line = " /%s %s mode=%04o owner=%d:%d mtime=%s" % (
                esc(path), kind[0], meta["mode"], meta["uid"], meta["gid"], time_text(meta["mtime"]))
            for name, value in meta["xattrs"]:
                line += " xattr=%s:%s" % (esc(name), value.hex())
            missing = kind[0] == "file" and sum(1 for c, _ in kind[2] if c not in store.chunks)
            if missing and image in lazy:
                # Being fetched lazily: what is not here yet is no damage.
                line += " size=%d chunks=%d missing=%d" % (kind[1], len(kind[2]), missing)
            elif kind[0] == "file":
                h = blake3.blake3()
                for chunk_id, length in kind[2]:
                    data = store.read(chunk_id)
                    if len(data) != length:
                        raise Bad("%s: chunk %s is not %d bytes" % (path, chunk_id.hex(), length))
                    h.update(data)
                line += " size=%d chunks=%d blake3=%s" % (kind[1], len(kind[2]), h.hexdigest())
            elif kind[0] == "symlink":
                line += " target=%s" % esc(kind[1])
            elif kind[0] == "hardlink":
                line += " target=/%s" % esc(kind[1])
            elif kind[0] in ("char", "block"):
                line += " rdev=%d" % kind[1]
            out.append(line)
    return "\n".join(out) + "\n"


class Objects:
    """Objects by id, in memory: what the should-fail vectors are read from."""

    def __init__(self, objects):
        self.objects = {b3(o): o for o in objects}

    def read(self, chunk_id):
        if chunk_id not in self.objects:
            raise Bad("chunk %s is not here" % chunk_id.hex())
        return self.objects[chunk_id]


EMPTY_TREE = bytes.fromhex("4c534f4204000100ed03000000000000")


def refusals(path):
    """For each line `name decoder error hex` of bad-objects.txt, the object
    read as the decoder says (`layer` as an image's layer, `image`,
    `directory` as a tree's root, beside the empty tree, `snapshot` as a
    flat snapshot): `name malformed`, `name invalid-tree` or `name accepted`."""
    out = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.split(" ")
            name, decoder, data = fields[0], fields[1], bytes.fromhex(fields[3].strip())
            source = Objects([data, EMPTY_TREE])
            try:
                if decoder == "layer":
                    layer_line(source, b3(data))
                elif decoder == "image":
                    read_image(source, b3(data))
                elif decoder == "directory":
                    read_tree(source, b3(data))
                elif decoder == "snapshot":
                    read_flat_snapshot(data)
                else:
                    raise ValueError("unknown decoder %s" % decoder)
                verdict = "accepted"
            except InvalidTree:
                verdict = "invalid-tree"
            except Bad:
                verdict = "malformed"
            out.append("%s %s" % (name, verdict))
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--refusals":
        sys.stdout.write(refusals(sys.argv[2]))
        return
    if len(sys.argv) != 2:
        sys.exit("usage: reader.py STORE | reader.py --refusals BAD-OBJECTS")
    try:
        sys.stdout.write(listing(Store(sys.argv[1])))
    except (Bad, OSError, ValueError) as e:
        sys.exit("reader.py: %s" % e)


if __name__ == "__main__":
    main()
