//! Stochastic approximation (RL-SA): the incremental mean.

use rayon::prelude::*;

use crate::ensure;
use crate::error::{FerropsError, Result};

/// Columns per parallel work item: the recurrence runs down each column
/// independently, so the split does not change any value.
const COLUMNS_PER_TASK: usize = 256;

/// Running means of the rows of `x` (`n` rows of `width` values, row-major) by
/// the recurrence `w_{k+1} = w_k - (1 / k)(w_k - x_k)` (RL-SA): row `k - 1` of the
/// result is `w_{k+1}`, the mean of the first `k` rows.
pub fn incremental_mean(x: &[f64], width: usize) -> Result<Vec<f64>> {
    const F: &str = "incremental_mean";
    if width == 0 || x.is_empty() {
        return Ok(Vec::new());
    }
    ensure!(
        x.len().is_multiple_of(width),
        FerropsError::value(F, "x", format!("rows of {width} values"), format!("{} values", x.len()))
    );
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(FerropsError::value(
            F,
            "x",
            "finite samples",
            format!("sample {} = {}", i / width, x[i]),
        ));
    }
    let rows = x.len() / width;
    // Column-major work buffer: each task owns whole columns.
    let mut columns = vec![0.0; x.len()];
    columns
        .par_chunks_mut(COLUMNS_PER_TASK * rows)
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * COLUMNS_PER_TASK;
            for (c, col) in out.chunks_exact_mut(rows).enumerate() {
                let mut w = 0.0;
                for (k, slot) in col.iter_mut().enumerate() {
                    w = w - (1.0 / (k + 1) as f64) * (w - x[k * width + first + c]);
                    *slot = w;
                }
            }
        });
    let mut out = vec![0.0; x.len()];
    for (c, col) in columns.chunks_exact(rows).enumerate() {
        for (k, &w) in col.iter().enumerate() {
            out[k * width + c] = w;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_row_is_the_sample_mean() {
        let x: Vec<f64> = (0..30).map(|i| (i * 7 % 11) as f64).collect();
        let w = incremental_mean(&x, 3).unwrap();
        for c in 0..3 {
            let mean: f64 = (0..10).map(|k| x[k * 3 + c]).sum::<f64>() / 10.0;
            assert!((w[27 + c] - mean).abs() < 1e-12);
            assert_eq!(w[c], x[c]);
        }
        assert!(incremental_mean(&[1.0, f64::NAN], 1).is_err());
        assert!(incremental_mean(&[], 2).unwrap().is_empty());
    }
}
