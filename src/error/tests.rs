//! Tests of the error type: the kind of every variant, and the kinds an
//! error wrapping another one takes.

use super::*;

fn io_err() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

/// One of each variant, with the kind it must have.
#[expect(
    clippy::too_many_lines,
    reason = "one line per variant, as rustfmt lays it out"
)]
fn every_variant() -> Vec<(Error, ErrorKind)> {
    let path = || PathBuf::from("/s");
    vec![
        (Error::io("open", path(), io_err()), ErrorKind::Io),
        (Error::NotAStore { path: path() }, ErrorKind::NotFound),
        (
            Error::UnsupportedVersion {
                path: path(),
                found: 9,
                supported: 1,
            },
            ErrorKind::Unsupported,
        ),
        (
            Error::BadConfig {
                path: path(),
                reason: "x".into(),
            },
            ErrorKind::Corrupt,
        ),
        (Error::corrupt(path(), 7, "x"), ErrorKind::Corrupt),
        (
            Error::ChunkNotFound {
                id: ChunkId::of(b"x"),
                store: path(),
            },
            ErrorKind::NotFound,
        ),
        (
            Error::Locked {
                path: path(),
                reason: "shared",
            },
            ErrorKind::Locked,
        ),
        (
            Error::BadId {
                input: "x".into(),
                reason: "x",
            },
            ErrorKind::InvalidInput,
        ),
        (
            Error::InvalidPath {
                path: "..".into(),
                reason: "x",
            },
            ErrorKind::InvalidInput,
        ),
        (
            Error::SymlinkInPath {
                root: path(),
                path: "a/b".into(),
                component: "a".into(),
            },
            ErrorKind::InvalidInput,
        ),
        (
            Error::Xattr {
                op: "get",
                path: path(),
                name: "user.x".into(),
                source: io_err(),
            },
            ErrorKind::Io,
        ),
        (
            Error::ObjectNotFound {
                kind: "layer",
                id: "x".into(),
                store: path(),
            },
            ErrorKind::NotFound,
        ),
        (
            Error::ImageNotFound {
                reference: "x".into(),
                reason: "x".into(),
            },
            ErrorKind::NotFound,
        ),
        (Error::InvalidArgument("x".into()), ErrorKind::InvalidInput),
        (
            Error::InvalidTree {
                path: ".".into(),
                reason: "x".into(),
            },
            ErrorKind::InvalidInput,
        ),
        (
            Error::DestinationNotEmpty { path: path() },
            ErrorKind::AlreadyExists,
        ),
        (
            Error::Checkout {
                path: path(),
                source: Box::new(Error::corrupt(path(), 0, "x")),
            },
            ErrorKind::Corrupt,
        ),
        (
            Error::NeedsPrivilege {
                path: path(),
                what: "character device",
            },
            ErrorKind::PermissionDenied,
        ),
        (
            Error::Oci {
                what: "x".into(),
                reason: "x".into(),
            },
            ErrorKind::InvalidInput,
        ),
        (
            Error::Malformed {
                what: "layer",
                reason: "x".into(),
            },
            ErrorKind::Corrupt,
        ),
        (
            Error::Container {
                name: "x".into(),
                reason: "x".into(),
            },
            ErrorKind::InvalidInput,
        ),
        (
            Error::ContainerNotFound { name: "x".into() },
            ErrorKind::NotFound,
        ),
        (
            Error::ContainerExists { name: "x".into() },
            ErrorKind::AlreadyExists,
        ),
        (
            Error::Build {
                file: "Containerfile".into(),
                line: 1,
                reason: "x".into(),
            },
            ErrorKind::InvalidInput,
        ),
        (
            Error::Registry {
                registry: "x".into(),
                what: "x".into(),
            },
            ErrorKind::Remote,
        ),
        (
            Error::TooLarge {
                what: "metadata object",
                size: 2,
                max: 1,
            },
            ErrorKind::TooLarge,
        ),
    ]
}

#[test]
fn each_variant_has_its_kind() {
    for (err, kind) in every_variant() {
        assert_eq!(err.kind(), kind, "{err:?}");
    }
}

#[test]
fn checkout_takes_the_kind_of_what_it_wraps() {
    for (inner, kind) in every_variant() {
        let err = Error::Checkout {
            path: PathBuf::from("/d/f"),
            source: Box::new(inner),
        };
        assert_eq!(err.kind(), kind);
    }
}

#[test]
fn too_large_says_how_large() {
    let err = Error::TooLarge {
        what: "metadata object",
        size: 70_000_000,
        max: 67_108_864,
    };
    let msg = err.to_string();
    assert!(
        msg.contains("70000000") && msg.contains("67108864"),
        "{msg}"
    );
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::FileTooLarge);
}

#[test]
fn kinds_display_as_phrases() {
    assert_eq!(ErrorKind::NotFound.to_string(), "not found");
    assert_eq!(ErrorKind::Corrupt.to_string(), "corrupt data");
}
