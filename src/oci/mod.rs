//! Exchange with the container world: OCI distribution registries (feature
//! `registry`).

#[cfg(feature = "registry")]
#[allow(
    dead_code,
    reason = "used by image push and pull, which wait for the OCI layer export"
)]
mod cache;
#[cfg(feature = "registry")]
mod registry;
#[cfg(feature = "registry")]
mod transfer;

#[cfg(feature = "registry")]
pub use self::registry::{Credentials, Registry, RegistryOptions, RegistryRef};
#[cfg(feature = "registry")]
pub use self::transfer::{PullReport, PushOptions, PushReport};
