//! Exchange with the container world: OCI distribution registries (feature
//! `registry`).

#[cfg(feature = "registry")]
#[allow(
    dead_code,
    reason = "layer_for and record_layer serve pull, which waits for the OCI layer import"
)]
mod cache;
#[cfg(feature = "registry")]
mod image;
#[cfg(feature = "registry")]
mod registry;
#[cfg(feature = "registry")]
mod transfer;

#[cfg(feature = "registry")]
pub use self::registry::{Credentials, Registry, RegistryOptions, RegistryRef};
#[cfg(feature = "registry")]
pub use self::transfer::{PullReport, PushOptions, PushReport};
