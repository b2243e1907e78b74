//! A real registry for the tests: Debian's `docker-registry` (distribution
//! 2.8) on 127.0.0.1, with a temporary config and storage, killed on drop.

use std::fmt::Write as _;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const BINARY: &str = "/usr/bin/docker-registry";

/// The test user of registries started with [`Server::with_basic_auth`].
pub const USER: &str = "tester";
pub const PASSWORD: &str = "s3cret";
/// bcrypt of [`PASSWORD`] (cost 4), as `htpasswd -B` writes it.
const HTPASSWD: &str = "tester:$2b$04$G6Vper3XkYLPueeIlclBb.munmW9iIyDye5jOo9zJ3JwJI6AhghVm\n";

/// Whether a tool the test needs is there; when it is not, the test skips
/// loudly, or fails when `LAYERSTORE_REQUIRE_PRIVILEGED=1` (CI) is set.
pub fn require_tool(path: &str, what: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    assert!(
        !crate::common::strict(),
        "{what} needs {path} (apt-get install docker-registry skopeo umoci), and LAYERSTORE_REQUIRE_PRIVILEGED=1 is set"
    );
    eprintln!("SKIPPED: {what} needs {path}, which is not installed");
    false
}

pub struct Server {
    child: Child,
    pub host: String,
    pub storage: PathBuf,
    access_log: PathBuf,
    error_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// An open registry (anonymous push and pull), or `None` (skipped).
    pub fn start(what: &str) -> Option<Self> {
        Self::start_with(what, false, "")
    }

    /// A registry that wants [`USER`] and [`PASSWORD`] (htpasswd, basic).
    pub fn with_basic_auth(what: &str) -> Option<Self> {
        Self::start_with(what, true, "")
    }

    /// A registry whose config gets `auth` (an `auth:` YAML section).
    pub fn start_with_auth(what: &str, auth: &str) -> Option<Self> {
        Self::start_with(what, false, auth)
    }

    fn start_with(what: &str, basic: bool, auth: &str) -> Option<Self> {
        if !require_tool(BINARY, what) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        config.push_str(auth);
        if basic {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, HTPASSWD).unwrap();
            let _ = write!(
                config,
                "auth:\n  htpasswd:\n    realm: layerstore-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        // The access log (one line per request, on stdout): what clients
        // really asked for, counted by `blob_gets`.
        let access_log = dir.path().join("access.log");
        // Its own log into a file too: a pipe nobody drains would fill up
        // (every 404 is logged) and stall the registry.
        let error_log = dir.path().join("error.log");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdout(std::fs::File::create(&access_log).unwrap())
            .stderr(std::fs::File::create(&error_log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            host: format!("127.0.0.1:{port}"),
            storage,
            access_log,
            error_log,
            _dir: dir,
        };
        server.wait_ready();
        Some(server)
    }

    /// Waits until `/v2/` answers (200, or 401 when auth is on).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let err = std::fs::read_to_string(&self.error_log).unwrap_or_default();
                panic!("docker-registry exited ({status}): {err}");
            }
            if let Ok(mut conn) = TcpStream::connect(&self.host) {
                use std::io::Write;
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.host);
                if conn.write_all(req.as_bytes()).is_ok() {
                    let mut reply = String::new();
                    let _ = conn.read_to_string(&mut reply);
                    if reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.0 401") {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {}",
                self.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The digests of the blobs the registry has served whole (`GET
    /// /v2/<repo>/blobs/<digest>` answered 200), in order, from its access log.
    pub fn blob_gets(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.access_log).unwrap();
        log.lines()
            .filter_map(|line| {
                let request = line.split('"').nth(1)?;
                let status = line.split('"').nth(2)?.split_whitespace().next()?;
                let path = request.strip_prefix("GET ")?.split(' ').next()?;
                let (_, digest) = path.split_once("/blobs/")?;
                (status == "200").then(|| digest.to_owned())
            })
            .collect()
    }

    /// The blob files the registry stores (its own view, not ours).
    pub fn stored_blobs(&self) -> Vec<String> {
        let dir = self.storage.join("docker/registry/v2/blobs/sha256");
        let mut out = Vec::new();
        let Ok(prefixes) = std::fs::read_dir(&dir) else {
            return out;
        };
        for prefix in prefixes {
            for blob in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
                out.push(format!(
                    "sha256:{}",
                    blob.unwrap().file_name().to_string_lossy()
                ));
            }
        }
        out.sort();
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
