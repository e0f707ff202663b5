#![no_main]
//! GPA range lists parsed and built; see `vmbus_fuzz::gpa_ranges` for the input layout and the checks.

#[global_allocator]
static ALLOCATOR: vmbus_fuzz::alloc_count::CountingAlloc = vmbus_fuzz::alloc_count::CountingAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| vmbus_fuzz::gpa_ranges::run(data));
