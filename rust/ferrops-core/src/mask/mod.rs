//! Instance masks as pycocotools stores them (spec clauses MASK-*).
//!
//! A mask of `h` rows and `w` columns is read column by column (Fortran order) and
//! stored as the lengths of its alternating runs, the first run being of 0s (so it
//! is 0 long when the mask starts with a 1). [`codec`] turns the runs into the
//! compressed `counts` string, [`rle`] encodes, decodes and measures them, and
//! [`polygon`] rasterises polygons and boxes exactly as pycocotools' `rleFrPoly`.
//!
//! Every [`Rle`] built from caller data is checked: its runs sum to `h * w`, and
//! `h * w` fits the 32-bit run lengths pycocotools uses. The kernels can then
//! index and count without further checks, and nothing the caller sends can make
//! them read out of bounds or loop forever.

pub mod codec;
pub mod columns;
pub mod polygon;
pub mod prepared;
pub mod rle;
#[cfg(test)]
mod tests;

use crate::ensure;
use crate::error::{FerropsError, Name, Result};

/// A run-length encoded mask: `counts` alternate 0-runs and 1-runs, column-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    pub h: u32,
    pub w: u32,
    pub counts: Vec<u32>,
}

impl Rle {
    /// Checks that `h * w` fits 32 bits and that `counts` sum to it exactly.
    pub fn new(function: impl Into<Name>, argument: impl Into<Name>, h: u64, w: u64, counts: Vec<u32>) -> Result<Rle> {
        let (function, argument) = (function.into(), argument.into());
        let (h, w) = checked_size(function.clone(), argument.clone(), h, w)?;
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let pixels = u64::from(h) * u64::from(w);
        ensure!(
            total == pixels,
            FerropsError::value(
                function,
                argument,
                format!("run lengths summing to h * w = {pixels} (size [{h}, {w}])"),
                format!("runs summing to {total}"),
            )
        );
        Ok(Rle { h, w, counts })
    }

    /// Pixels in the mask, `h * w`.
    pub fn pixels(&self) -> u64 {
        u64::from(self.h) * u64::from(self.w)
    }
}

/// `(h, w)` as 32-bit values whose product fits 32 bits, as pycocotools' run
/// lengths (C `unsigned int`) require.
pub fn checked_size(function: impl Into<Name>, argument: impl Into<Name>, h: u64, w: u64) -> Result<(u32, u32)> {
    let fits = h.checked_mul(w).is_some_and(|p| p <= u64::from(u32::MAX));
    ensure!(fits, FerropsError::value(function, argument, "a size [h, w] with h * w < 2**32", format!("[{h}, {w}]")));
    Ok((h as u32, w as u32))
}

/// One RLE as the caller gave it, before its runs are checked.
pub enum RleInput {
    /// A compressed `counts` string.
    Compressed { h: u64, w: u64, counts: Vec<u8> },
    /// `counts` as a list of run lengths.
    Uncompressed { h: u64, w: u64, counts: Vec<u32> },
}

/// Checks (and decompresses) a batch of RLEs in parallel. Item `i` is reported
/// as `argument[i]['counts']`; the first bad item in list order is the error,
/// whatever the thread count.
pub fn parse_all(function: &'static str, argument: &'static str, inputs: Vec<RleInput>) -> Result<Vec<Rle>> {
    use rayon::prelude::*;
    inputs
        .into_par_iter()
        .enumerate()
        .map(|(i, input)| {
            let name = format!("{argument}[{i}]['counts']");
            match input {
                RleInput::Compressed { h, w, counts } => codec::decompress(function, name, &counts, h, w),
                RleInput::Uncompressed { h, w, counts } => Rle::new(function, name, h, w, counts),
            }
        })
        .collect()
}

/// `(h, w, compressed counts)` of each mask, compressed in parallel.
pub fn compress_all(rles: Vec<Rle>) -> Vec<(u32, u32, Vec<u8>)> {
    use rayon::prelude::*;
    rles.into_par_iter().map(|r| (r.h, r.w, r.to_compressed())).collect()
}
