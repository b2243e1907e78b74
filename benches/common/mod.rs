//! Data generators shared by the benches. Everything is generated when a bench
//! runs, never at build time, and is the same on every run (fixed seeds).

#![allow(dead_code, reason = "each bench uses a different part of this module")]

use std::io::Read;

/// A xorshift64* stream: fast, deterministic, incompressible.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        let mut words = out.chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// Tokens of a C-like language; text made of them compresses about like source.
const TOKENS: [&str; 64] = [
    "static ",
    "int ",
    "struct ",
    "return ",
    "if (",
    ") {\n",
    "}\n",
    "else ",
    "for (",
    "; ",
    "const ",
    "char *",
    "void ",
    "unsigned long ",
    "size_t ",
    "NULL",
    "err",
    " = ",
    " == ",
    " != ",
    "->",
    ".",
    ", ",
    "(",
    ")",
    ";\n",
    "\t",
    "\t\t",
    "/* ",
    " */\n",
    "#include <",
    ">\n",
    "lock",
    "unlock",
    "page",
    "inode",
    "buffer",
    "len",
    "offset",
    "count",
    "flags",
    "dev",
    "ret",
    "data",
    "priv",
    "sizeof(",
    "goto out;\n",
    "break;\n",
    "0",
    "1",
    "-EINVAL",
    "-ENOMEM",
    "kfree(",
    "kmalloc(",
    "GFP_KERNEL",
    "mutex_",
    "spin_",
    "list_",
    "entry",
    "head",
    "next",
    "prev",
    "u32 ",
    "u64 ",
];

/// Text-like bytes: tokens picked at random, with a random identifier suffix
/// now and then so no long run repeats (no accidental deduplication).
pub fn text_fill(noise: &mut Noise, out: &mut Vec<u8>, len: usize) {
    let target = out.len() + len;
    while out.len() < target {
        let r = noise.next_u64();
        for k in 0..8 {
            let b = (r >> (k * 8)) as u8;
            out.extend_from_slice(TOKENS[usize::from(b & 63)].as_bytes());
            if b >= 0xf0 {
                out.extend_from_slice(format!("{:x}", r & 0xfff).as_bytes());
            }
        }
    }
    out.truncate(target);
}

/// Incompressible bytes.
pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Noise::new(seed).fill(&mut out);
    out
}

/// Segment length of mixed data: text and noise alternate every this many bytes.
pub const MIX_SEGMENT: usize = 1 << 20;

/// Mixed data: half text-like, half incompressible, alternating every MiB.
pub fn mixed(len: usize, seed: u64) -> Vec<u8> {
    let mut noise = Noise::new(seed);
    let mut out = Vec::with_capacity(len + 64);
    let mut text = true;
    while out.len() < len {
        let n = MIX_SEGMENT.min(len - out.len());
        if text {
            text_fill(&mut noise, &mut out, n);
        } else {
            let start = out.len();
            out.resize(start + n, 0);
            noise.fill(&mut out[start..]);
        }
        text = !text;
    }
    out
}

/// A reader of `len` bytes of mixed data, generated as it is read (never held
/// in memory at once).
pub struct MixedReader {
    noise: Noise,
    left: u64,
    segment: Vec<u8>,
    at: usize,
    text: bool,
}

impl MixedReader {
    pub fn new(len: u64, seed: u64) -> Self {
        Self {
            noise: Noise::new(seed),
            left: len,
            segment: Vec::with_capacity(MIX_SEGMENT + 64),
            at: 0,
            text: true,
        }
    }
}

impl Read for MixedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.at == self.segment.len() {
            self.segment.clear();
            if self.text {
                text_fill(&mut self.noise, &mut self.segment, MIX_SEGMENT);
            } else {
                self.segment.resize(MIX_SEGMENT, 0);
                self.noise.fill(&mut self.segment);
            }
            self.text = !self.text;
            self.at = 0;
        }
        let n = buf
            .len()
            .min(self.segment.len() - self.at)
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.segment[self.at..self.at + n]);
        self.at += n;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A rayon pool of `threads` threads.
pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
}
