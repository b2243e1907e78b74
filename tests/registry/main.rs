//! Push and pull against a real registry (Debian's `docker-registry` on
//! 127.0.0.1): the transport (blobs, mounts, manifests, auth) and whole images.

mod cli;
#[path = "../common/mod.rs"]
mod common;
mod image;
mod layout;
mod podman;
mod proxy;
mod seekable;
mod server;
mod token;
mod transport;

use sha2::Digest as _;

/// `sha256:<hex>` of `bytes`.
#[must_use]
pub fn sha256(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("sha256:");
    for b in sha2::Sha256::digest(bytes) {
        let _ = write!(out, "{b:02x}");
    }
    out
}
