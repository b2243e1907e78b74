//! The content-addressed chunk store.

pub(crate) mod chunk_list;
