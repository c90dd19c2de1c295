//! pycocotools' compressed `counts` string (MASK-COUNTS).
//!
//! Each run length becomes a signed integer written 5 bits per character, least
//! significant group first, as ASCII `48 + group` with bit `0x20` set while more
//! groups follow; the last group's bit `0x10` is the sign. From the fourth run on
//! (index 3 and later) the value written is the difference from the run two
//! places back (a 1-run minus the previous 1-run, a 0-run minus the previous
//! 0-run), which is small for masks whose columns look alike.

use super::Rle;
use crate::error::{FerropsError, Name, Result};

/// Groups beyond this many would shift past 64 bits; no valid string needs more
/// than 7 (a difference of two 32-bit runs fits 34 bits and a sign).
const MAX_GROUPS: u32 = 12;

/// The compressed string of `counts`, byte for byte what pycocotools writes.
pub fn compress(counts: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(counts.len() * 2);
    for (i, &count) in counts.iter().enumerate() {
        let mut x = i64::from(count);
        if i > 2 {
            x -= i64::from(counts[i - 2]);
        }
        loop {
            let mut group = (x & 0x1f) as u8;
            x >>= 5;
            let more = if group & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                group |= 0x20;
            }
            out.push(group + 48);
            if !more {
                break;
            }
        }
    }
    out
}

/// What is wrong with a compressed string ([`for_each_run`]).
pub(super) enum Fault {
    /// The string ends inside a run length.
    Unterminated,
    /// A byte outside `'0'..='o'`, at this position.
    Byte(u8, usize),
    /// A run of more than [`MAX_GROUPS`] characters, ending at this position.
    TooLong(usize),
    /// A run length outside `0..2**32` (the value, its run's index).
    OutOfRange(i64, usize),
}

/// Reads a compressed string run by run, handing each run length to `visit`,
/// up to the first fault.
#[inline]
pub(super) fn for_each_run(s: &[u8], mut visit: impl FnMut(u32)) -> std::result::Result<(), Fault> {
    let mut p = 0;
    // The last two runs (a run from the fourth on is a difference from the
    // run two back).
    let (mut before, mut m) = ([0u32; 2], 0usize);
    while p < s.len() {
        let mut x: i64 = 0;
        let mut groups = 0u32;
        loop {
            let &byte = s.get(p).ok_or(Fault::Unterminated)?;
            if !(48..48 + 64).contains(&byte) {
                return Err(Fault::Byte(byte, p));
            }
            if groups >= MAX_GROUPS {
                return Err(Fault::TooLong(p));
            }
            let c = i64::from(byte - 48);
            x |= (c & 0x1f) << (5 * groups);
            p += 1;
            groups += 1;
            if c & 0x20 == 0 {
                if c & 0x10 != 0 {
                    x |= -1i64 << (5 * groups);
                }
                break;
            }
        }
        if m > 2 {
            x += i64::from(before[0]);
        }
        let count = u32::try_from(x).map_err(|_| Fault::OutOfRange(x, m))?;
        before = [before[1], count];
        m += 1;
        visit(count);
    }
    Ok(())
}

/// Reads a compressed string into a checked [`Rle`] of size `[h, w]`. Refuses
/// characters outside `'0'..='o'`, a string ending inside a run, run lengths
/// outside `0..2**32` and runs not summing to `h * w`.
pub fn decompress(function: impl Into<Name>, argument: impl Into<Name>, s: &[u8], h: u64, w: u64) -> Result<Rle> {
    let (function, argument) = (function.into(), argument.into());
    let mut counts: Vec<u32> = Vec::with_capacity(s.len());
    if let Err(fault) = for_each_run(s, |count| counts.push(count)) {
        let (expected, got) = match fault {
            Fault::Unterminated => (
                "a compressed RLE string (its last character must end a run)",
                "a string ending inside a run length".to_string(),
            ),
            Fault::Byte(byte, p) => (
                "a compressed RLE string of the characters '0' to 'o'",
                format!("the byte {byte:#04x} at position {p}"),
            ),
            Fault::TooLong(p) => (
                "a compressed RLE string of 32-bit run lengths",
                format!("a run of more than {MAX_GROUPS} characters ending at position {p}"),
            ),
            Fault::OutOfRange(x, m) => {
                ("a compressed RLE string of run lengths in [0, 2**32)", format!("the run length {x} (run {m})"))
            }
        };
        return Err(FerropsError::value(function, argument, expected, got));
    }
    Rle::new(function, argument, h, w, counts)
}

impl Rle {
    /// The compressed `counts` string of this mask.
    pub fn to_compressed(&self) -> Vec<u8> {
        compress(&self.counts)
    }
}
