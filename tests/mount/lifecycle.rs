//! Lifecycle: bad input, crash recovery, gc.
