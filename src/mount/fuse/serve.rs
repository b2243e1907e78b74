//! The FUSE requests of a lazy view, answered from the store: lookups and
//! listings from directory objects ([`Nodes`]), reads from verified chunks.
//!
//! The image never changes while it is shown, so everything the kernel may
//! cache, it caches for good: entries and attributes never expire, opens
//! cost no request at all (the server declines `open`, and the kernel then
//! keeps each file's page cache across opens), listings are cached, and
//! `readdirplus` answers a listing and its attributes in one request. Reads
//! come in requests of up to 1 MiB. A reader going through files in order
//! finds most of them in the page cache already: the first read of a file
//! has the files after it in its directory loaded and handed to the kernel
//! (see [`content`](super::content)), and a read that continues where the
//! last one of the file ended has the next chunks loaded ahead.
//!
//! Damage never gives wrong bytes: a chunk that does not verify fails the
//! read with `EIO`, logged (to the server's standard error) with the pack and
//! offset, and the rest of the view stays readable.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use super::content::Content;
use super::nodes::{Node, Nodes, What};
use super::view::ReadLog;
use crate::error::{Error, Result};
use crate::tree::directory::{ChildNode, Directory};
use crate::tree::entry::{EntryKind, Metadata, Timestamp};

/// Entries and attributes never change: the kernel may keep them "forever"
/// (it clamps the value to what it can count).
const TTL: Duration = Duration::from_secs(u32::MAX as u64);
/// Requests of up to 1 MiB.
const MAX_REQUEST: u32 = 1 << 20;
/// How far ahead of a sequential read chunks are loaded.
const READ_AHEAD_BYTES: u64 = 2 << 20;
/// How much of the files after a file first read is loaded ahead: bytes,
/// and files.
const SIBLINGS_AHEAD_BYTES: u64 = 1 << 20;
const SIBLINGS_AHEAD_FILES: usize = 32;
/// `st_blksize`: what `cp` and `cat` size their reads by.
const BLOCK_SIZE: u32 = 128 << 10;

/// One view's server: the node table and the files' content.
pub(super) struct LazyFs {
    nodes: Arc<Nodes>,
    content: Arc<Content>,
    /// Where first reads are recorded, if they are.
    record: Option<ReadLog>,
}

/// Pieces of chunks that make up the bytes of one read.
type Pieces = Vec<(Arc<Vec<u8>>, std::ops::Range<usize>)>;

impl LazyFs {
    pub(super) fn new(nodes: Nodes, content: Arc<Content>, record: Option<ReadLog>) -> Self {
        Self {
            nodes: Arc::new(nodes),
            content,
            record,
        }
    }

    fn node(&self, ino: INodeNo) -> std::result::Result<Arc<Node>, Errno> {
        self.nodes.get(ino.0).ok_or(Errno::ESTALE)
    }

    fn attr(&self, node: &Node) -> FileAttr {
        let meta = node.meta();
        let (kind, size, nlink, rdev) = match &node.what {
            What::Dir(dir) => (FileType::Directory, 0, dir_links(dir), 0),
            What::File { size, .. } => {
                (FileType::RegularFile, *size, self.nodes.link_count(node), 0)
            }
            What::Symlink { target, .. } => (FileType::Symlink, target.len() as u64, 1, 0),
            What::Special { kind, .. } => {
                let (kind, rdev) = match kind {
                    EntryKind::CharDevice { rdev } => (FileType::CharDevice, *rdev),
                    EntryKind::BlockDevice { rdev } => (FileType::BlockDevice, *rdev),
                    _ => (FileType::NamedPipe, 0),
                };
                (kind, 0, 1, fuse_rdev(rdev))
            }
        };
        let time = system_time(meta.mtime);
        FileAttr {
            ino: INodeNo(node.ino),
            size,
            blocks: size.div_ceil(512),
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind,
            perm: (meta.mode & 0o7777) as u16,
            nlink,
            uid: meta.uid,
            gid: meta.gid,
            rdev,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }

    /// The child `name` of directory `parent`.
    fn lookup_node(&self, parent: INodeNo, name: &OsStr) -> std::result::Result<Arc<Node>, Errno> {
        let parent = self.node(parent)?;
        let What::Dir(dir) = &parent.what else {
            return Err(Errno::ENOTDIR);
        };
        let child = dir.child(name.as_bytes()).ok_or(Errno::ENOENT)?;
        self.nodes
            .child(&parent, child)
            .map_err(|e| self.failed(&parent, &e))
    }

    /// Logs `err` about `node` and gives the errno the kernel is told.
    fn failed(&self, node: &Node, err: &Error) -> Errno {
        eprintln!(
            "layerstore: view of {}: '/{}': {err}",
            self.content.store().path().display(),
            node.path
        );
        Errno::EIO
    }

    /// `len` bytes of the file `node` from `offset`, verified, as pieces of
    /// chunks (one, without a copy, for most reads).
    fn read_range(&self, node: &Node, offset: u64, len: u64) -> Result<Pieces> {
        let What::File {
            size,
            chunks,
            starts,
            ..
        } = &node.what
        else {
            return Ok(Vec::new());
        };
        let end = (*size).min(offset.saturating_add(len));
        if offset >= end {
            return Ok(Vec::new());
        }
        let sequential = node.ahead.swap(end, Ordering::Relaxed) == offset;
        if offset == 0 {
            match &self.record {
                Some(log) => log.record(node.ino, &node.path),
                None => self.load_siblings_ahead(node),
            }
        }
        let mut pieces = Vec::new();
        let mut i = starts.partition_point(|&s| s <= offset) - 1;
        while i < starts.len() && starts[i] < end {
            let c = chunks.chunks()[i];
            // Kept, even if no later request of this file needs it: a
            // loader may have it queued still, and then finds it here.
            let bytes = self.content.chunk(c, true)?;
            let from = offset.saturating_sub(starts[i]) as usize;
            let to = ((end - starts[i]) as usize).min(bytes.len());
            pieces.push((bytes, from..to));
            i += 1;
        }
        // A sequential reader gets the chunks after this read loaded ahead
        // of its next request.
        if sequential {
            self.content.load_ahead(
                (i..starts.len())
                    .take_while(|&j| starts[j] < end + READ_AHEAD_BYTES)
                    .map(|j| chunks.chunks()[j]),
            );
        }
        Ok(pieces)
    }

    /// On the first read of a file, loads ahead the content of the files
    /// after it in its directory (up to [`SIBLINGS_AHEAD_BYTES`] or
    /// [`SIBLINGS_AHEAD_FILES`]): what a reader going through the tree in
    /// order asks for next. The directory remembers how far it was loaded,
    /// so each file is queued once and the window moves on only when the
    /// reader comes within [`SIBLINGS_AHEAD_FILES`]` / 4` files of its end.
    fn load_siblings_ahead(&self, node: &Node) {
        let Some(parent) = self.nodes.get(node.parent) else {
            return;
        };
        let (What::Dir(dir), Some(name)) = (&parent.what, node.path.file_name()) else {
            return;
        };
        let Ok(at) = dir
            .children
            .binary_search_by(|c| c.name.as_slice().cmp(name))
        else {
            return;
        };
        let loaded = parent.ahead.load(Ordering::Relaxed) as usize;
        if loaded > at + SIBLINGS_AHEAD_FILES / 4 {
            return;
        }
        let from = loaded.max(at + 1);
        let mut budget = SIBLINGS_AHEAD_BYTES;
        let mut until = from;
        for child in dir.children.iter().skip(from).take(SIBLINGS_AHEAD_FILES) {
            until += 1;
            let ChildNode::Leaf(EntryKind::File { .. } | EntryKind::Hardlink { .. }, _) =
                &child.node
            else {
                continue;
            };
            let Ok(sibling) = self.nodes.child(&parent, child) else {
                continue;
            };
            // Read already (or being read): nothing to hand over.
            if sibling.ahead.load(Ordering::Relaxed) != 0 {
                continue;
            }
            let What::File { chunks, starts, .. } = &sibling.what else {
                continue;
            };
            let mut pieces = Vec::new();
            for (c, start) in chunks.chunks().iter().zip(starts) {
                if budget == 0 {
                    break;
                }
                budget = budget.saturating_sub(u64::from(c.len));
                pieces.push((*start, *c));
            }
            self.content.push_ahead(Arc::clone(&sibling), pieces);
            if budget == 0 {
                break;
            }
        }
        // Another thread may have moved it on meanwhile: only forward.
        parent.ahead.fetch_max(until as u64, Ordering::Relaxed);
    }

    fn list(&self, ino: INodeNo) -> std::result::Result<(Arc<Node>, Arc<Directory>), Errno> {
        let node = self.node(ino)?;
        match &node.what {
            What::Dir(dir) => {
                let dir = Arc::clone(dir);
                Ok((node, dir))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }
}

/// A directory's link count: itself, its entry in its parent, and each
/// subdirectory's `..`.
fn dir_links(dir: &Directory) -> u32 {
    let subdirs = dir
        .children
        .iter()
        .filter(|c| matches!(c.node, ChildNode::Dir(..)))
        .count();
    u32::try_from(subdirs).unwrap_or(u32::MAX - 2) + 2
}

fn system_time(t: Timestamp) -> SystemTime {
    let nanos = Duration::new(t.secs.unsigned_abs(), t.nanos.min(999_999_999));
    if t.secs >= 0 {
        UNIX_EPOCH.checked_add(nanos).unwrap_or(UNIX_EPOCH)
    } else {
        // secs < 0 with nanos past it: secs + nanos/1e9, before the epoch.
        let before = Duration::from_secs(t.secs.unsigned_abs());
        UNIX_EPOCH
            .checked_sub(before)
            .and_then(|s| s.checked_add(Duration::from_nanos(u64::from(t.nanos))))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// A device number as FUSE carries it (the kernel's 32-bit `new_encode_dev`).
fn fuse_rdev(rdev: u64) -> u32 {
    let major = rustix::fs::major(rdev);
    let minor = rustix::fs::minor(rdev);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

fn file_type(node: &ChildNode) -> FileType {
    match node {
        ChildNode::Dir(..) => FileType::Directory,
        ChildNode::Leaf(kind, _) => match kind {
            EntryKind::File { .. } | EntryKind::Hardlink { .. } => FileType::RegularFile,
            EntryKind::Dir => FileType::Directory,
            EntryKind::Symlink { .. } => FileType::Symlink,
            EntryKind::CharDevice { .. } => FileType::CharDevice,
            EntryKind::BlockDevice { .. } => FileType::BlockDevice,
            EntryKind::Fifo => FileType::NamedPipe,
        },
    }
}

fn xattr_reply(value: &[u8], size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(u32::try_from(value.len()).unwrap_or(u32::MAX));
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

fn xattr_names(meta: &Metadata) -> Vec<u8> {
    let mut out = Vec::new();
    for name in meta.xattrs.keys() {
        out.extend_from_slice(name);
        out.push(0);
    }
    out
}

impl Filesystem for LazyFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each is a request the kernel may refuse; the view works without.
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_NO_OPEN_SUPPORT
            | InitFlags::FUSE_NO_OPENDIR_SUPPORT
            | InitFlags::FUSE_MAX_PAGES
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_SPLICE_WRITE
            | InitFlags::FUSE_SPLICE_MOVE;
        let offered = config.capabilities() & wanted;
        let _ = config.add_capabilities(offered);
        let _ = config.set_max_readahead(MAX_REQUEST);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_node(parent, name) {
            Ok(node) => reply.entry(&TTL, &self.attr(&node), Generation(0)),
            Err(errno) => reply.error(errno),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Ok(node) => reply.attr(&TTL, &self.attr(&node)),
            Err(errno) => reply.error(errno),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino).map(|n| match &n.what {
            What::Symlink { target, .. } => Ok(target.clone()),
            _ => Err(Errno::EINVAL),
        }) {
            Ok(Ok(target)) => reply.data(&target),
            Ok(Err(errno)) | Err(errno) => reply.error(errno),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Declined: the kernel then opens every file without asking, and
        // keeps its page cache (FOPEN_KEEP_CACHE is what it assumes).
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // As `open`: the kernel then caches listings (FOPEN_CACHE_DIR).
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let node = match self.node(ino) {
            Ok(node) => node,
            Err(errno) => return reply.error(errno),
        };
        if let What::Dir(_) = node.what {
            return reply.error(Errno::EISDIR);
        }
        match self.read_range(&node, offset, u64::from(size)) {
            Ok(pieces) => {
                if let [(bytes, range)] = pieces.as_slice() {
                    reply.data(&bytes[range.clone()]);
                } else {
                    let mut joined = Vec::with_capacity(size as usize);
                    for (bytes, range) in &pieces {
                        joined.extend_from_slice(&bytes[range.clone()]);
                    }
                    reply.data(&joined);
                }
            }
            Err(err) => reply.error(self.failed(&node, &err)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to flush; ENOSYS makes the kernel stop asking.
        reply.error(Errno::ENOSYS);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (node, dir) = match self.list(ino) {
            Ok(found) => found,
            Err(errno) => return reply.error(errno),
        };
        // Offsets: 1 is ".", 2 is "..", 3 + i the i-th child.
        let mut at = offset;
        loop {
            let full = match at {
                0 => reply.add(INodeNo(node.ino), 1, FileType::Directory, "."),
                1 => reply.add(INodeNo(node.parent), 2, FileType::Directory, ".."),
                n => {
                    let Some(child) = dir.children.get((n - 2) as usize) else {
                        break;
                    };
                    // A hard link's number is its target's: look it up.
                    let ino = match &child.node {
                        ChildNode::Leaf(EntryKind::Hardlink { .. }, _) => {
                            match self.nodes.child(&node, child) {
                                Ok(n) => n.ino,
                                Err(err) => return reply.error(self.failed(&node, &err)),
                            }
                        }
                        _ => self.nodes.child_number(&node.path, &child.name),
                    };
                    reply.add(
                        INodeNo(ino),
                        n + 1,
                        file_type(&child.node),
                        OsStr::from_bytes(&child.name),
                    )
                }
            };
            if full {
                break;
            }
            at += 1;
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (node, dir) = match self.list(ino) {
            Ok(found) => found,
            Err(errno) => return reply.error(errno),
        };
        let mut at = offset;
        loop {
            // "." and ".." come with their attributes too.
            let (child_node, name): (Arc<Node>, &[u8]) = match at {
                0 => (Arc::clone(&node), b"."),
                1 => match self.node(INodeNo(node.parent)) {
                    Ok(parent) => (parent, b".."),
                    Err(errno) => return reply.error(errno),
                },
                n => {
                    let Some(child) = dir.children.get((n - 2) as usize) else {
                        break;
                    };
                    match self.nodes.child(&node, child) {
                        Ok(c) => (c, child.name.as_slice()),
                        Err(err) => return reply.error(self.failed(&node, &err)),
                    }
                }
            };
            let attr = self.attr(&child_node);
            if reply.add(
                INodeNo(child_node.ino),
                at + 1,
                OsStr::from_bytes(name),
                &TTL,
                &attr,
                Generation(0),
            ) {
                break;
            }
            at += 1;
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A read-only image: nothing free. Its size is not known without
        // reading every directory, which statfs must not cost.
        reply.statfs(0, 0, 0, 0, 0, BLOCK_SIZE, 255, BLOCK_SIZE);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.node(ino) {
            Ok(node) => match node.meta().xattrs.get(name.as_bytes()) {
                Some(value) => xattr_reply(value, size, reply),
                None => reply.error(Errno::NO_XATTR),
            },
            Err(errno) => reply.error(errno),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.node(ino) {
            Ok(node) => xattr_reply(&xattr_names(node.meta()), size, reply),
            Err(errno) => reply.error(errno),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_use_the_kernels_32_bit_encoding() {
        // major 8, minor 1 (sda1): 0x801; major 259, minor 0x12345.
        assert_eq!(fuse_rdev(rustix::fs::makedev(8, 1)), 0x801);
        assert_eq!(
            fuse_rdev(rustix::fs::makedev(259, 0x12345)),
            0x45 | (259 << 8) | (0x12300 << 12)
        );
    }

    #[test]
    fn times_before_the_epoch_keep_their_nanoseconds() {
        let t = system_time(Timestamp::new(-2, 500_000_000));
        assert_eq!(
            UNIX_EPOCH.duration_since(t).unwrap(),
            Duration::from_millis(1500)
        );
        let t = system_time(Timestamp::new(3, 7));
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap(), Duration::new(3, 7));
    }
}
