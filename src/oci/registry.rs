//! An OCI distribution registry, spoken to through `oci-client`.
//!
//! `oci-client` is asynchronous; [`Registry`] owns a current-thread tokio
//! runtime and blocks on it, so no future, runtime or `async` type appears in
//! this crate's API. Blobs are streamed from a reader and to a writer, never
//! held whole in memory.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::error::{Error, Result};

/// Who we are to the registry.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// No credentials (public registries, or a local one without auth).
    #[default]
    Anonymous,
    /// A user name and password: sent as HTTP basic auth where the registry
    /// asks for it, or exchanged for a bearer token where it names a token
    /// service (the Docker token flow).
    Basic {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
    /// A bearer token obtained elsewhere, sent as it is.
    Bearer {
        /// The token.
        token: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <password>)"),
            Self::Bearer { .. } => f.write_str("Bearer(<token>)"),
        }
    }
}

/// How to reach a registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// Speak plain http instead of https. Allowed only for a loopback host
    /// (`localhost`, `127.0.0.0/8`, `[::1]`): credentials and content would
    /// otherwise cross the network in the clear.
    pub insecure: bool,
    /// Who we are.
    pub credentials: Credentials,
    /// How long to wait for a connection, and for the next bytes of a
    /// response, before the request fails (default 30 s to connect, 300 s
    /// between bytes). A lazy view sets a short one, so that a read while
    /// the registry is unreachable fails soon rather than hangs.
    pub timeout: Option<std::time::Duration>,
}

impl RegistryOptions {
    /// Gives up on a connection or a response after `timeout` without
    /// progress.
    #[must_use]
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Speaks plain http (loopback hosts only, see
    /// [`insecure`](Self#structfield.insecure)).
    #[must_use]
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Authenticates with `credentials`.
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }
}

/// A registry host (`host[:port]`), ready to talk to. Every method blocks.
///
/// It moves blobs, manifests and whole layout directories, touching no
/// store; a store's images are pushed and pulled through it by
/// [`Exchange::push`](super::Exchange::push) and
/// [`Exchange::pull`](super::Exchange::pull).
pub struct Registry {
    host: String,
    runtime: tokio::runtime::Runtime,
    client: Client,
    auth: RegistryAuth,
    /// (repository, push) pairs authenticated already.
    authed: Mutex<HashSet<(String, bool)>>,
    /// A client that never authenticates, for a registry that asks no
    /// credentials of anonymous users: `oci-client` asks such a registry
    /// `GET /v2/` again before every request (it caches only tokens), one
    /// round trip per range of a partial pull.
    open_client: Client,
    /// Set once an anonymous authentication found that the registry asks
    /// for nothing.
    open: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Whether `host` (`name[:port]` or `[v6][:port]`) is a loopback address.
fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A registry, repository and tag or digest, as `host[:port]/repo[:tag]` or
/// `host[:port]/repo@sha256:…`; the tag defaults to `latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]`.
    pub host: String,
    /// The repository (`team/app`).
    pub repository: String,
    /// A tag or a `sha256:` digest.
    pub reference: String,
}

impl std::str::FromStr for RegistryRef {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "'{text}' is not REGISTRY/REPO[:TAG] or REGISTRY/REPO@DIGEST: {why}"
            ))
        };
        let (host, rest) = text
            .split_once('/')
            .ok_or_else(|| bad("no registry host"))?;
        if host.is_empty() || !(host.contains(['.', ':']) || host == "localhost") {
            return Err(bad("the part before the first '/' must be a registry host"));
        }
        let (repository, reference) = if let Some((repo, digest)) = rest.split_once('@') {
            (repo, digest.to_owned())
        } else {
            match rest.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => (repo, tag.to_owned()),
                _ => (rest, "latest".to_owned()),
            }
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !repo_ok {
            return Err(bad("bad repository name"));
        }
        let tag_ok = if let Some(hex) = reference.strip_prefix("sha256:") {
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
        } else {
            (1..=128).contains(&reference.len())
                && reference
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !reference.starts_with(['.', '-'])
        };
        if !tag_ok {
            return Err(bad("bad tag or digest"));
        }
        Ok(Self {
            host: host.to_owned(),
            repository: repository.to_owned(),
            reference,
        })
    }
}

impl std::fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        write!(
            f,
            "{}/{}{sep}{}",
            self.host, self.repository, self.reference
        )
    }
}

/// Writes an `AsyncWrite`'s bytes to a blocking writer (the runtime has one
/// thread, which may block).
struct BlockingWriter<'a>(&'a mut (dyn Write + Send));

impl tokio::io::AsyncWrite for BlockingWriter<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.0.write(buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.0.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Bytes read from a blob's reader per piece of the upload stream.
const UPLOAD_PIECE: usize = 1 << 20;

/// Connecting
impl Registry {
    /// A client of the registry at `host` (`name[:port]`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `insecure` is asked for a host that is
    /// not loopback; [`Error::Registry`] if the runtime cannot start.
    pub fn new(host: &str, options: &RegistryOptions) -> Result<Self> {
        if options.insecure && !is_loopback(host) {
            return Err(Error::InvalidArgument(format!(
                "plain http (--insecure) is allowed only for a loopback registry, not '{host}'"
            )));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Registry {
                registry: host.to_owned(),
                what: format!("cannot start the I/O runtime: {e}"),
            })?;
        let config = || ClientConfig {
            protocol: if options.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // One streamed PUT per blob, rather than a PATCH per 4 MiB.
            use_monolithic_push: true,
            // Manifest lists: layerstore images are single-platform; a list
            // is refused rather than resolved for this machine silently.
            platform_resolver: None,
            connect_timeout: Some(
                options
                    .timeout
                    .unwrap_or(std::time::Duration::from_secs(30)),
            ),
            read_timeout: Some(
                options
                    .timeout
                    .unwrap_or(std::time::Duration::from_secs(300)),
            ),
            ..ClientConfig::default()
        };
        let auth = match &options.credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer { token } => RegistryAuth::Bearer(token.clone()),
        };
        Ok(Self {
            host: host.to_owned(),
            runtime,
            client: Client::new(config()),
            open_client: Client::new(config()),
            open: std::sync::atomic::AtomicBool::new(false),
            auth,
            authed: Mutex::new(HashSet::new()),
        })
    }

    /// The registry's `host[:port]`.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    fn reference(&self, repository: &str, tag: &str) -> Reference {
        if tag.starts_with("sha256:") {
            Reference::with_digest(self.host.clone(), repository.to_owned(), tag.to_owned())
        } else {
            Reference::with_tag(self.host.clone(), repository.to_owned(), tag.to_owned())
        }
    }

    fn error(&self, repository: &str, what: impl std::fmt::Display) -> Error {
        Error::Registry {
            registry: format!("{}/{repository}", self.host),
            what: what.to_string(),
        }
    }

    /// Runs `future` to completion. `oci-client` unwraps a few values that
    /// come from the network (a token that is not a valid header value); a
    /// panic there becomes an error here rather than taking the caller down.
    fn block_on<T>(
        &self,
        repository: &str,
        future: impl Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<T> {
        let run = std::panic::AssertUnwindSafe(|| self.runtime.block_on(future));
        match std::panic::catch_unwind(run) {
            Ok(result) => result.map_err(|e| self.error(repository, describe(&e))),
            Err(_) => Err(self.error(repository, "the registry client failed on a response")),
        }
    }

    /// Authenticates for `repository` (pull, or pull and push) once.
    fn authenticate(&self, repository: &str, push: bool) -> Result<()> {
        let key = (repository.to_owned(), push);
        if self
            .authed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&key)
        {
            return Ok(());
        }
        let image = self.reference(repository, "latest");
        let ops: &[RegistryOperation] = if push {
            &[RegistryOperation::Pull, RegistryOperation::Push]
        } else {
            &[RegistryOperation::Pull]
        };
        for op in ops {
            let token = self.block_on(repository, self.client.auth(&image, &self.auth, *op))?;
            if token.is_none() && self.auth == RegistryAuth::Anonymous && !push {
                self.open.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.authed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key);
        Ok(())
    }
}

/// Whether the registry said that what was asked for does not exist.
fn is_not_found(err: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode;
    match err {
        OciDistributionError::ImageManifestNotFoundError(_)
        | OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// A readable account of an `oci-client` error.
fn describe(err: &OciDistributionError) -> String {
    match err {
        OciDistributionError::ServerError { code, message, url } => {
            format!("HTTP {code} from {url}: {}", message.trim())
        }
        OciDistributionError::RegistryError { envelope, url } => format!("{envelope} ({url})"),
        other => other.to_string(),
    }
}

/// Blobs and manifests
impl Registry {
    /// Whether `repository` holds blob `digest` (a HEAD request).
    ///
    /// # Errors
    /// [`Error::Registry`] if the registry cannot be reached or refuses.
    pub fn has_blob(&self, repository: &str, digest: &str) -> Result<bool> {
        self.authenticate(repository, false)?;
        let image = self.reference(repository, "latest");
        self.block_on(repository, self.client.blob_exists(&image, digest))
    }

    /// Asks the registry to mount blob `digest` from repository `from` into
    /// `repository` (no bytes move); whether it did. A registry that does
    /// not offer mounting, or lacks the blob in `from`, answers no.
    ///
    /// # Errors
    /// [`Error::Registry`] if the registry cannot be reached.
    pub fn mount_blob(&self, repository: &str, from: &str, digest: &str) -> Result<bool> {
        self.authenticate(repository, true)?;
        self.authenticate(from, false)?;
        let image = self.reference(repository, "latest");
        let source = self.reference(from, "latest");
        let result = self
            .runtime
            .block_on(self.client.mount_blob(&image, &source, digest));
        match result {
            Ok(()) => Ok(true),
            // 202: the registry opened an upload session instead (no mount);
            // 4xx: it refuses mounting here.
            Err(
                OciDistributionError::SpecViolationError(_)
                | OciDistributionError::ServerError { .. }
                | OciDistributionError::UnauthorizedError { .. },
            ) => Ok(false),
            Err(other) => Err(self.error(repository, describe(&other))),
        }
    }

    /// Uploads blob `digest` of `size` bytes, streamed from `reader` (one
    /// request; the registry checks the digest).
    ///
    /// # Errors
    /// [`Error::Registry`] if the upload fails or the registry refuses the
    /// digest; a read error of `reader` is reported as the registry's error
    /// naming the blob.
    pub fn push_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        reader: impl Read + Send + 'static,
    ) -> Result<()> {
        self.authenticate(repository, true)?;
        let image = self.reference(repository, "latest");
        let stream = futures_util::stream::unfold(Some(reader), |state| async move {
            let mut reader = state?;
            let mut buf = vec![0u8; UPLOAD_PIECE];
            let mut filled = 0;
            while filled < buf.len() {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let err = OciDistributionError::GenericError(Some(format!(
                            "reading the blob to upload: {e}"
                        )));
                        return Some((Err(err), None));
                    }
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            Some((Ok(bytes::Bytes::from(buf)), Some(reader)))
        });
        self.block_on(
            repository,
            self.client
                .push_blob_stream(&image, stream, digest, Some(size)),
        )
        .map_err(|e| match e {
            Error::Registry { registry, what } => Error::Registry {
                registry,
                what: format!("uploading {digest}: {what}"),
            },
            other => other,
        })?;
        Ok(())
    }

    /// Downloads blob `digest` into `out`, verifying its digest as it streams.
    ///
    /// # Errors
    /// [`Error::Registry`] if it cannot be fetched or does not match its digest
    /// (what was written to `out` must then be discarded).
    pub fn pull_blob(
        &self,
        repository: &str,
        digest: &str,
        out: &mut (dyn Write + Send),
    ) -> Result<()> {
        self.authenticate(repository, false)?;
        let image = self.reference(repository, "latest");
        self.block_on(
            repository,
            self.client.pull_blob(&image, digest, BlockingWriter(out)),
        )
        .map_err(|e| match e {
            Error::Registry { registry, what } => Error::Registry {
                registry,
                what: format!("downloading {digest}: {what}"),
            },
            other => other,
        })
    }

    /// Fetches byte ranges `(offset, length)` of blob `digest`, up to
    /// `in_flight` requests at a time, and hands each range's bytes to
    /// `each` with its index, in order. Returns false, having handed over
    /// nothing, if the registry answers a range with the whole blob (it does
    /// not serve ranges).
    ///
    /// # Errors
    /// [`Error::Registry`] naming the blob and the range if a request fails
    /// or a response is not the length asked; what `each` returns.
    pub(crate) fn blob_ranges(
        &self,
        repository: &str,
        digest: &str,
        ranges: &[(u64, u64)],
        in_flight: usize,
        each: &mut dyn FnMut(usize, Vec<u8>) -> Result<()>,
    ) -> Result<bool> {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        self.authenticate(repository, false)?;
        let image = self.reference(repository, "latest");
        let client = if self.open.load(std::sync::atomic::Ordering::Relaxed) {
            &self.open_client
        } else {
            &self.client
        };
        let fetch = |(offset, len): (u64, u64)| {
            let image = &image;
            async move {
                let what = |e: String| format!("downloading {digest} bytes {offset}+{len}: {e}");
                let response = client
                    .pull_blob_stream_partial(image, digest, offset, Some(len))
                    .await
                    .map_err(|e| what(describe(&e)))?;
                let mut stream = match response {
                    oci_client::client::BlobResponse::Partial(stream) => stream,
                    oci_client::client::BlobResponse::Full(_) => return Ok(None),
                };
                let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                while let Some(piece) = stream.try_next().await.map_err(|e| what(e.to_string()))? {
                    if bytes.len() + piece.len() > usize::try_from(len).unwrap_or(usize::MAX) {
                        return Err(what("the registry sent more than was asked".into()));
                    }
                    bytes.extend_from_slice(&piece);
                }
                if bytes.len() as u64 != len {
                    return Err(what(format!("the registry sent {} bytes", bytes.len())));
                }
                Ok(Some(bytes))
            }
        };
        let run = async {
            let mut responses = futures_util::stream::iter(ranges.iter().copied())
                .map(fetch)
                .buffered(in_flight.max(1));
            let mut index = 0;
            while let Some(response) = responses.next().await {
                match response {
                    Ok(Some(bytes)) => each(index, bytes)?,
                    Ok(None) => return Ok(false),
                    Err(what) => return Err(self.error(repository, what)),
                }
                index += 1;
            }
            Ok(true)
        };
        let run = std::panic::AssertUnwindSafe(|| self.runtime.block_on(run));
        std::panic::catch_unwind(run).unwrap_or_else(|_| {
            Err(self.error(repository, "the registry client failed on a response"))
        })
    }

    /// The manifest `reference` (a tag or digest) of `repository`: its bytes
    /// and digest. Manifest lists (indexes) are refused.
    ///
    /// # Errors
    /// [`Error::ImageNotFound`] if the registry has no such manifest;
    /// [`Error::Registry`] if it cannot be reached or refuses.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<(Vec<u8>, String)> {
        self.authenticate(repository, false)?;
        let image = self.reference(repository, reference);
        let accepted = [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ];
        let result = self
            .runtime
            .block_on(self.client.pull_manifest_raw(&image, &self.auth, &accepted));
        match result {
            Ok((bytes, digest)) => Ok((bytes.to_vec(), digest)),
            Err(err) if is_not_found(&err) => Err(Error::ImageNotFound {
                reference: format!("{}/{repository}:{reference}", self.host),
                reason: format!("the registry has no such manifest ({})", describe(&err)),
            }),
            Err(other) => Err(self.error(repository, describe(&other))),
        }
    }

    /// Stores manifest `bytes` (of `media_type`) under `tag` in `repository`.
    ///
    /// # Errors
    /// [`Error::Registry`] if the registry refuses it (a blob it names is
    /// missing, say).
    pub fn put_manifest(
        &self,
        repository: &str,
        tag: &str,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<()> {
        self.authenticate(repository, true)?;
        let image = self.reference(repository, tag);
        let content_type = media_type
            .parse()
            .map_err(|_| Error::InvalidArgument(format!("bad media type '{media_type}'")))?;
        self.block_on(
            repository,
            self.client.push_manifest_raw(&image, bytes, content_type),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r: RegistryRef = "127.0.0.1:5000/team/app:v1".parse().unwrap();
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.reference.as_str()),
            ("127.0.0.1:5000", "team/app", "v1")
        );
        let r: RegistryRef = "localhost/app".parse().unwrap();
        assert_eq!(r.reference, "latest");
        assert_eq!(r.to_string(), "localhost/app:latest");
        let digest = format!("sha256:{}", "a".repeat(64));
        let r: RegistryRef = format!("reg.example:443/a/b@{digest}").parse().unwrap();
        assert_eq!(r.reference, digest);
        assert_eq!(r.to_string(), format!("reg.example:443/a/b@{digest}"));
        for bad in [
            "app",
            "app:1",
            "team/app",
            "h.io/",
            "h.io/App",
            "h.io/a//b",
            "h.io/a:",
            "h.io/a:-x",
            "h.io/a@sha256:12",
        ] {
            assert!(bad.parse::<RegistryRef>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn insecure_only_on_loopback() {
        for host in ["127.0.0.1:5000", "localhost", "[::1]:80", "127.1.2.3"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1:5000",
            "example.com",
            "localhost.evil.com",
            "[::2]",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
        let options = RegistryOptions::default().insecure(true);
        let err = Registry::new("registry.example.com", &options).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("registry.example.com"));
        assert!(Registry::new("127.0.0.1:1", &options).is_ok());
    }
}
