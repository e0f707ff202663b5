//! Ring index arithmetic: validating an index read from the control page,
//! and the used and free bytes between two indices.

use crate::wire::PACKET_ALIGNMENT;
use crate::{CorruptError, Field};

/// Returns `value` if it is a valid index for a data area of `data_len`
/// bytes: a multiple of 8 below `data_len`.
#[inline]
pub(crate) fn check(value: u32, data_len: u32, field: Field) -> Result<u32, CorruptError> {
    if !value.is_multiple_of(PACKET_ALIGNMENT as u32) || value >= data_len {
        return Err(CorruptError::new(field, value.into()));
    }
    Ok(value)
}

/// Bytes between the read and the write index: written and not yet read.
/// Both indices must be valid.
#[inline]
pub(crate) fn used(data_len: u32, write: u32, read: u32) -> u32 {
    if write >= read {
        write - read
    } else {
        data_len - (read - write)
    }
}

/// Bytes a packet may take now: the unused bytes less the 8 that keep the
/// ring from ever looking completely full (which would read as empty).
#[inline]
pub(crate) fn free(data_len: u32, write: u32, read: u32) -> u32 {
    (data_len - used(data_len, write, read)).saturating_sub(PACKET_ALIGNMENT as u32)
}

/// `index + len`, wrapped into the data area; `len` must not exceed `data_len`.
#[inline]
pub(crate) fn advance(data_len: u32, index: u32, len: u32) -> u32 {
    let to_end = data_len - index;
    if len >= to_end {
        len - to_end
    } else {
        index + len
    }
}
