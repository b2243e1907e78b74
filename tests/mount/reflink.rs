//! The copy backend on XFS/Btrfs.
