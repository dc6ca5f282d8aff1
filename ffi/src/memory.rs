//! Memory hints for the data plane's large tables: transparent huge pages and cache prefetch.

/// Size of a transparent huge page on x86_64 and aarch64 (with 4 KiB base pages).
const HUGE_PAGE: usize = 2 * 1024 * 1024;

/// Asks the kernel to back the whole 2 MiB pages inside `[ptr, ptr + len)` with transparent huge
/// pages (`madvise(MADV_HUGEPAGE)`), so a large table costs one TLB entry per 2 MiB instead of
/// 512. Call it before the memory is first written. Returns whether the advice was taken (false
/// when the range holds no whole huge page, or the kernel has THP disabled); it is only advice,
/// and nothing depends on it.
pub fn advise_huge_pages<T>(memory: &[T]) -> bool {
    let start = memory.as_ptr() as usize;
    let len = core::mem::size_of_val(memory);
    let aligned = start.next_multiple_of(HUGE_PAGE);
    let end = (start + len) & !(HUGE_PAGE - 1);
    if end <= aligned {
        return false;
    }
    // SAFETY: madvise with MADV_HUGEPAGE changes no memory contents and no mapping permissions;
    // the range [aligned, end) lies inside `memory`, which is a live allocation borrowed for the
    // duration of the call, and both bounds are page aligned as madvise requires.
    let rc = unsafe {
        libc::madvise(
            aligned as *mut libc::c_void,
            end - aligned,
            libc::MADV_HUGEPAGE,
        )
    };
    rc == 0
}

/// Hints the CPU to bring the cache line holding `value` into L1. Never faults and has no
/// effect on program semantics.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults, even on an invalid address, and does not
    // read or write memory architecturally; the pointer comes from a live reference anyway.
    // SSE (which provides the instruction) is part of the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            value as *const T as *const i8,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// [`prefetch`] for every cache line `value` spans (one for a line-sized, line-aligned `T`,
/// such as an IPv4 flow; two for an IPv6 one). The count is a constant of `T`.
#[inline(always)]
pub fn prefetch_all<T>(value: &T) {
    let start = value as *const T as *const u8;
    let mut off = 0;
    while off < core::mem::size_of::<T>() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `prefetch`: a hint that never faults; `wrapping_add` keeps the address
        // computation itself free of undefined behaviour, and it stays inside `value`.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                start.wrapping_add(off) as *const i8,
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = start;
        off += 64;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_huge_page_advice_on_a_large_buffer() {
        // 8 MiB holds at least three whole huge pages wherever the allocator puts it.
        let v = vec![0u64; 8 * HUGE_PAGE / 8];
        // A kernel built without THP has no such file and refuses the advice.
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_else(|_| "[never]".into());
        let took = advise_huge_pages(&v);
        assert_eq!(took, !thp.contains("[never]"), "THP mode {thp}");
        assert!(
            !advise_huge_pages(&[0u8; 16]),
            "no whole huge page in 16 bytes"
        );
    }

    #[test]
    fn test_prefetch_is_harmless() {
        let x = [1u8; 64];
        prefetch(&x);
        prefetch_all(&[0u8; 200]);
        assert_eq!(x[0], 1);
    }
}
