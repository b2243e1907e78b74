//! An image's history as `docker history` shows it: each step that made
//! it, with the layer it made (if any) and that layer's size.

use crate::error::Result;
use crate::id::{ImageId, LayerId};
use crate::store::Store;
use crate::tree::image::History;

/// One step of an image's making.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryStep {
    /// The step's record.
    pub history: History,
    /// The layer it made; `None` for a step that made none (`ENV`, say).
    pub layer: Option<LayerId>,
    /// The bytes of the files its layer adds or replaces
    /// ([`Layer::content_size`](crate::Layer::content_size)); 0 without a
    /// layer.
    pub size: u64,
}

/// History
impl Store {
    /// The steps that made image `id`, oldest first, each with its layer
    /// and the layer's size. Each layer is decoded once.
    ///
    /// # Errors
    /// As [`Store::image`] and [`Store::layer`].
    pub fn history(&self, id: &ImageId) -> Result<Vec<HistoryStep>> {
        let image = self.image(id)?;
        let mut layers = image.layers().iter();
        image
            .history()
            .iter()
            .map(|history| {
                let layer = if history.empty_layer {
                    None
                } else {
                    layers.next().copied()
                };
                let size = match &layer {
                    Some(layer) => self.layer(layer)?.content_size(),
                    None => 0,
                };
                Ok(HistoryStep {
                    history: history.clone(),
                    layer,
                    size,
                })
            })
            .collect()
    }
}
