//! Output buffers for kernels that write every element of a large result.
//!
//! A fresh multi-megabyte result is mapped by the allocator on demand, and the
//! first write to each 4 KiB page faults into the kernel: for a 64 MB IoU matrix
//! that cost more than the arithmetic. On Linux the buffer is advised to use
//! transparent huge pages (2 MiB, 512 times fewer faults), and the kernel writes
//! into uninitialised capacity instead of zeroing it first.
//!
//! Every buffer whose size comes from the caller is allocated fallibly (the `try_`
//! functions): its size is counted with checked arithmetic, and a size that
//! overflows, exceeds the machine's memory or that the allocator refuses is a
//! [`FerropsError::OutOfMemory`] naming the function, the buffer and its shape,
//! where Rust's infallible allocation would abort the interpreter.

use std::alloc::{self, Layout};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{FerropsError, Name, Result};

/// Buffers smaller than this stay on ordinary pages (the allocator reuses them).
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// Types for which all-zero bytes are a valid value (0 or +0.0), so a zeroed
/// buffer can come from the allocator's zeroed pages ([`try_zeroed`]).
///
/// # Safety
/// Implement only for types whose every value is plain data and for which the
/// all-zero bit pattern is a valid value.
pub unsafe trait Zeroable: Copy {}

// SAFETY: plain integers and IEEE floats; all-zero bytes are 0 / +0.0.
unsafe impl Zeroable for f32 {}
// SAFETY: as above.
unsafe impl Zeroable for f64 {}
// SAFETY: as above.
unsafe impl Zeroable for i64 {}
// SAFETY: as above.
unsafe impl Zeroable for u32 {}
// SAFETY: as above.
unsafe impl Zeroable for usize {}

/// The most bytes one buffer may take: what `Vec` can address (`isize::MAX`),
/// and on Linux no more than the machine's physical memory.
///
/// The physical-memory cap is there because of overcommit: Linux hands out
/// address space for a request far beyond what it can back, so `try_reserve`
/// succeeds, and the process is killed by the OOM killer (not a catchable
/// error) once the kernel touches the pages. A single buffer larger than all of
/// physical memory cannot be filled without that (or hours of swapping), so it
/// is refused up front. Requests below the cap but above the memory free at the
/// moment can still meet the OOM killer; no check made before the pages are
/// touched can rule that out. Read once (physical memory does not change) into an
/// atomic: a `OnceLock` caught mid-initialisation by a fork would block the child.
pub fn max_buffer_bytes() -> u128 {
    static MAX: AtomicU64 = AtomicU64::new(0);
    match MAX.load(Ordering::Relaxed) {
        0 => {
            let addressable = isize::MAX as u64;
            let max = physical_memory_bytes().map_or(addressable, |bytes| addressable.min(bytes));
            MAX.store(max, Ordering::Relaxed);
            max.into()
        }
        max => max.into(),
    }
}

#[cfg(target_os = "linux")]
fn physical_memory_bytes() -> Option<u64> {
    // SAFETY: `sysconf` only reads system configuration.
    let (pages, page_size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGE_SIZE)) };
    (pages > 0 && page_size > 0).then(|| (pages as u64).saturating_mul(page_size as u64))
}

#[cfg(not(target_os = "linux"))]
fn physical_memory_bytes() -> Option<u64> {
    None
}

/// The bytes of a buffer of `dims` elements of `T`, counting only the non-zero
/// dimensions: NumPy (and ndarray) refuse an array whose non-zero dimensions
/// overflow, even an empty one, so such a shape is refused here too. In u128 so
/// that a size beyond `usize` is still reported as it is (saturating at
/// `u128::MAX`, which only shapes of several near-2^64 dimensions reach).
fn bytes_of<T>(dims: &[usize]) -> u128 {
    let nonzero = dims.iter().filter(|&&d| d != 0);
    nonzero.fold(std::mem::size_of::<T>() as u128, |bytes, &d| bytes.saturating_mul(d as u128))
}

/// The error for a buffer of `dims` elements of `T` that cannot be allocated:
/// "`function`(): `what` of shape [..] needs N bytes, more than can be allocated".
pub fn too_large<T>(function: impl Into<Name>, what: &str, dims: &[usize]) -> FerropsError {
    FerropsError::out_of_memory(function, format!("{what} of shape {dims:?}"), bytes_of::<T>(dims))
}

/// The element count of a buffer of `dims` elements of `T` (`what` of
/// `function`), when its size is one a buffer may have ([`max_buffer_bytes`]);
/// otherwise the [`too_large`] error. Kernels call this on their output shape
/// before any other work, so an impossible request fails at once. On success the
/// product of any of the dimensions fits in `usize`.
pub fn checked_len<T>(function: impl Into<Name>, what: &str, dims: &[usize]) -> Result<usize> {
    let bytes = bytes_of::<T>(dims);
    let empty = dims.contains(&0);
    if bytes > isize::MAX as u128 || (!empty && bytes > max_buffer_bytes()) {
        return Err(too_large::<T>(function, what, dims));
    }
    // Cannot overflow: the non-zero dimensions' product fits in `isize`.
    Ok(if empty { 0 } else { dims.iter().product() })
}

/// An empty `Vec` with room for exactly the elements of `dims`, advised for huge
/// pages, and that element count; the [`too_large`] error when that much cannot
/// be allocated.
fn reserve<T>(function: impl Into<Name>, what: &str, dims: &[usize]) -> Result<(Vec<T>, usize)> {
    let function = function.into();
    let len = checked_len::<T>(function.clone(), what, dims)?;
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_large::<T>(function, what, dims))?;
    advise_huge_pages(v.as_ptr() as usize, len * std::mem::size_of::<T>());
    Ok((v, len))
}

/// An empty `Vec` with room for exactly the elements of `dims`, advised for huge
/// pages; the [`too_large`] error when that much cannot be allocated.
pub fn try_with_capacity<T>(function: impl Into<Name>, what: &str, dims: &[usize]) -> Result<Vec<T>> {
    reserve(function, what, dims).map(|(v, _)| v)
}

/// Runs `fill` on the uninitialised slots of a new buffer of `dims` elements and
/// returns it; the [`too_large`] error when it cannot be allocated. `fill` must
/// write every slot.
pub fn try_filled<T>(
    function: impl Into<Name>,
    what: &str,
    dims: &[usize],
    fill: impl FnOnce(&mut [MaybeUninit<T>]),
) -> Result<Vec<T>> {
    let (mut v, len) = reserve::<T>(function, what, dims)?;
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` slots (the contract of this function).
    unsafe { v.set_len(len) };
    Ok(v)
}

/// A buffer of `dims` zeros, or the [`too_large`] error. Like `vec![0; len]` it
/// comes from the allocator's zeroed memory (fresh pages for a large buffer,
/// zeroed by the OS when first touched), not from a pass of stores.
pub fn try_zeroed<T: Zeroable>(function: impl Into<Name>, what: &str, dims: &[usize]) -> Result<Vec<T>> {
    let function = function.into();
    let len = checked_len::<T>(function.clone(), what, dims)?;
    let layout = match Layout::array::<T>(len) {
        Ok(layout) if layout.size() > 0 => layout,
        Ok(_) => return Ok(Vec::new()),
        Err(_) => return Err(too_large::<T>(function, what, dims)),
    };
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(too_large::<T>(function, what, dims));
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of
    // `[T; len]`, and all-zero bytes are `len` valid values of `T` (`Zeroable`).
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// A buffer of `dims` copies of `value`, or the [`too_large`] error.
pub fn try_from_elem<T: Clone>(function: impl Into<Name>, what: &str, dims: &[usize], value: T) -> Result<Vec<T>> {
    let (mut v, len) = reserve::<T>(function, what, dims)?;
    v.resize(len, value);
    Ok(v)
}

/// Infallible form of [`try_filled`] for sizes the caller has already bounded: a
/// size that cannot be allocated panics (an internal error, which the bindings
/// catch) rather than aborting the process as `Vec::with_capacity` would. Kernels
/// whose output size comes from the caller use [`try_filled`] instead, which names
/// the function in a `MemoryError`.
pub fn filled<T>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    try_filled("ferrops", "a buffer", &[len], fill).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(start: usize, bytes: usize) {
    const HUGE: usize = 2 << 20;
    if bytes < HUGE_PAGE_MIN_BYTES {
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn is_out_of_memory(err: &FerropsError, function: &str, shape: &str) -> bool {
        let text = err.to_string();
        matches!(err, FerropsError::OutOfMemory { .. })
            && text.starts_with(&format!("{function}(): the output of shape {shape} needs "))
    }

    #[test]
    fn sizes_that_fit_are_allocated_with_their_contents() {
        let v = try_filled::<f32>("f", "the output", &[3, 4], |out| {
            for (i, slot) in out.iter_mut().enumerate() {
                slot.write(i as f32);
            }
        })
        .unwrap();
        assert_eq!(v, (0..12).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(try_zeroed::<f64>("f", "the output", &[2, 5]).unwrap(), vec![0.0; 10]);
        assert_eq!(try_from_elem::<i64>("f", "the output", &[4], -1).unwrap(), vec![-1; 4]);
        assert!(try_zeroed::<f32>("f", "the output", &[7, 0]).unwrap().is_empty());
        assert_eq!(try_with_capacity::<u32>("f", "the output", &[9]).unwrap().capacity(), 9);
        let big = try_zeroed::<f32>("f", "the output", &[3 << 20]).unwrap();
        assert!(big.len() == 3 << 20 && big.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn sizes_that_overflow_are_out_of_memory_errors() {
        let dims = [1, 2, 1 << 32, 1 << 32];
        let err = checked_len::<f32>("adaptive_avg_pool2d", "the output", &dims).unwrap_err();
        assert!(is_out_of_memory(&err, "adaptive_avg_pool2d", "[1, 2, 4294967296, 4294967296]"));
        assert_eq!(err, FerropsError::out_of_memory("adaptive_avg_pool2d", "the output of shape [1, 2, 4294967296, 4294967296]", 1 << 67));
        assert!(try_zeroed::<f64>("f", "the output", &[usize::MAX, 2]).is_err());
        assert!(try_filled::<f32>("f", "the output", &[usize::MAX / 2], |_| unreachable!()).is_err());
        assert!(try_from_elem::<i64>("f", "the output", &[1 << 62], 0).is_err());
        // Empty, but not describable as an array (NumPy refuses it too).
        assert!(checked_len::<f32>("f", "the output", &[0, 1 << 32, 1 << 32]).is_err());
        assert_eq!(checked_len::<f32>("f", "the output", &[0, 1 << 20, 1 << 20]), Ok(0));
        // Past u128 the byte count saturates instead of wrapping.
        let err = too_large::<f64>("f", "the output", &[usize::MAX, usize::MAX, usize::MAX]);
        assert!(matches!(err, FerropsError::OutOfMemory { bytes: u128::MAX, .. }));
    }

    #[test]
    fn sizes_beyond_physical_memory_are_refused_before_allocating() {
        let limit = max_buffer_bytes();
        assert!(limit <= isize::MAX as u128);
        #[cfg(target_os = "linux")]
        assert!(limit < isize::MAX as u128, "physical memory is known on Linux");
        // Fits in usize and in the address space, but not in this machine: under
        // overcommit an attempt would succeed and the OOM killer would follow.
        let elements = usize::try_from(limit / 4 + 1).unwrap();
        let err = try_zeroed::<f32>("box_iou", "the output", &[elements]).unwrap_err();
        assert!(is_out_of_memory(&err, "box_iou", &format!("[{elements}]")));
        assert!(matches!(err, FerropsError::OutOfMemory { bytes, .. } if bytes > limit));
        assert!(checked_len::<f32>("f", "the output", &[elements - 1]).is_ok());
    }

    #[test]
    fn infallible_forms_panic_instead_of_aborting() {
        assert_eq!(filled::<u32>(3, |out| out.iter_mut().for_each(|s| { s.write(7); })), vec![7, 7, 7]);
        let caught = std::panic::catch_unwind(|| filled::<f64>(usize::MAX / 4, |_| unreachable!()));
        assert!(caught.is_err());
    }
}
