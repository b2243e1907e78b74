//! Tests of the tar format details: PAX times both ways, member paths
//! confined.

use super::read::member_path;
use super::*;
use crate::tree::TreePath;

#[test]
fn pax_times_round_trip() {
    for t in [
        Timestamp::new(0, 0),
        Timestamp::new(1_700_000_000, 123_456_789),
        Timestamp::new(-2, 750_000_000),
        Timestamp::new(-5, 0),
    ] {
        assert_eq!(
            parse_pax_time(format_pax_time(t).as_bytes()),
            Some(t),
            "{t:?}"
        );
    }
    assert_eq!(
        parse_pax_time(b"12.5"),
        Some(Timestamp::new(12, 500_000_000))
    );
    assert_eq!(parse_pax_time(b"x"), None);
    assert_eq!(parse_pax_time(b"1.2.3"), None);
}

#[test]
fn member_paths_are_confined() {
    assert_eq!(member_path(b"./").unwrap(), TreePath::ROOT);
    assert_eq!(
        member_path(b"./a/b/").unwrap(),
        TreePath::new("a/b").unwrap()
    );
    assert!(member_path(b"/etc/passwd").is_err());
    assert!(member_path(b"a/../../x").is_err());
    assert!(member_path(b"a//b").is_err());
}
