//! The `copy` backend: the merged tree materialised in the target.

use super::{MountBackend, Usage, ViewSpec};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::tree::Layer;

/// Views held in this process, with their changes in memory (landing next).
#[derive(Debug, Default)]
pub struct CopyBackend {}

impl CopyBackend {
    /// A backend with no views.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

fn todo(view: &ViewSpec<'_>) -> Error {
    Error::Container {
        name: view.name.to_owned(),
        reason: "the copy backend is not implemented yet".to_owned(),
    }
}

impl MountBackend for CopyBackend {
    fn name(&self) -> &'static str {
        "copy"
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
