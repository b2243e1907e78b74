//! Images: an ordered stack of layers, bottom first, with a config and history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{ImageId, LayerId, SnapshotId};
use crate::tree::codec::{self, ObjectKind};
use crate::tree::entry::Timestamp;

/// How to run a container of the image: what OCI calls the image config's
/// `config` object, plus who made it and when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Environment, `KEY=value` each.
    pub env: Vec<String>,
    /// Default command (arguments to the entrypoint, if there is one).
    pub cmd: Vec<String>,
    /// Entrypoint.
    pub entrypoint: Vec<String>,
    /// Working directory of the process (empty: `/`).
    pub workdir: String,
    /// User (name or uid, optionally `:group`); empty: root.
    pub user: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// When the image was made.
    pub created: Option<Timestamp>,
    /// Who made it.
    pub author: String,
}

/// One step of the image's making.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct History {
    /// The step (a build instruction, or `layerstore commit DIR`).
    pub created_by: String,
    /// A free comment (a commit message).
    pub comment: String,
    /// When the step ran.
    pub created: Option<Timestamp>,
    /// Whether the step made no layer (an `ENV` instruction, say).
    pub empty_layer: bool,
}

/// An image: layers bottom first, the id of the tree they flatten to, a config
/// and one history record per step (steps that made a layer correspond, in
/// order, to the layers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Image {
    layers: Vec<LayerId>,
    rootfs: SnapshotId,
    config: ImageConfig,
    history: Vec<History>,
}

impl Image {
    /// An image of `layers` (bottom first) whose flattened tree has id `rootfs`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the history's records that made a layer do not
    /// number as many as the layers.
    pub fn new(
        layers: Vec<LayerId>,
        rootfs: SnapshotId,
        config: ImageConfig,
        history: Vec<History>,
    ) -> Result<Self> {
        let image = Self {
            layers,
            rootfs,
            config,
            history,
        };
        image.check()?;
        Ok(image)
    }

    fn check(&self) -> Result<()> {
        let steps = self.history.iter().filter(|h| !h.empty_layer).count();
        if steps == self.layers.len() {
            Ok(())
        } else {
            Err(Error::Malformed {
                what: "image",
                reason: format!(
                    "{} layers but {steps} history records that made a layer",
                    self.layers.len()
                ),
            })
        }
    }

    /// The layers, bottom first.
    #[must_use]
    pub fn layers(&self) -> &[LayerId] {
        &self.layers
    }

    /// The id of the tree the layers flatten to.
    #[must_use]
    pub fn rootfs(&self) -> SnapshotId {
        self.rootfs
    }

    /// How to run it.
    #[must_use]
    pub fn config(&self) -> &ImageConfig {
        &self.config
    }

    /// The steps that made it.
    #[must_use]
    pub fn history(&self) -> &[History] {
        &self.history
    }

    /// The canonical encoding.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(ObjectKind::Image, self)
    }

    /// Decodes and checks an encoded image. Never panics.
    ///
    /// # Errors
    /// [`Error::Malformed`] for anything but a valid encoded image.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let image: Self = codec::decode(ObjectKind::Image, bytes)?;
        image.check()?;
        Ok(image)
    }

    /// BLAKE3 of the canonical encoding.
    #[must_use]
    pub fn id(&self) -> ImageId {
        ImageId::of(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(n: usize) -> Vec<History> {
        (0..n)
            .map(|i| History {
                created_by: format!("step {i}"),
                ..History::default()
            })
            .collect()
    }

    #[test]
    fn encode_decode_and_id() {
        let layers = vec![LayerId::of(b"a"), LayerId::of(b"b")];
        let mut h = history(2);
        h.insert(
            1,
            History {
                created_by: "ENV A=1".into(),
                empty_layer: true,
                ..History::default()
            },
        );
        let config = ImageConfig {
            env: vec!["A=1".into()],
            cmd: vec!["/bin/sh".into()],
            ..ImageConfig::default()
        };
        let image = Image::new(layers, SnapshotId::of(b"t"), config, h).unwrap();
        let decoded = Image::decode(&image.encode()).unwrap();
        assert_eq!(decoded, image);
        assert_eq!(decoded.id(), image.id());
    }

    #[test]
    fn history_must_match_layers() {
        let err = Image::new(
            vec![LayerId::of(b"a")],
            SnapshotId::of(b"t"),
            ImageConfig::default(),
            history(2),
        );
        assert!(matches!(err, Err(Error::Malformed { .. })));
        assert!(Image::decode(b"LSOB\x03\x00\x01\x00\xff").is_err());
    }
}
