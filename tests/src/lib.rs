//! Test support for the cross-crate hostile-peer tests.
