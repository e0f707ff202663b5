//! A snapshot of a ring's control state, for logs, inspection and dumps.

use crate::index;
use crate::memory::{ControlWord, RingMem};
use crate::Field;
use core::fmt;
use core::sync::atomic::Ordering;

/// The control state of a ring at one moment: each control word read once.
///
/// `bytes_used` and `bytes_free` are `None` when an index is corrupt.
///
/// ```
/// use vmbus_ring::{FlatRingMem, RingState};
/// let mem = FlatRingMem::new(4096).unwrap();
/// let state = RingState::read(&mem);
/// assert_eq!(state.bytes_used, Some(0));
/// assert_eq!(state.bytes_free, Some(4096 - 8));
/// assert_eq!(state.to_string(), "write 0x0 read 0x0 used 0 free 4088 of 4096, mask 0, pending send 0, features 0x0");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingState {
    /// Size of the data area in bytes.
    pub data_len: u32,
    /// The write index.
    pub write_index: u32,
    /// The read index.
    pub read_index: u32,
    /// The interrupt mask.
    pub interrupt_mask: u32,
    /// The pending send size.
    pub pending_send_size: u32,
    /// The feature bits.
    pub feature_bits: u32,
    /// Bytes written and not yet read.
    pub bytes_used: Option<u32>,
    /// Bytes a packet may take now.
    pub bytes_free: Option<u32>,
}

impl RingState {
    /// Reads each control word of `mem` once.
    pub fn read(mem: &impl RingMem) -> Self {
        let data_len = mem.data_len() as u32;
        let load = |word| mem.load(word, Ordering::Acquire);
        let write_index = load(ControlWord::WriteIndex);
        let read_index = load(ControlWord::ReadIndex);
        let indices = index::check(write_index, data_len, Field::WriteIndex)
            .and_then(|write| Ok((write, index::check(read_index, data_len, Field::ReadIndex)?)))
            .ok();
        Self {
            data_len,
            write_index,
            read_index,
            interrupt_mask: load(ControlWord::InterruptMask),
            pending_send_size: load(ControlWord::PendingSendSize),
            feature_bits: load(ControlWord::FeatureBits),
            bytes_used: indices.map(|(write, read)| index::used(data_len, write, read)),
            bytes_free: indices.map(|(write, read)| index::free(data_len, write, read)),
        }
    }
}

/// A byte count, or `?` when an index is corrupt.
pub(crate) struct OrCorrupt(pub(crate) Option<u32>);

impl fmt::Display for OrCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value}"),
            None => f.write_str("?"),
        }
    }
}

impl fmt::Display for RingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "write {:#x} read {:#x} used {} free {} of {}, mask {}, pending send {}, features {:#x}",
            self.write_index,
            self.read_index,
            OrCorrupt(self.bytes_used),
            OrCorrupt(self.bytes_free),
            self.data_len,
            self.interrupt_mask,
            self.pending_send_size,
            self.feature_bits
        )
    }
}

#[cfg(feature = "valuable")]
mod valuable_impl {
    use super::RingState;
    use valuable::{Fields, NamedField, NamedValues, StructDef, Structable, Valuable, Value, Visit};

    const FIELDS: &[NamedField<'static>] = &[
        NamedField::new("data_len"),
        NamedField::new("write_index"),
        NamedField::new("read_index"),
        NamedField::new("interrupt_mask"),
        NamedField::new("pending_send_size"),
        NamedField::new("feature_bits"),
        NamedField::new("bytes_used"),
        NamedField::new("bytes_free"),
    ];

    impl Valuable for RingState {
        fn as_value(&self) -> Value<'_> {
            Value::Structable(self)
        }

        fn visit(&self, visit: &mut dyn Visit) {
            let values = [
                self.data_len.as_value(),
                self.write_index.as_value(),
                self.read_index.as_value(),
                self.interrupt_mask.as_value(),
                self.pending_send_size.as_value(),
                self.feature_bits.as_value(),
                self.bytes_used.as_value(),
                self.bytes_free.as_value(),
            ];
            visit.visit_named_fields(&NamedValues::new(FIELDS, &values));
        }
    }

    impl Structable for RingState {
        fn definition(&self) -> StructDef<'_> {
            StructDef::new_static("RingState", Fields::Named(FIELDS))
        }
    }
}

#[cfg(all(test, feature = "valuable"))]
mod tests {
    use super::RingState;
    use crate::{ControlPage, ControlWord, FlatRingMem};
    use core::sync::atomic::Ordering;
    use valuable::{NamedValues, Value, Visit};

    /// Collects the named fields a `Valuable` reports.
    #[derive(Default)]
    struct Fields(Vec<(String, String)>);

    impl Visit for Fields {
        fn visit_value(&mut self, value: Value<'_>) {
            if let Value::Structable(structable) = value {
                structable.visit(self);
            }
        }
        fn visit_named_fields(&mut self, named: &NamedValues<'_>) {
            for (field, value) in named {
                self.0.push((field.name().to_string(), format!("{value:?}")));
            }
        }
    }

    #[test]
    fn valuable_reports_every_field_by_name() {
        let mem = FlatRingMem::new(8192).unwrap();
        mem.store(ControlWord::WriteIndex, 64, Ordering::Relaxed);
        mem.store(ControlWord::PendingSendSize, 512, Ordering::Relaxed);
        let state = RingState::read(&mem);
        let mut fields = Fields::default();
        valuable::visit(&state, &mut fields);
        let names: Vec<&str> = fields.0.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "data_len",
                "write_index",
                "read_index",
                "interrupt_mask",
                "pending_send_size",
                "feature_bits",
                "bytes_used",
                "bytes_free"
            ]
        );
        let value = |name: &str| fields.0.iter().find(|(field, _)| field == name).unwrap().1.clone();
        assert_eq!(value("write_index"), "64");
        assert_eq!(value("pending_send_size"), "512");
        assert_eq!(value("bytes_used"), "64");
        assert_eq!(value("bytes_free"), "8120");
    }
}
