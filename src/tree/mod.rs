//! The tree model: entries, snapshots, layers, images.
