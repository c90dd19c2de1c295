//! Output buffers for kernels that write every element of a large result.
//!
//! A fresh multi-megabyte result is mapped by the allocator on demand, and the
//! first write to each 4 KiB page faults into the kernel: for a 64 MB IoU matrix
//! that cost more than the arithmetic. On Linux the buffer is advised to use
//! transparent huge pages (2 MiB, 512 times fewer faults), and the kernel writes
//! into uninitialised capacity instead of zeroing it first.

use std::mem::MaybeUninit;

/// Buffers smaller than this stay on ordinary pages (the allocator reuses them).
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// An empty `Vec` with room for exactly `len` elements, advised for huge pages.
pub fn with_capacity<T>(len: usize) -> Vec<T> {
    let v: Vec<T> = Vec::with_capacity(len);
    let bytes = len * std::mem::size_of::<T>();
    if bytes >= HUGE_PAGE_MIN_BYTES {
        advise_huge_pages(v.as_ptr() as usize, bytes);
    }
    v
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(start: usize, bytes: usize) {
    const HUGE: usize = 2 << 20;
    let first = (start + HUGE - 1) & !(HUGE - 1);
    let end = (start + bytes) & !(HUGE - 1);
    if end > first {
        // SAFETY: [first, end) lies inside the allocation just made; the advice only
        // changes how the kernel backs those pages. A failure is harmless.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_start: usize, _bytes: usize) {}

/// Runs `fill` on the `len` uninitialised slots of a new buffer and returns it.
/// `fill` must write every slot.
pub fn filled<T>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut v = with_capacity::<T>(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` slots (the contract of this function).
    unsafe { v.set_len(len) };
    v
}
