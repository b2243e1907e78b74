//! Bearer-token auth for real: `docker-registry` configured for token auth,
//! and a small token server on 127.0.0.1 that checks basic credentials and
//! issues RS256 JWTs signed (by `openssl`) with a throwaway certificate the
//! registry trusts: the Docker token flow end to end.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use layerstore::Error;
use layerstore::oci::{Credentials, Registry, RegistryOptions};

use crate::server::{PASSWORD, Server, USER, require_tool};
use crate::sha256;

const SERVICE: &str = "layerstore-registry";
const ISSUER: &str = "layerstore-test-issuer";

fn b64(bytes: &[u8], url: bool) -> String {
    let table: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..=group.len() {
            out.push(table[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"=".repeat(3 - group.len()));
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A key and self-signed certificate made by openssl.
struct Keys {
    key: std::path::PathBuf,
    cert_der: Vec<u8>,
}

fn make_keys(dir: &Path) -> Keys {
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    crate::layout::run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=layerstore test token issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(der.status.success());
    Keys {
        key,
        cert_der: der.stdout,
    }
}

/// A JWT granting `actions` on repository `repo`.
fn mint(keys: &Keys, repo: &str, actions: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header =
        serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [b64(&keys.cert_der, false)] });
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
        "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("{now}-{repo}"),
        "access": [{ "type": "repository", "name": repo, "actions": actions }],
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes(), true),
        b64(claims.to_string().as_bytes(), true)
    );
    let mut sign = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&keys.key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sign.stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let signature = sign.wait_with_output().unwrap();
    assert!(signature.status.success());
    format!("{input}.{}", b64(&signature.stdout, true))
}

/// Serves `GET /token?service=…&scope=repository:NAME:ACTIONS` to clients
/// presenting [`USER`]:[`PASSWORD`]; counts the tokens issued.
fn token_server(keys: Arc<Keys>, issued: Arc<AtomicU64>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let expected = format!(
        "Basic {}",
        b64(format!("{USER}:{PASSWORD}").as_bytes(), false)
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap_or(0);
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    authorized = value.trim() == expected;
                }
            }
            let target = request.split(' ').nth(1).unwrap_or("");
            let scope = target
                .split_once('?')
                .map_or("", |(_, q)| q)
                .split('&')
                .find_map(|kv| kv.strip_prefix("scope="))
                .map(percent_decode);
            let reply = match (authorized, scope) {
                (true, Some(scope)) => {
                    let mut parts = scope.splitn(3, ':');
                    let (_, repo, actions) = (
                        parts.next(),
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                    );
                    let actions: Vec<&str> = actions.split(',').collect();
                    let token = mint(&keys, repo, &actions);
                    issued.fetch_add(1, Ordering::SeqCst);
                    let body = serde_json::json!({ "token": token, "expires_in": 600 }).to_string();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
                _ => "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned(),
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    port
}

#[test]
fn bearer_tokens_from_a_token_server_and_given_directly() {
    if !require_tool("/usr/bin/openssl", "bearer auth") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(make_keys(dir.path()));
    let issued = Arc::new(AtomicU64::new(0));
    let port = token_server(Arc::clone(&keys), Arc::clone(&issued));
    let cert_pem = dir.path().join("cert.pem");
    let auth = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        cert_pem.display()
    );
    let Some(server) = Server::start_with_auth("bearer auth", &auth) else {
        return;
    };
    let open = |credentials| {
        Registry::new(
            &server.host,
            &RegistryOptions::default()
                .insecure(true)
                .credentials(credentials),
        )
        .unwrap()
    };
    let blob = b"token-protected bytes".to_vec();
    let digest = sha256(&blob);

    // The token flow: basic credentials exchanged for a bearer token.
    let reg = open(Credentials::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    });
    assert!(!reg.has_blob("demo/app", &digest).unwrap());
    reg.push_blob(
        "demo/app",
        &digest,
        blob.len() as u64,
        std::io::Cursor::new(blob.clone()),
    )
    .unwrap();
    let mut back = Vec::new();
    reg.pull_blob("demo/app", &digest, &mut back).unwrap();
    assert_eq!(back, blob);
    assert!(issued.load(Ordering::SeqCst) >= 2, "no tokens were issued");

    // Wrong password: the token server refuses, and so does the registry.
    let wrong = open(Credentials::Basic {
        username: USER.into(),
        password: "nope".into(),
    });
    let err = wrong.has_blob("demo/app", &digest).unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    // Anonymous: the registry refuses.
    assert!(
        open(Credentials::Anonymous)
            .has_blob("demo/app", &digest)
            .is_err()
    );

    // A bearer token obtained elsewhere is sent as it is; it is good for
    // the repository it names only.
    let before = issued.load(Ordering::SeqCst);
    let token = mint(&keys, "demo/app", &["pull"]);
    let bearer = open(Credentials::Bearer { token });
    assert!(bearer.has_blob("demo/app", &digest).unwrap());
    assert!(bearer.has_blob("demo/other", &digest).is_err());
    assert_eq!(
        issued.load(Ordering::SeqCst),
        before,
        "the token server was asked"
    );

    cli_credentials_from_the_environment(&server, &keys, &issued, dir.path());
}

/// The CLI takes its credentials from the environment: a token as it is,
/// else a user and password (for the token flow), else none.
fn cli_credentials_from_the_environment(
    server: &Server,
    keys: &Keys,
    issued: &AtomicU64,
    dir: &Path,
) {
    let store = dir.join("store");
    let tree = dir.join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(
        tree.join("f"),
        b"pushed with credentials from the environment",
    )
    .unwrap();
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_layerstore"));
        cmd.arg("--store").arg(&store).args(args);
        for var in [
            "LAYERSTORE_REGISTRY_USER",
            "LAYERSTORE_REGISTRY_PASSWORD",
            "LAYERSTORE_REGISTRY_TOKEN",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied()).output().unwrap()
    };
    assert!(cli(&["init"], &[]).status.success());
    let tree_arg = tree.to_str().unwrap();
    assert!(
        cli(&["commit", tree_arg, "--tag", "app"], &[])
            .status
            .success()
    );
    let push = |repo: &str, env: &[(&str, &str)]| {
        cli(
            &[
                "push",
                "app",
                &format!("{}/{repo}:v1", server.host),
                "--insecure",
            ],
            env,
        )
    };
    let anonymous = push("demo/cli", &[]);
    assert!(!anonymous.status.success(), "pushed without credentials");
    let basic = push(
        "demo/cli",
        &[
            ("LAYERSTORE_REGISTRY_USER", USER),
            ("LAYERSTORE_REGISTRY_PASSWORD", PASSWORD),
        ],
    );
    assert!(
        basic.status.success(),
        "{}",
        String::from_utf8_lossy(&basic.stderr)
    );
    let wrong = push(
        "demo/cli",
        &[
            ("LAYERSTORE_REGISTRY_USER", USER),
            ("LAYERSTORE_REGISTRY_PASSWORD", "nope"),
        ],
    );
    assert!(!wrong.status.success(), "pushed with a wrong password");
    let token = mint(keys, "demo/cli-token", &["pull", "push"]);
    let before = issued.load(Ordering::SeqCst);
    let bearer = push("demo/cli-token", &[("LAYERSTORE_REGISTRY_TOKEN", &token)]);
    assert!(
        bearer.status.success(),
        "{}",
        String::from_utf8_lossy(&bearer.stderr)
    );
    assert_eq!(
        issued.load(Ordering::SeqCst),
        before,
        "the token server was asked"
    );
    // The token wins over a user and password, and is good for its repository only.
    let elsewhere = push(
        "demo/cli",
        &[
            ("LAYERSTORE_REGISTRY_TOKEN", &token),
            ("LAYERSTORE_REGISTRY_USER", USER),
            ("LAYERSTORE_REGISTRY_PASSWORD", PASSWORD),
        ],
    );
    assert!(!elsewhere.status.success(), "the token was not used");
}
