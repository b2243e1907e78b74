//! The blocking registry client against a real registry: HEAD before upload,
//! streamed blobs with their digests checked, cross-repository mounts,
//! manifests, anonymous and basic auth, plain http only on loopback.

use layerstore::Error;
use layerstore::oci::{Credentials, Registry, RegistryOptions};

use crate::server::{self, Server};
use crate::sha256;

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn open(server: &Server, credentials: Credentials) -> Registry {
    Registry::new(
        &server.host,
        &RegistryOptions::default()
            .insecure(true)
            .credentials(credentials),
    )
    .unwrap()
}

#[test]
fn blobs_stream_up_and_down_and_mount_across_repositories() {
    let Some(server) = Server::start("blob transport") else {
        return;
    };
    let reg = open(&server, Credentials::Anonymous);
    // Larger than one upload piece, so the stream has several.
    let blob = noise((5 << 20) + 123, 7);
    let digest = sha256(&blob);
    assert!(!reg.has_blob("team/a", &digest).unwrap());
    reg.push_blob(
        "team/a",
        &digest,
        blob.len() as u64,
        std::io::Cursor::new(blob.clone()),
    )
    .unwrap();
    assert!(reg.has_blob("team/a", &digest).unwrap());
    assert_eq!(server.stored_blobs(), vec![digest.clone()]);
    let mut back = Vec::new();
    reg.pull_blob("team/a", &digest, &mut back).unwrap();
    assert!(back == blob, "the blob came back different");

    // Mount into another repository: no bytes move, the blob is there.
    assert!(!reg.has_blob("team/b", &digest).unwrap());
    assert!(reg.mount_blob("team/b", "team/a", &digest).unwrap());
    assert!(reg.has_blob("team/b", &digest).unwrap());
    // A blob the source lacks is not mounted (and that is no error).
    let other = sha256(b"nowhere");
    assert!(!reg.mount_blob("team/c", "team/a", &other).unwrap());
    assert!(!reg.has_blob("team/c", &other).unwrap());

    // A blob whose bytes do not match the digest is refused.
    let wrong = sha256(b"something else");
    let err = reg
        .push_blob("team/a", &wrong, 5, std::io::Cursor::new(b"bytes".to_vec()))
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    assert!(err.to_string().contains(&wrong), "{err}");
    assert!(!reg.has_blob("team/a", &wrong).unwrap());
    // Pulling a blob that is not there is an error naming it.
    let err = reg
        .pull_blob("team/a", &other, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    assert!(err.to_string().contains(&other), "{err}");
}

#[test]
fn manifests_round_trip_and_missing_ones_are_not_found() {
    let Some(server) = Server::start("manifests") else {
        return;
    };
    let reg = open(&server, Credentials::Anonymous);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = sha256(config);
    reg.push_blob(
        "app",
        &config_digest,
        config.len() as u64,
        std::io::Cursor::new(config.to_vec()),
    )
    .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    reg.put_manifest(
        "app",
        "v1",
        manifest.clone().into_bytes(),
        "application/vnd.oci.image.manifest.v1+json",
    )
    .unwrap();
    let (bytes, digest) = reg.manifest("app", "v1").unwrap();
    assert_eq!(bytes, manifest.as_bytes());
    assert_eq!(digest, sha256(manifest.as_bytes()));
    let (by_digest, _) = reg.manifest("app", &digest).unwrap();
    assert_eq!(by_digest, bytes);
    let err = reg.manifest("app", "v2").unwrap_err();
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err}");
    assert!(err.to_string().contains("app:v2"), "{err}");
    // A manifest naming a blob the registry lacks is refused.
    let dangling = manifest.replace(&config_digest, &sha256(b"absent"));
    let err = reg
        .put_manifest(
            "app",
            "v3",
            dangling.into_bytes(),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
}

#[test]
fn basic_auth_is_required_and_used() {
    let Some(server) = Server::with_basic_auth("basic auth") else {
        return;
    };
    let blob = b"authenticated bytes".to_vec();
    let digest = sha256(&blob);
    let anonymous = open(&server, Credentials::Anonymous);
    let err = anonymous.has_blob("secure/app", &digest).unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    let wrong = open(
        &server,
        Credentials::Basic {
            username: server::USER.into(),
            password: "wrong".into(),
        },
    );
    assert!(wrong.has_blob("secure/app", &digest).is_err());
    let err = wrong
        .push_blob(
            "secure/app",
            &digest,
            blob.len() as u64,
            std::io::Cursor::new(blob.clone()),
        )
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let right = open(
        &server,
        Credentials::Basic {
            username: server::USER.into(),
            password: server::PASSWORD.into(),
        },
    );
    assert!(!right.has_blob("secure/app", &digest).unwrap());
    right
        .push_blob(
            "secure/app",
            &digest,
            blob.len() as u64,
            std::io::Cursor::new(blob.clone()),
        )
        .unwrap();
    assert!(right.has_blob("secure/app", &digest).unwrap());
    let mut back = Vec::new();
    right.pull_blob("secure/app", &digest, &mut back).unwrap();
    assert_eq!(back, blob);
}

#[test]
fn unreachable_registry_is_an_error_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let reg = Registry::new(&host, &RegistryOptions::default().insecure(true)).unwrap();
    let err = reg.has_blob("app", &sha256(b"x")).unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    assert!(err.to_string().contains(&host), "{err}");
}
