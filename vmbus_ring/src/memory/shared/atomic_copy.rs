//! Copies between shared memory and private buffers whose every access to
//! the shared side is atomic by Rust's rules, so that a concurrent writer in
//! this process (another endpoint, a dump on a third thread, a scribbler)
//! cannot make a copy a data race.
//!
//! On x86_64 the shared side is reached through inline assembly: ordinary
//! `mov`/`movdqu`/`vmovdqu`/`vmovdqu64` moves (the widest the CPU has, as
//! `memcpy` picks them) and `rep movsb`/`rep stosb`. Each of them
//! accesses every byte it covers exactly once, and x86 makes every such byte
//! access single-copy atomic, so each move behaves as a sequence of relaxed
//! `AtomicU8` accesses: the shape of the per-byte atomic copies proposed for
//! Rust (`AtomicPerByte`). The compiler cannot see into the assembly, so it
//! neither merges nor splits those accesses. What they cost against
//! `memcpy` is measured in benches/README.md.
//!
//! Elsewhere (a target without SSE2 included), and wherever the
//! `vmbus_ring_portable_copies` cfg is set (the sanitizer runs set it, since
//! sanitizers do not see into assembly), the copies are loops of relaxed
//! atomic loads and stores: 8 bytes at a time where the shared side is
//! aligned, single bytes at the edges.
//!
//! Atomic is not the whole story: Rust (following C++) makes it undefined
//! behaviour for two unsynchronised atomic accesses of different sizes to
//! overlap partially when one of them writes. Honest endpoints never race
//! at all (the indices' release/acquire orders every byte they share), and
//! the diagnostics read control words with the endpoints' own 4-byte size;
//! the mixed sizes that remain are a copy racing a word store of a thread
//! that breaks the protocol, and a live dump's 8-byte loads of payload bytes
//! that a writer is copying at that moment (see `RingDump::decode`).

#[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(vmbus_ring_portable_copies)))]
pub(super) use x86_64::{copy_from_shared, copy_to_shared, zero_shared};

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2", not(vmbus_ring_portable_copies))))]
pub(super) use portable::{copy_from_shared, copy_to_shared, zero_shared};

/// The x86_64 copies: single moves in inline assembly.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(vmbus_ring_portable_copies)))]
mod x86_64 {
    use core::arch::asm;

    /// From here on `rep movsb` copies as fast as the vector loops or
    /// faster (CPUs with ERMS/FSRM: the microcode streams whole lines);
    /// below it, its start-up cost shows (benches/README.md).
    const REP_MOVSB_FROM: usize = 32 * 1024;

    /// Copies `len <= 64` bytes, both sides through the assembly, with
    /// overlapping moves: two or four 16-byte moves from 16 bytes on, two 8-
    /// or 4-byte moves below, the first, last and middle byte below 4. All
    /// loads come before the stores, and the whole copy is one block: small
    /// payloads (requests, completions) are the common case, and for them a
    /// call, or moves the compiler must keep in order one by one, would cost
    /// more than the copy.
    ///
    /// Where the moves overlap, a byte of `dst` is written twice, from two
    /// reads of its source byte: `dst` ends up holding, for each byte, one
    /// value the source held during the copy, which is all any copy of
    /// memory the peer may be changing can promise.
    ///
    /// # Safety
    ///
    /// `src` valid for reads and `dst` for writes of `len <= 64` bytes, not
    /// overlapping.
    #[inline(always)]
    unsafe fn copy_small(src: *const u8, dst: *mut u8, len: usize) {
        debug_assert!(len <= 64);
        // SAFETY: each branch checks the lengths its moves rely on, so every
        // move lies within `0..len` of both spans, which the caller
        // guarantees valid: from 33 bytes `0..16`, `16..32`, `len-32..len-16`,
        // `len-16..len`; from 16, `0..16` and `len-16..len`; from 8 (4), the
        // first and last 8 (4) bytes; below 4, bytes `0`, `len-1` and, for 3,
        // `1`. Unaligned moves need no alignment.
        unsafe {
            asm!(
                "cmp {len}, 16",
                "jb 6f",
                "cmp {len}, 32",
                "ja 2f",
                "movdqu {a}, xmmword ptr [{src}]",
                "movdqu {b}, xmmword ptr [{src} + {len} - 16]",
                "movdqu xmmword ptr [{dst}], {a}",
                "movdqu xmmword ptr [{dst} + {len} - 16], {b}",
                "jmp 9f",
                "2:",
                "movdqu {a}, xmmword ptr [{src}]",
                "movdqu {b}, xmmword ptr [{src} + 16]",
                "movdqu {c}, xmmword ptr [{src} + {len} - 32]",
                "movdqu {d}, xmmword ptr [{src} + {len} - 16]",
                "movdqu xmmword ptr [{dst}], {a}",
                "movdqu xmmword ptr [{dst} + 16], {b}",
                "movdqu xmmword ptr [{dst} + {len} - 32], {c}",
                "movdqu xmmword ptr [{dst} + {len} - 16], {d}",
                "jmp 9f",
                "6:",
                "cmp {len}, 8",
                "jb 7f",
                "mov {x}, qword ptr [{src}]",
                "mov {y}, qword ptr [{src} + {len} - 8]",
                "mov qword ptr [{dst}], {x}",
                "mov qword ptr [{dst} + {len} - 8], {y}",
                "jmp 9f",
                "7:",
                "cmp {len}, 4",
                "jb 8f",
                "mov {x:e}, dword ptr [{src}]",
                "mov {y:e}, dword ptr [{src} + {len} - 4]",
                "mov dword ptr [{dst}], {x:e}",
                "mov dword ptr [{dst} + {len} - 4], {y:e}",
                "jmp 9f",
                "8:",
                "test {len}, {len}",
                "jz 9f",
                "movzx {x:e}, byte ptr [{src}]",
                "movzx {y:e}, byte ptr [{src} + {len} - 1]",
                "mov byte ptr [{dst}], {x:l}",
                "mov byte ptr [{dst} + {len} - 1], {y:l}",
                "cmp {len}, 2",
                "jbe 9f",
                "movzx {x:e}, byte ptr [{src} + 1]",
                "mov byte ptr [{dst} + 1], {x:l}",
                "9:",
                src = in(reg) src,
                dst = in(reg) dst,
                len = in(reg) len,
                x = out(reg) _,
                y = out(reg) _,
                a = out(xmm_reg) _,
                b = out(xmm_reg) _,
                c = out(xmm_reg) _,
                d = out(xmm_reg) _,
                options(nostack),
            );
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
            unsafe { copy_small(src, dst, len) }
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
            unsafe { copy_small(src, dst, len) }
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
        // caller guarantees; it counts upwards, since Rust guarantees the
        // direction flag clear on entry to an `asm!` block.
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
            // upwards (Rust guarantees the direction flag clear on entry to
            // an `asm!` block).
            unsafe {
                asm!("rep movsb", inout("rcx") len => _, inout("rsi") src => _, inout("rdi") dst => _,
                    options(nostack, preserves_flags));
            }
            return;
        }
        #[cfg(feature = "std")]
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above); the
            // caller's contract, with `64 < len`.
            unsafe { copy_bulk_avx512(src, dst, len) };
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

    /// [`copy_bulk`] in 64-byte AVX-512 moves: up to 128 bytes as a head and
    /// a tail of 64, up to 256 as a head and a tail of 128, longer spans 256
    /// bytes an iteration (four loads, then four stores) and then their last
    /// 256 bytes; the moves overlap where the length asks for it. Where the
    /// CPU has AVX-512, the C library's `memcpy` moves 64 bytes at a time
    /// too, and 32-byte moves copy 1-2 KiB about 1.3 times slower
    /// (benches/README.md). Ends with `vzeroupper`, as [`copy_bulk_avx`].
    ///
    /// # Safety
    ///
    /// As for [`copy_from_shared`], with `len > 64`, on a CPU with AVX-512F.
    #[cfg(feature = "std")]
    #[target_feature(enable = "avx512f")]
    unsafe fn copy_bulk_avx512(src: *const u8, dst: *mut u8, len: usize) {
        // SAFETY: with `64 < len <= 128` the moves cover `0..64` and
        // `len - 64..len`; with `128 < len <= 256`, `0..128` and
        // `len - 128..len`. Otherwise the loop moves `i..i + 256` for
        // `i = 0, 256, ...` while `i < len - 256`, and then `len - 256..len`
        // (`rdx` points there): all inside `0..len`. Registers as in
        // `copy_bulk_avx`.
        unsafe {
            asm!(
                "cmp rcx, 128",
                "ja 2f",
                "vmovdqu64 zmm0, zmmword ptr [rsi]",
                "vmovdqu64 zmm1, zmmword ptr [rsi + rcx - 64]",
                "vmovdqu64 zmmword ptr [rdi], zmm0",
                "vmovdqu64 zmmword ptr [rdi + rcx - 64], zmm1",
                "jmp 5f",
                "2:",
                "cmp rcx, 256",
                "ja 3f",
                "vmovdqu64 zmm0, zmmword ptr [rsi]",
                "vmovdqu64 zmm1, zmmword ptr [rsi + 64]",
                "vmovdqu64 zmm2, zmmword ptr [rsi + rcx - 128]",
                "vmovdqu64 zmm3, zmmword ptr [rsi + rcx - 64]",
                "vmovdqu64 zmmword ptr [rdi], zmm0",
                "vmovdqu64 zmmword ptr [rdi + 64], zmm1",
                "vmovdqu64 zmmword ptr [rdi + rcx - 128], zmm2",
                "vmovdqu64 zmmword ptr [rdi + rcx - 64], zmm3",
                "jmp 5f",
                "3:",
                "lea rdx, [rsi + rcx - 256]",
                "sub rdi, rsi",
                "4:",
                "vmovdqu64 zmm0, zmmword ptr [rsi]",
                "vmovdqu64 zmm1, zmmword ptr [rsi + 64]",
                "vmovdqu64 zmm2, zmmword ptr [rsi + 128]",
                "vmovdqu64 zmm3, zmmword ptr [rsi + 192]",
                "vmovdqu64 zmmword ptr [rsi + rdi], zmm0",
                "vmovdqu64 zmmword ptr [rsi + rdi + 64], zmm1",
                "vmovdqu64 zmmword ptr [rsi + rdi + 128], zmm2",
                "vmovdqu64 zmmword ptr [rsi + rdi + 192], zmm3",
                "add rsi, 256",
                "cmp rsi, rdx",
                "jb 4b",
                "vmovdqu64 zmm0, zmmword ptr [rdx]",
                "vmovdqu64 zmm1, zmmword ptr [rdx + 64]",
                "vmovdqu64 zmm2, zmmword ptr [rdx + 128]",
                "vmovdqu64 zmm3, zmmword ptr [rdx + 192]",
                "vmovdqu64 zmmword ptr [rdx + rdi], zmm0",
                "vmovdqu64 zmmword ptr [rdx + rdi + 64], zmm1",
                "vmovdqu64 zmmword ptr [rdx + rdi + 128], zmm2",
                "vmovdqu64 zmmword ptr [rdx + rdi + 192], zmm3",
                "5:",
                "vzeroupper",
                in("rsi") src,
                in("rdi") dst,
                in("rcx") len,
                clobber_abi("C"),
                options(nostack),
            );
        }
    }

    /// [`copy_bulk`] in 32-byte AVX moves: up to 128 bytes as a head and a
    /// tail of 64 (overlapping), longer spans 128 bytes an iteration (four
    /// loads, then four stores) and then their last 128 bytes (overlapping
    /// what went before). Ends with `vzeroupper`, so that the SSE code after
    /// it pays no AVX-to-SSE transition.
    ///
    /// # Safety
    ///
    /// As for [`copy_from_shared`], with `len > 64`, on a CPU with AVX.
    #[cfg(feature = "std")]
    #[target_feature(enable = "avx")]
    unsafe fn copy_bulk_avx(src: *const u8, dst: *mut u8, len: usize) {
        // SAFETY: with `64 < len <= 128` the moves cover `0..64` and
        // `len - 64..len`. Otherwise the loop moves `i..i + 128` for
        // `i = 0, 128, ...` while `i < len - 128`, and then `len - 128..len`
        // (`rdx` points there): all inside `0..len`. `rdi` is turned into
        // the distance from `src` to `dst`, so one pointer (`rsi`) walks
        // both spans. Both sides are accessed only by the moves.
        // `clobber_abi("C")` tells the compiler that every register the
        // block uses, and every vector register (`vzeroupper` clears their
        // upper halves), is lost.
        unsafe {
            asm!(
                "cmp rcx, 128",
                "ja 3f",
                "vmovdqu ymm0, ymmword ptr [rsi]",
                "vmovdqu ymm1, ymmword ptr [rsi + 32]",
                "vmovdqu ymm2, ymmword ptr [rsi + rcx - 64]",
                "vmovdqu ymm3, ymmword ptr [rsi + rcx - 32]",
                "vmovdqu ymmword ptr [rdi], ymm0",
                "vmovdqu ymmword ptr [rdi + 32], ymm1",
                "vmovdqu ymmword ptr [rdi + rcx - 64], ymm2",
                "vmovdqu ymmword ptr [rdi + rcx - 32], ymm3",
                "jmp 5f",
                "3:",
                "lea rdx, [rsi + rcx - 128]",
                "sub rdi, rsi",
                "4:",
                "vmovdqu ymm0, ymmword ptr [rsi]",
                "vmovdqu ymm1, ymmword ptr [rsi + 32]",
                "vmovdqu ymm2, ymmword ptr [rsi + 64]",
                "vmovdqu ymm3, ymmword ptr [rsi + 96]",
                "vmovdqu ymmword ptr [rsi + rdi], ymm0",
                "vmovdqu ymmword ptr [rsi + rdi + 32], ymm1",
                "vmovdqu ymmword ptr [rsi + rdi + 64], ymm2",
                "vmovdqu ymmword ptr [rsi + rdi + 96], ymm3",
                "sub rsi, -128",
                "cmp rsi, rdx",
                "jb 4b",
                "vmovdqu ymm0, ymmword ptr [rdx]",
                "vmovdqu ymm1, ymmword ptr [rdx + 32]",
                "vmovdqu ymm2, ymmword ptr [rdx + 64]",
                "vmovdqu ymm3, ymmword ptr [rdx + 96]",
                "vmovdqu ymmword ptr [rdx + rdi], ymm0",
                "vmovdqu ymmword ptr [rdx + rdi + 32], ymm1",
                "vmovdqu ymmword ptr [rdx + rdi + 64], ymm2",
                "vmovdqu ymmword ptr [rdx + rdi + 96], ymm3",
                "5:",
                "vzeroupper",
                in("rsi") src,
                in("rdi") dst,
                in("rcx") len,
                clobber_abi("C"),
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

    /// Each vector loop on its own (a CPU runs only the widest it has
    /// through [`copy_bulk`]): every length from 65 bytes up through a few
    /// loop iterations, and long ones, at every source and destination
    /// alignment mod 8, copy exactly their bytes and touch none around them.
    #[cfg(test)]
    mod tests {
        use alloc::vec::Vec;

        fn check(copy: unsafe fn(*const u8, *mut u8, usize), name: &str) {
            let lengths = (65..=1100).chain([4095, 4096, 4097, 20_000]);
            for len in lengths {
                for (src_at, dst_at) in [(0, 0), (1, 5), (7, 2), (3, 3)] {
                    let src: Vec<u8> = (0..len + 16).map(|i| (i * 7 + len) as u8).collect();
                    let mut dst = alloc::vec![0xa5u8; len + 16];
                    // SAFETY: both spans lie inside their vectors (16 bytes of
                    // slack cover the offsets), which do not overlap.
                    unsafe { copy(src.as_ptr().add(src_at), dst.as_mut_ptr().add(dst_at), len) };
                    assert!(dst[dst_at..dst_at + len] == src[src_at..src_at + len], "{name}: {len} bytes");
                    assert!(dst[..dst_at].iter().chain(&dst[dst_at + len..]).all(|&b| b == 0xa5), "{name}: {len}");
                }
            }
        }

        #[test]
        fn every_vector_loop_copies_exactly_its_bytes() {
            check(super::copy_bulk_sse, "sse2");
            #[cfg(feature = "std")]
            if std::is_x86_feature_detected!("avx") {
                check(super::copy_bulk_avx, "avx");
            }
            #[cfg(feature = "std")]
            if std::is_x86_feature_detected!("avx512f") {
                check(super::copy_bulk_avx512, "avx-512");
            }
        }
    }
}

/// The portable copies: relaxed atomic loads and stores.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2", not(vmbus_ring_portable_copies))))]
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
