//! Bellman backups (RL-BELLMAN): `Q(s, a)` for one pair, the Jacobi backup of a
//! block of states (the hot loop of value iteration) and the cache prefetching the
//! backups share with the solvers.
//!
//! A backup reads row `s` of every `P[a]` and sums `p * V[s']` left to right, the
//! order of SciPy's CSR mat-vec, so on sparse inputs `r + gamma * (P[a] @ V)` is
//! bitwise the value pymdptoolbox computes.

use rayon::prelude::*;

use super::model::{check_discount, check_vector, Csr, Mdp};
use super::STATES_PER_TASK;
use crate::error::Result;
use crate::simd::{dispatch, SimdKernel};

impl Mdp<'_> {
    /// `r(s, a) + gamma * sum_s' P[a, s, s'] V(s')` (RL-BELLMAN), summed in CSR order.
    #[inline(always)]
    pub(super) fn q(&self, s: usize, a: usize, gamma: f64, v: &[f64]) -> f64 {
        let (cols, probs) = self.transitions[a].row(s);
        let mut acc = 0.0;
        for (&j, &p) in cols.iter().zip(probs) {
            // SAFETY: `Mdp::new` checked every column index is in 0..S and
            // callers pass `v` of length S.
            acc += p * unsafe { *v.get_unchecked(j as usize) };
        }
        self.reward[s * self.transitions.len() + a] + gamma * acc
    }

    /// `(max_a Q(s, a), argmax_a Q(s, a))`, ties to the lowest action.
    #[inline(always)]
    pub(super) fn best(&self, s: usize, gamma: f64, v: &[f64]) -> (f64, usize) {
        let mut best = (self.q(s, 0, gamma, v), 0);
        for a in 1..self.transitions.len() {
            let q = self.q(s, a, gamma, v);
            if q > best.0 {
                best = (q, a);
            }
        }
        best
    }
}

/// Stored transitions between the value a backup reads and the one it asks the
/// cache for: the reads of `V` are random, and with `V` larger than L2 each would
/// otherwise wait on L3 or memory.
const PREFETCH_AHEAD: usize = 32;

/// Bytes of `V` above which a backup prefetches its reads of `V`: about a core's
/// L2. Below it `V` stays cached and the prefetches only cost instructions
/// (measured 15% slower sweeps at S = 30,000, 3% faster at S = 100,000).
pub(super) const PREFETCH_ABOVE_BYTES: usize = 512 << 10;

/// Hints the cache to load `values[i]`.
#[inline(always)]
pub(super) fn prefetch<T>(values: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(values.as_ptr().wrapping_add(i) as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (values, i);
}

/// Asks the cache for the stored transitions `from..to` of `p`, a cache line of
/// probabilities (8) at a time; the indices' lines (16) are asked for at the same
/// positions, twice each, which is cheaper than tracking them. Returns the first
/// position not asked for (`>= to`), where a caller walking forward goes on.
#[inline(always)]
pub(super) fn prefetch_transitions(p: &Csr<'_>, from: usize, to: usize) -> usize {
    let mut k = from;
    while k < to {
        prefetch(p.data, k);
        prefetch(p.indices, k);
        k += 8;
    }
    k
}

/// `sums[i] = sum_k P[s, k] V[k]` over the rows `s = first..first + sums.len()` of
/// one action's CSR matrix, left to right in CSR order (SciPy's mat-vec order).
#[inline(always)]
fn row_sums(p: &Csr<'_>, v: &[f64], first: usize, sums: &mut [f64]) {
    if std::mem::size_of_val(v) > PREFETCH_ABOVE_BYTES {
        row_sums_prefetching::<true>(p, v, first, sums);
    } else {
        row_sums_prefetching::<false>(p, v, first, sums);
    }
}

/// [`row_sums`], asking the cache for `V` ahead of its reads when `PREFETCH`.
#[inline(always)]
fn row_sums_prefetching<const PREFETCH: bool>(p: &Csr<'_>, v: &[f64], first: usize, sums: &mut [f64]) {
    let n = sums.len();
    let bounds = &p.indptr[first..=first + n];
    // This block's stored transitions; row bounds relative to `base`.
    let base = bounds[0] as usize;
    let (cols, probs) = (&p.indices[base..bounds[n] as usize], &p.data[base..bounds[n] as usize]);
    let last = cols.len().saturating_sub(1);
    // Plain index loops: a chain of iterator adapters here was not inlined.
    for (i, sum) in sums.iter_mut().enumerate() {
        let mut acc = 0.0;
        for k in bounds[i] as usize - base..bounds[i + 1] as usize - base {
            // SAFETY: `Mdp::new` checked that indptr is non-decreasing within
            // 0..=nnz, so k < cols.len() and the prefetch position too, and that
            // every column index is in 0..S = v.len().
            unsafe {
                if PREFETCH {
                    prefetch(v, *cols.get_unchecked((k + PREFETCH_AHEAD).min(last)) as usize);
                }
                acc += *probs.get_unchecked(k) * *v.get_unchecked(*cols.get_unchecked(k) as usize);
            }
        }
        *sum = acc;
    }
}

/// One Jacobi Bellman backup of a block of states: writes `max_a Q` and the
/// greedy action, returns the (max, min) of `V_new - V` over the block.
struct BackupBlock<'a> {
    mdp: &'a Mdp<'a>,
    gamma: f64,
    v: &'a [f64],
    first: usize,
    v_new: &'a mut [f64],
    policy: &'a mut [i64],
}

impl SimdKernel for BackupBlock<'_> {
    type Output = (f64, f64);
    #[inline(always)]
    fn run(self) -> (f64, f64) {
        let (mdp, gamma, v, first) = (self.mdp, self.gamma, self.v, self.first);
        let actions = mdp.actions();
        let n = self.v_new.len();
        // Action by action over the block, as SciPy's per-action mat-vec reads
        // memory: two sequential streams (indices, data) at a time instead of
        // 2A interleaved ones, which measured several times faster. The row sums
        // go to a buffer and the max over actions runs after them, without a
        // branch per row on which action is ahead: those branches are as good as
        // random and each miss stalled the next rows (measured 20% of a sweep
        // with `V` in cache).
        let mut sums = vec![0.0; n * actions];
        for (p, sums) in mdp.transitions.iter().zip(sums.chunks_exact_mut(n)) {
            row_sums(p, v, first, sums);
        }
        let rewards = &mdp.reward[first * actions..(first + n) * actions];
        for (i, (best, action)) in self.v_new.iter_mut().zip(self.policy.iter_mut()).enumerate() {
            *best = rewards[i * actions] + gamma * sums[i];
            *action = 0;
        }
        for a in 1..actions {
            let sums = &sums[a * n..(a + 1) * n];
            for (i, (best, action)) in self.v_new.iter_mut().zip(self.policy.iter_mut()).enumerate() {
                let q = rewards[i * actions + a] + gamma * sums[i];
                // Strictly greater: ties keep the lowest action.
                let ahead = q > *best;
                *best = if ahead { q } else { *best };
                *action = if ahead { a as i64 } else { *action };
            }
        }
        let (mut hi, mut lo) = (f64::NEG_INFINITY, f64::INFINITY);
        for (out, old) in self.v_new.iter().zip(&v[first..first + n]) {
            let delta = out - old;
            hi = hi.max(delta);
            lo = lo.min(delta);
        }
        (hi, lo)
    }
}

/// `V_new = max_a Q(., a)` and the greedy policy (RL-BELLMAN), in parallel over
/// state blocks; returns `(max, min)` of `V_new - V`.
pub(super) fn backup_into(mdp: &Mdp<'_>, gamma: f64, v: &[f64], v_new: &mut [f64], policy: &mut [i64]) -> (f64, f64) {
    v_new
        .par_chunks_mut(STATES_PER_TASK)
        .zip(policy.par_chunks_mut(STATES_PER_TASK))
        .enumerate()
        .map(|(block, (v_new, policy))| {
            dispatch(BackupBlock { mdp, gamma, v, first: block * STATES_PER_TASK, v_new, policy })
        })
        .reduce(|| (f64::NEG_INFINITY, f64::INFINITY), |x, y| (x.0.max(y.0), x.1.min(y.1)))
}

/// One Jacobi backup: `(max_a Q(s, a), argmax_a Q(s, a))` for every state.
/// Errors name `function`, the public function served (policy iteration).
pub fn bellman_backup(function: &str, mdp: &Mdp<'_>, discount: f64, values: &[f64]) -> Result<(Vec<f64>, Vec<i64>)> {
    check_discount(function, discount, true)?;
    check_vector(function, "V", values, mdp.states)?;
    let mut v_new = vec![0.0; mdp.states];
    let mut policy = vec![0i64; mdp.states];
    backup_into(mdp, discount, values, &mut v_new, &mut policy);
    Ok((v_new, policy))
}

/// `Q(s, a)` for every pair (RL-BELLMAN), row-major `(S, A)`.
pub fn q_values(mdp: &Mdp<'_>, discount: f64, values: &[f64]) -> Result<Vec<f64>> {
    check_discount("q_values", discount, true)?;
    check_vector("q_values", "V", values, mdp.states)?;
    let actions = mdp.actions();
    let mut q = vec![0.0; mdp.states * actions];
    q.par_chunks_mut(STATES_PER_TASK * actions).enumerate().for_each(|(block, out)| {
        // Action by action, as in a Jacobi backup (see `BackupBlock`).
        let first = block * STATES_PER_TASK;
        let mut sums = vec![0.0; out.len() / actions];
        for (a, p) in mdp.transitions.iter().enumerate() {
            row_sums(p, values, first, &mut sums);
            for (i, sum) in sums.iter().enumerate() {
                out[i * actions + a] = mdp.reward[(first + i) * actions + a] + discount * sum;
            }
        }
    });
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::super::test_models::{random_mdp, views};
    use super::*;

    #[test]
    fn block_kernels_equal_the_per_pair_formula() {
        // Both sides of PREFETCH_ABOVE_BYTES: V of 8 KB and of 560 KB.
        for states in [1000, 70_000] {
            let (mats, reward) = random_mdp(states, 3, 4, 5);
            let mdp = Mdp::new("f", states, views(&mats), &reward).unwrap();
            let v: Vec<f64> = (0..states).map(|s| (s % 17) as f64 * 0.37 - 2.0).collect();
            let q = q_values(&mdp, 0.9, &v).unwrap();
            let (v_new, policy) = bellman_backup("f", &mdp, 0.9, &v).unwrap();
            for s in 0..states {
                for a in 0..3 {
                    assert_eq!(q[s * 3 + a].to_bits(), mdp.q(s, a, 0.9, &v).to_bits(), "Q({s}, {a})");
                }
                let (best, action) = mdp.best(s, 0.9, &v);
                assert_eq!((v_new[s].to_bits(), policy[s]), (best.to_bits(), action as i64), "state {s}");
            }
        }
    }
}
