//! Test support for the cross-crate hostile-peer tests.
//!
//! - [`model`]: a reference model of a ring and its endpoints, and runners
//!   that play one [`Op`] sequence on the real endpoints (over any ring
//!   memory) and on the model. The property tests and the `ops` fuzz target
//!   use it.

pub mod model;

pub use model::{
    real_matches_model, ring_images_agree, run_model, run_real, Op, Outcome, ReadKind, ReadPacket, Trace, WriteKind,
    MODEL_DATA_LEN,
};

#[cfg(loom)]
pub mod loom_mem;

/// The examples in the workspace README, compiled and run as doctests here:
/// the README is outside both published packages, so their doctests cannot
/// include it.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadmeExamples;
