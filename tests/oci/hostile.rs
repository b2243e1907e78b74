//! Hostile layer tars.
