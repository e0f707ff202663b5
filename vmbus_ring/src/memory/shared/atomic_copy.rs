//! Copies between shared memory and private buffers whose every access to
//! the shared side is atomic by Rust's rules, so that a concurrent writer in
//! this process (another endpoint, a dump on a third thread, a scribbler)
//! cannot make a copy a data race.
//!
//! On x86_64 the shared side is reached through inline assembly: ordinary
//! `mov`/`movdqu`/`vmovdqu` moves and `rep movsb`/`rep stosb`. Each of them
//! accesses every byte it covers exactly once, and x86 makes every such byte
//! access single-copy atomic, so each move behaves as a sequence of relaxed
//! `AtomicU8` accesses: the shape of the per-byte atomic copies proposed for
//! Rust (`AtomicPerByte`). The compiler cannot see into the assembly, so it
//! neither merges nor splits those accesses, and it costs what `memcpy`
//! costs (benches/README.md measures it).
//!
//! Elsewhere, and wherever the `vmbus_ring_portable_copies` cfg is set (the
//! sanitizer runs set it, since sanitizers do not see into assembly), the
//! copies are loops of relaxed atomic loads and stores: 8 bytes at a time
//! where the shared side is aligned, single bytes at the edges.
//!
//! Mixed-size atomic accesses that race (an 8-byte descriptor store against
//! a per-byte copy of the same bytes) are not yet given a meaning by Rust's
//! memory model; they arise only from a writer breaking the ring protocol,
//! whose bytes the endpoints validate anyway.

#[cfg(all(target_arch = "x86_64", not(vmbus_ring_portable_copies)))]
pub(super) use x86_64::{copy_from_shared, copy_to_shared, zero_shared};

#[cfg(not(all(target_arch = "x86_64", not(vmbus_ring_portable_copies))))]
pub(super) use portable::{copy_from_shared, copy_to_shared, zero_shared};

/// The x86_64 copies: single moves in inline assembly.
#[cfg(all(target_arch = "x86_64", not(vmbus_ring_portable_copies)))]
mod x86_64 {
    use core::arch::asm;
    use core::arch::x86_64::__m128i;

    /// One move of a fixed size between the two sides, in one direction.
    trait Direction {
        /// Moves 16 bytes from `src + at` to `dst + at`.
        ///
        /// # Safety
        ///
        /// Both 16-byte spans valid, the shared one for atomic access.
        unsafe fn move16(src: *const u8, dst: *mut u8, at: usize);
        /// Moves 8 bytes (see [`move16`](Self::move16)).
        ///
        /// # Safety
        ///
        /// As for `move16`, for 8 bytes.
        unsafe fn move8(src: *const u8, dst: *mut u8, at: usize);
        /// Moves 4 bytes (see [`move16`](Self::move16)).
        ///
        /// # Safety
        ///
        /// As for `move16`, for 4 bytes.
        unsafe fn move4(src: *const u8, dst: *mut u8, at: usize);
        /// Moves 1 byte (see [`move16`](Self::move16)).
        ///
        /// # Safety
        ///
        /// As for `move16`, for 1 byte.
        unsafe fn move1(src: *const u8, dst: *mut u8, at: usize);
    }

    /// Copies `len <= 64` bytes with overlapping moves: two or four 16-byte
    /// moves from 16 bytes on, two 8- or 4-byte moves below, single bytes below
    /// 4. Small payloads (requests, completions) are the common case, and for
    /// them a call and a dispatch on the length would cost more than the copy.
    ///
    /// Where the moves overlap, a byte of `dst` is written twice, the second
    /// time from a second read of its source byte: `dst` ends up holding, for
    /// each byte, one value the source held during the copy, which is all any
    /// copy of memory the peer may be changing can promise.
    ///
    /// # Safety
    ///
    /// `src` valid for reads and `dst` for writes of `len <= 64` bytes, not
    /// overlapping; the shared side valid for atomic access.
    #[inline(always)]
    unsafe fn copy_small<D: Direction>(src: *const u8, dst: *mut u8, len: usize) {
        debug_assert!(len <= 64);
        // SAFETY: every move below lies within `0..len` (each branch checks the
        // lengths it relies on), which the caller guarantees valid.
        unsafe {
            if len >= 16 {
                D::move16(src, dst, 0);
                D::move16(src, dst, len - 16);
                if len > 32 {
                    D::move16(src, dst, 16);
                    D::move16(src, dst, len - 32);
                }
            } else if len >= 8 {
                D::move8(src, dst, 0);
                D::move8(src, dst, len - 8);
            } else if len >= 4 {
                D::move4(src, dst, 0);
                D::move4(src, dst, len - 4);
            } else {
                for at in 0..len {
                    D::move1(src, dst, at);
                }
            }
        }
    }

    /// From here on `rep movsb` copies as fast as the vector loop or faster
    /// (CPUs with ERMS/FSRM), and it needs no CPU feature check.
    const REP_MOVSB_FROM: usize = 4096;

    /// Loads from shared memory by assembly, stores to private memory by
    /// plain writes.
    struct FromShared;
    /// Loads from private memory by plain reads, stores to shared memory by
    /// assembly.
    struct ToShared;

    // SAFETY (for every block below): the caller of each `Direction` method
    // guarantees the span valid; the shared side is accessed by one
    // assembly move (single-copy atomic per byte on x86, see the module
    // documentation), which needs no alignment; the private side is a plain
    // unaligned access to memory no other thread can see.
    impl Direction for FromShared {
        #[inline(always)]
        unsafe fn move16(src: *const u8, dst: *mut u8, at: usize) {
            let value: __m128i;
            // SAFETY: see above.
            unsafe {
                asm!("movdqu {v}, xmmword ptr [{p}]", p = in(reg) src.add(at), v = out(xmm_reg) value,
                    options(nostack, preserves_flags, readonly));
                dst.add(at).cast::<__m128i>().write_unaligned(value);
            }
        }
        #[inline(always)]
        unsafe fn move8(src: *const u8, dst: *mut u8, at: usize) {
            let value: u64;
            // SAFETY: see above.
            unsafe {
                asm!("mov {v}, qword ptr [{p}]", p = in(reg) src.add(at), v = out(reg) value,
                    options(nostack, preserves_flags, readonly));
                dst.add(at).cast::<u64>().write_unaligned(value);
            }
        }
        #[inline(always)]
        unsafe fn move4(src: *const u8, dst: *mut u8, at: usize) {
            let value: u32;
            // SAFETY: see above.
            unsafe {
                asm!("mov {v:e}, dword ptr [{p}]", p = in(reg) src.add(at), v = out(reg) value,
                    options(nostack, preserves_flags, readonly));
                dst.add(at).cast::<u32>().write_unaligned(value);
            }
        }
        #[inline(always)]
        unsafe fn move1(src: *const u8, dst: *mut u8, at: usize) {
            let value: u32;
            // SAFETY: see above.
            unsafe {
                asm!("movzx {v:e}, byte ptr [{p}]", p = in(reg) src.add(at), v = out(reg) value,
                    options(nostack, preserves_flags, readonly));
                dst.add(at).write(value as u8);
            }
        }
    }

    impl Direction for ToShared {
        #[inline(always)]
        unsafe fn move16(src: *const u8, dst: *mut u8, at: usize) {
            // SAFETY: see above.
            unsafe {
                let value = src.add(at).cast::<__m128i>().read_unaligned();
                asm!("movdqu xmmword ptr [{p}], {v}", p = in(reg) dst.add(at), v = in(xmm_reg) value,
                    options(nostack, preserves_flags));
            }
        }
        #[inline(always)]
        unsafe fn move8(src: *const u8, dst: *mut u8, at: usize) {
            // SAFETY: see above.
            unsafe {
                let value = src.add(at).cast::<u64>().read_unaligned();
                asm!("mov qword ptr [{p}], {v}", p = in(reg) dst.add(at), v = in(reg) value,
                    options(nostack, preserves_flags));
            }
        }
        #[inline(always)]
        unsafe fn move4(src: *const u8, dst: *mut u8, at: usize) {
            // SAFETY: see above.
            unsafe {
                let value = src.add(at).cast::<u32>().read_unaligned();
                asm!("mov dword ptr [{p}], {v:e}", p = in(reg) dst.add(at), v = in(reg) value,
                    options(nostack, preserves_flags));
            }
        }
        #[inline(always)]
        unsafe fn move1(src: *const u8, dst: *mut u8, at: usize) {
            // SAFETY: see above.
            unsafe {
                let value = src.add(at).read();
                asm!("mov byte ptr [{p}], {v}", p = in(reg) dst.add(at), v = in(reg_byte) value,
                    options(nostack, preserves_flags));
            }
        }
    }

    /// Copies `len` bytes from shared `src` to private `dst`.
    ///
    /// # Safety
    ///
    /// `src` valid for reads and `dst` for writes of `len` bytes, not
    /// overlapping; nothing in this process holds a reference to `src`'s bytes.
    #[inline(always)]
    pub(in crate::memory::shared) unsafe fn copy_from_shared(src: *const u8, dst: *mut u8, len: usize) {
        if len <= 64 {
            // SAFETY: the caller's contract, with `len <= 64`.
            unsafe { copy_small::<FromShared>(src, dst, len) }
        } else {
            // SAFETY: the caller's contract, with `len > 64`.
            unsafe { copy_bulk(src, dst, len) }
        }
    }

    /// Copies `len` bytes from private `src` to shared `dst`.
    ///
    /// # Safety
    ///
    /// As for [`copy_from_shared`], with the roles of the two sides swapped.
    #[inline(always)]
    pub(in crate::memory::shared) unsafe fn copy_to_shared(src: *const u8, dst: *mut u8, len: usize) {
        if len <= 64 {
            // SAFETY: the caller's contract, with `len <= 64`.
            unsafe { copy_small::<ToShared>(src, dst, len) }
        } else {
            // SAFETY: the caller's contract, with `len > 64`.
            unsafe { copy_bulk(src, dst, len) }
        }
    }

    /// Sets `len` bytes of shared memory at `dst` to zero with `rep stosb`
    /// (ring padding and set-up only: not on a hot path).
    ///
    /// # Safety
    ///
    /// `dst` valid for writes of `len` bytes, with no reference to them.
    pub(in crate::memory::shared) unsafe fn zero_shared(dst: *mut u8, len: usize) {
        // SAFETY: `rep stosb` writes exactly `rdi..rdi + rcx`, the span the
        // caller guarantees; the direction flag is clear at every Rust
        // function boundary (the ABI requires it), so it counts upwards.
        unsafe {
            asm!("rep stosb", inout("rcx") len => _, inout("rdi") dst => _, in("al") 0u8,
                options(nostack, preserves_flags));
        }
    }

    /// Copies `len > 64` bytes between the two sides, both through assembly.
    ///
    /// # Safety
    ///
    /// As for [`copy_from_shared`], with `len > 64`.
    #[inline(never)]
    unsafe fn copy_bulk(src: *const u8, dst: *mut u8, len: usize) {
        if len >= REP_MOVSB_FROM {
            // SAFETY: `rep movsb` reads exactly `rsi..rsi + rcx` and writes
            // `rdi..rdi + rcx`, the spans the caller guarantees, counting
            // upwards (the ABI keeps the direction flag clear).
            unsafe {
                asm!("rep movsb", inout("rcx") len => _, inout("rsi") src => _, inout("rdi") dst => _,
                    options(nostack, preserves_flags));
            }
            return;
        }
        #[cfg(feature = "std")]
        if std::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX (checked just above); the caller's
            // contract, with `64 < len`.
            unsafe { copy_bulk_avx(src, dst, len) };
            return;
        }
        // SAFETY: the caller's contract, with `64 < len`.
        unsafe { copy_bulk_sse(src, dst, len) }
    }

    /// [`copy_bulk`] in 32-byte AVX moves: 64 bytes an iteration, then the
    /// last 64 bytes of the span (overlapping what went before).
    ///
    /// # Safety
    ///
    /// As for [`copy_from_shared`], with `len > 64`, on a CPU with AVX.
    #[cfg(feature = "std")]
    #[target_feature(enable = "avx")]
    unsafe fn copy_bulk_avx(src: *const u8, dst: *mut u8, len: usize) {
        // SAFETY: the loop moves the 64 bytes at `src + i` for
        // `i = 0, 64, ...` while `i < len - 64`, all inside `0..len`, and
        // the tail moves `len - 64..len`; `len > 64` keeps every address in
        // range. Both sides are accessed only by the moves.
        unsafe {
            asm!(
                "lea {last_src}, [{src} + {len} - 64]",
                "lea {last_dst}, [{dst} + {len} - 64]",
                "2:",
                "vmovdqu {a}, ymmword ptr [{src}]",
                "vmovdqu {b}, ymmword ptr [{src} + 32]",
                "vmovdqu ymmword ptr [{dst}], {a}",
                "vmovdqu ymmword ptr [{dst} + 32], {b}",
                "add {src}, 64",
                "add {dst}, 64",
                "cmp {src}, {last_src}",
                "jb 2b",
                "vmovdqu {a}, ymmword ptr [{last_src}]",
                "vmovdqu {b}, ymmword ptr [{last_src} + 32]",
                "vmovdqu ymmword ptr [{last_dst}], {a}",
                "vmovdqu ymmword ptr [{last_dst} + 32], {b}",
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                len = in(reg) len,
                last_src = out(reg) _,
                last_dst = out(reg) _,
                a = out(ymm_reg) _,
                b = out(ymm_reg) _,
                options(nostack),
            );
        }
    }

    /// [`copy_bulk`] in 16-byte SSE2 moves (every x86_64 CPU has them), in
    /// the shape of [`copy_bulk_avx`].
    ///
    /// # Safety
    ///
    /// As for [`copy_from_shared`], with `len > 64`.
    #[cfg_attr(feature = "std", cold)]
    unsafe fn copy_bulk_sse(src: *const u8, dst: *mut u8, len: usize) {
        // SAFETY: as for `copy_bulk_avx`, in 16-byte moves.
        unsafe {
            asm!(
                "lea {last_src}, [{src} + {len} - 64]",
                "lea {last_dst}, [{dst} + {len} - 64]",
                "2:",
                "movdqu {a}, xmmword ptr [{src}]",
                "movdqu {b}, xmmword ptr [{src} + 16]",
                "movdqu {c}, xmmword ptr [{src} + 32]",
                "movdqu {d}, xmmword ptr [{src} + 48]",
                "movdqu xmmword ptr [{dst}], {a}",
                "movdqu xmmword ptr [{dst} + 16], {b}",
                "movdqu xmmword ptr [{dst} + 32], {c}",
                "movdqu xmmword ptr [{dst} + 48], {d}",
                "add {src}, 64",
                "add {dst}, 64",
                "cmp {src}, {last_src}",
                "jb 2b",
                "movdqu {a}, xmmword ptr [{last_src}]",
                "movdqu {b}, xmmword ptr [{last_src} + 16]",
                "movdqu {c}, xmmword ptr [{last_src} + 32]",
                "movdqu {d}, xmmword ptr [{last_src} + 48]",
                "movdqu xmmword ptr [{last_dst}], {a}",
                "movdqu xmmword ptr [{last_dst} + 16], {b}",
                "movdqu xmmword ptr [{last_dst} + 32], {c}",
                "movdqu xmmword ptr [{last_dst} + 48], {d}",
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                len = in(reg) len,
                last_src = out(reg) _,
                last_dst = out(reg) _,
                a = out(xmm_reg) _,
                b = out(xmm_reg) _,
                c = out(xmm_reg) _,
                d = out(xmm_reg) _,
                options(nostack),
            );
        }
    }
}

/// The portable copies: relaxed atomic loads and stores.
#[cfg(not(all(target_arch = "x86_64", not(vmbus_ring_portable_copies))))]
mod portable {
    use core::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

    /// Copies `len` bytes from shared `src` to private `dst`, 8 bytes at a
    /// time where `src` is 8-aligned.
    ///
    /// # Safety
    ///
    /// `src` valid for reads and `dst` for writes of `len` bytes, not
    /// overlapping; nothing in this process holds a reference to `src`'s
    /// bytes other than atomics.
    pub(in crate::memory::shared) unsafe fn copy_from_shared(src: *const u8, dst: *mut u8, len: usize) {
        let head = src.align_offset(8).min(len);
        let words = (len - head) / 8;
        // SAFETY: every access lies within `0..len`, which the caller
        // guarantees valid; each shared access is an atomic on a byte or an
        // 8-aligned word (`src + head` is 8-aligned), which `from_ptr`
        // permits because only atomics reach those bytes in this process.
        unsafe {
            for at in (0..head).chain(head + words * 8..len) {
                dst.add(at).write(AtomicU8::from_ptr(src.add(at).cast_mut()).load(Relaxed));
            }
            for word in 0..words {
                let at = head + word * 8;
                let value = AtomicU64::from_ptr(src.add(at).cast_mut().cast()).load(Relaxed);
                dst.add(at).cast::<u64>().write_unaligned(value);
            }
        }
    }

    /// Copies `len` bytes from private `src` to shared `dst`, 8 bytes at a
    /// time where `dst` is 8-aligned.
    ///
    /// # Safety
    ///
    /// As for [`copy_from_shared`], with the roles of the two sides swapped.
    pub(in crate::memory::shared) unsafe fn copy_to_shared(src: *const u8, dst: *mut u8, len: usize) {
        let head = dst.align_offset(8).min(len);
        let words = (len - head) / 8;
        // SAFETY: as for `copy_from_shared`, with `dst` the shared side.
        unsafe {
            for at in (0..head).chain(head + words * 8..len) {
                AtomicU8::from_ptr(dst.add(at)).store(src.add(at).read(), Relaxed);
            }
            for word in 0..words {
                let at = head + word * 8;
                let value = src.add(at).cast::<u64>().read_unaligned();
                AtomicU64::from_ptr(dst.add(at).cast()).store(value, Relaxed);
            }
        }
    }

    /// Sets `len` bytes of shared memory at `dst` to zero.
    ///
    /// # Safety
    ///
    /// `dst` valid for writes of `len` bytes, reached only through atomics.
    pub(in crate::memory::shared) unsafe fn zero_shared(dst: *mut u8, len: usize) {
        for at in 0..len {
            // SAFETY: inside the span the caller guarantees, by an atomic.
            unsafe { AtomicU8::from_ptr(dst.add(at)).store(0, Relaxed) }
        }
    }
}
