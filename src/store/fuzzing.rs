//! The fuzz entry points of the store's on-disk formats (re-exported by
//! `crate::fuzzing`, feature `fuzzing`), here so that the readers they
//! drive stay private to the store.

use super::{config::Config, frame, index::Index, pack};

/// Parses a store `config` file.
///
/// # Panics
/// When a config that parses does not render back to the same config: what the fuzzer looks for.
#[must_use]
pub fn config(bytes: &[u8]) -> bool {
    let Ok(config) = Config::parse(bytes) else {
        return false;
    };
    // What parses renders back to something that parses the same.
    assert_eq!(Config::parse(config.render().as_bytes()).ok(), Some(config));
    true
}

/// Opens a pack index, looks up and checks every record, verifies it.
#[must_use]
pub fn index(bytes: &[u8]) -> bool {
    let Ok(index) = Index::new(bytes) else {
        return false;
    };
    for i in 0..index.len() {
        let id = index.id_at(i);
        let _ = index.find(&id);
        if let Some(loc) = index.location_at(i) {
            let _ = loc.check(1 << 30);
        }
    }
    index.verify().is_ok()
}

/// Parses a frame header and decodes the payload that follows it.
///
/// # Panics
/// When a payload decodes to another length than its header says: what the fuzzer looks for.
#[must_use]
pub fn frame(bytes: &[u8]) -> bool {
    let Ok(header) = frame::FrameHeader::parse(bytes) else {
        return false;
    };
    let payload = bytes.get(header.encoded_len()..).unwrap_or_default();
    let payload = payload.get(..header.stored_len as usize).unwrap_or(payload);
    let Ok(raw) = frame::decode_payload(header.codec, payload, header.raw_len) else {
        return false;
    };
    assert_eq!(raw.len(), header.raw_len as usize);
    true
}

/// Walks the frames of a whole pack, as an index rebuild does.
///
/// # Panics
/// When a frame found lies outside the pack: what the fuzzer looks for.
#[must_use]
pub fn pack(bytes: &[u8]) -> bool {
    let (records, _) = pack::scan(bytes);
    for (_, loc) in &records {
        assert!(loc.check(bytes.len() as u64).is_ok());
    }
    !records.is_empty()
}
