//! The one place that takes GPA ranges out of a received packet.

use vmbus_channel::Payload;
use vmbus_ring::{GpaRanges, IncomingPacket, PacketKind, RingMem};

/// The GPA ranges of a received request: `Some` for a GPA-direct packet,
/// `None` for any other kind. Everything else in the crate gets ranges from
/// here, so a change in how `vmbus_ring` hands them out is a change here.
pub fn request_ranges<'a, M: RingMem>(packet: &'a IncomingPacket, _payload: &Payload<'_, M>) -> Option<GpaRanges<'a>> {
    match &packet.kind {
        PacketKind::GpaDirect(ranges) => Some(ranges.ranges()),
        _ => None,
    }
}
