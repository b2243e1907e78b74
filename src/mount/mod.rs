//! Copy-on-write views of images (placeholder until the `mount` branch lands).

pub(crate) mod overlay;
