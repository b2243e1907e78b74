//! The store's `config` file: format version, chunker parameters, compression.
//!
//! A small `key = value` text file, so that a person can read what a store is:
//!
//! ```text
//! format = layerstore
//! version = 3
//! chunker = fastcdc-v2020
//! chunk-min = 16384
//! chunk-avg = 65536
//! chunk-max = 262144
//! compression = zstd
//! level = 3
//! ```
//!
//! `version` is read first: a store written by a newer format is refused as such,
//! before anything else in the file is judged.

use std::fmt::Write as _;

/// The store format this build reads and writes. Version 3 stores a layer
/// that makes a whole tree (a commit without a parent) as the tree's id;
/// version 2 stored it entry by entry, and version 1 each tree as one
/// object. Both were development builds, and are refused by name.
pub const FORMAT_VERSION: u32 = 3;

/// The chunker's minimum, average and maximum chunk sizes. Part of the format:
/// a store chunks with the parameters it was created with.
pub const CHUNK_MIN: u32 = 16 * 1024;
/// See [`CHUNK_MIN`].
pub const CHUNK_AVG: u32 = 64 * 1024;
/// See [`CHUNK_MIN`].
pub const CHUNK_MAX: u32 = 256 * 1024;

/// The longest config file accepted; a config is a few hundred bytes.
const MAX_CONFIG_LEN: usize = 64 * 1024;

/// Options for [`Store::create`](crate::Store::create).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreOptions {
    /// The zstd level for new frames, 1 to 22 (default 3). Negative levels
    /// (zstd's fast modes, -1 to -7) are accepted too.
    pub zstd_level: i32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { zstd_level: 3 }
    }
}

impl StoreOptions {
    /// Compresses new frames at this zstd level.
    #[must_use]
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }
}

/// The parsed config of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The format version (always [`FORMAT_VERSION`] once parsed).
    pub version: u32,
    /// Chunker minimum size.
    pub chunk_min: u32,
    /// Chunker average size.
    pub chunk_avg: u32,
    /// Chunker maximum size.
    pub chunk_max: u32,
    /// zstd level for new frames.
    pub zstd_level: i32,
}

/// Why a config was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `version` names a format this build does not read.
    UnsupportedVersion(u32),
    /// Anything else: the text says what.
    Malformed(String),
}

impl Config {
    /// The config of a new store.
    ///
    /// # Errors
    /// A message if the options are out of range.
    pub fn new(options: &StoreOptions) -> Result<Self, String> {
        let config = Self {
            version: FORMAT_VERSION,
            chunk_min: CHUNK_MIN,
            chunk_avg: CHUNK_AVG,
            chunk_max: CHUNK_MAX,
            zstd_level: options.zstd_level,
        };
        config.check_level()?;
        Ok(config)
    }

    fn check_level(&self) -> Result<(), String> {
        if (-7..=22).contains(&self.zstd_level) && self.zstd_level != 0 {
            Ok(())
        } else {
            Err(format!(
                "zstd level {} is outside -7..=22 (0 is not a level)",
                self.zstd_level
            ))
        }
    }

    /// The file's text.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "format = layerstore\nversion = {}\nchunker = fastcdc-v2020\nchunk-min = {}\nchunk-avg = {}\nchunk-max = {}\ncompression = zstd\nlevel = {}\n",
            self.version, self.chunk_min, self.chunk_avg, self.chunk_max, self.zstd_level
        );
        out
    }

    /// Parses a config file's bytes. Never panics, whatever the input.
    ///
    /// # Errors
    /// [`ConfigError::UnsupportedVersion`] for a version other than
    /// [`FORMAT_VERSION`]; [`ConfigError::Malformed`] for anything else wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let bad = |s: String| ConfigError::Malformed(s);
        if bytes.len() > MAX_CONFIG_LEN {
            return Err(bad(format!(
                "{} bytes is too long for a config",
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("line {}: expected 'key = value'", number + 1)))?;
            let (key, value) = (key.trim(), value.trim());
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(bad(format!("line {}: '{key}' given twice", number + 1)));
            }
            pairs.push((key, value));
        }
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or_else(|| bad(format!("missing '{key}'")))
        };
        let number = |key: &str| -> Result<i64, ConfigError> {
            let v = get(key)?;
            v.parse::<i64>()
                .map_err(|_| bad(format!("'{key}' is not a number: '{v}'")))
        };
        if get("format")? != "layerstore" {
            return Err(bad("'format' is not 'layerstore'".into()));
        }
        let version = number("version")?;
        if version != i64::from(FORMAT_VERSION) {
            return Err(ConfigError::UnsupportedVersion(
                u32::try_from(version).unwrap_or(u32::MAX),
            ));
        }
        for key in pairs.iter().map(|(k, _)| *k) {
            if !matches!(
                key,
                "format"
                    | "version"
                    | "chunker"
                    | "chunk-min"
                    | "chunk-avg"
                    | "chunk-max"
                    | "compression"
                    | "level"
            ) {
                return Err(bad(format!("unknown key '{key}'")));
            }
        }
        if get("chunker")? != "fastcdc-v2020" {
            return Err(bad(format!("unknown chunker '{}'", get("chunker")?)));
        }
        if get("compression")? != "zstd" {
            return Err(bad(format!(
                "unknown compression '{}'",
                get("compression")?
            )));
        }
        let sizes = (
            number("chunk-min")?,
            number("chunk-avg")?,
            number("chunk-max")?,
        );
        if sizes
            != (
                i64::from(CHUNK_MIN),
                i64::from(CHUNK_AVG),
                i64::from(CHUNK_MAX),
            )
        {
            return Err(bad(format!(
                "chunk sizes {}/{}/{} are not the supported {CHUNK_MIN}/{CHUNK_AVG}/{CHUNK_MAX}",
                sizes.0, sizes.1, sizes.2
            )));
        }
        let level = number("level")?;
        let config = Self {
            version: FORMAT_VERSION,
            chunk_min: CHUNK_MIN,
            chunk_avg: CHUNK_AVG,
            chunk_max: CHUNK_MAX,
            zstd_level: i32::try_from(level)
                .map_err(|_| bad(format!("level {level} is out of range")))?,
        };
        config.check_level().map_err(bad)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_parse_round_trip() {
        let config = Config::new(&StoreOptions::default().zstd_level(7)).unwrap();
        assert_eq!(Config::parse(config.render().as_bytes()).unwrap(), config);
    }

    #[test]
    fn newer_version_is_named() {
        let text = Config::new(&StoreOptions::default())
            .unwrap()
            .render()
            .replace("version = 3", "version = 9");
        assert_eq!(
            Config::parse(text.as_bytes()),
            Err(ConfigError::UnsupportedVersion(9))
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let good = Config::new(&StoreOptions::default()).unwrap().render();
        let cases = [
            String::new(),
            "\u{0}\u{ff}".into(),
            good.replace("chunk-avg = 65536", "chunk-avg = 65537"),
            good.replace("zstd", "lz4"),
            good.replace("level = 3", "level = 99"),
            good.replace("level = 3", "level = x"),
            format!("{good}extra = 1\n"),
            format!("{good}level = 4\n"),
            good.replace("version = 3\n", ""),
        ];
        for case in cases {
            assert!(
                matches!(
                    Config::parse(case.as_bytes()),
                    Err(ConfigError::Malformed(_))
                ),
                "accepted: {case:?}"
            );
        }
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(Config::new(&StoreOptions::default().zstd_level(0)).is_err());
        assert!(Config::new(&StoreOptions::default().zstd_level(23)).is_err());
    }
}
