//! Batch identities: what ties a payload range to the batch that handed it
//! out, so that a range kept past its batch cannot read or write the bytes
//! that other packets occupy by then.

use core::sync::atomic::{AtomicU32, Ordering};

/// Bits of a batch identity that count an endpoint's batches; the bits above
/// them hold the endpoint's number.
const SEQUENCE_BITS: u32 = 44;

/// The identity of one batch: a number from its endpoint's sequence, which
/// starts at the endpoint's number (from a process-wide counter, modulo
/// 2^20) times 2^44.
///
/// Two batches share an identity only after an endpoint has started 2^44
/// batches, running into the next endpoint's numbers (2.4 days at 80 M
/// batches a second), or between endpoints opened 2^20 apart, whose numbers
/// repeat. This guards against a range kept by mistake and is not a
/// security boundary: the ranges are this process's own, and every access
/// through one still checks it against the data area, so a collision can
/// only let a stale range read or write bytes of the same data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchId(u64);

impl BatchId {
    /// The identity of no batch, which every batch refuses.
    pub(crate) const NONE: BatchId = BatchId(0);
}

/// The source of one endpoint's batch identities.
#[derive(Debug)]
pub(crate) struct BatchIds {
    last: u64,
}

impl BatchIds {
    /// Identities for a newly opened endpoint.
    pub(crate) fn new() -> Self {
        static ENDPOINTS: AtomicU32 = AtomicU32::new(0);
        let endpoint = ENDPOINTS.fetch_add(1, Ordering::Relaxed) % (1 << (u64::BITS - SEQUENCE_BITS));
        Self { last: u64::from(endpoint) << SEQUENCE_BITS }
    }

    /// The identity of the next batch. Never [`BatchId::NONE`], short of
    /// 2^64 batches.
    #[inline]
    pub(crate) fn next(&mut self) -> BatchId {
        self.last = self.last.wrapping_add(1);
        BatchId(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_differ_between_batches_and_endpoints_and_are_never_none() {
        let mut first = BatchIds::new();
        let mut second = BatchIds::new();
        let ids = [first.next(), first.next(), second.next(), second.next()];
        for (i, a) in ids.iter().enumerate() {
            assert_ne!(*a, BatchId::NONE);
            assert!(ids[i + 1..].iter().all(|b| a != b), "{ids:?}");
        }
    }
}
