//! The `memory` backend: an in-process view with an in-memory upper layer.

use super::{MountBackend, Usage, ViewSpec};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::tree::Layer;

/// Views held in this process, with their changes in memory (landing next).
#[derive(Debug, Default)]
pub struct MemoryBackend {}

impl MemoryBackend {
    /// A backend with no views.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

fn todo(view: &ViewSpec<'_>) -> Error {
    Error::Container {
        name: view.name.to_owned(),
        reason: "the memory backend is not implemented yet".to_owned(),
    }
}

impl MountBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn needs_target(&self) -> bool {
        false
    }
    fn mount(&self, _: &Store, view: &ViewSpec<'_>) -> Result<()> {
        Err(todo(view))
    }
    fn unmount(&self, _: &Store, _: &ViewSpec<'_>) -> Result<()> {
        Ok(())
    }
    fn is_mounted(&self, _: &ViewSpec<'_>) -> Result<bool> {
        Ok(false)
    }
    fn changes(&self, _: &Store, view: &ViewSpec<'_>) -> Result<Layer> {
        Err(todo(view))
    }
    fn usage(&self, _: &Store, view: &ViewSpec<'_>) -> Result<Usage> {
        Err(todo(view))
    }
    fn remove(&self, _: &Store, _: &ViewSpec<'_>) -> Result<()> {
        Ok(())
    }
}
