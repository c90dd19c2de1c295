//! Finite MDP solvers (SPEC section 5, RL-*): Bellman backups, value iteration
//! (Jacobi and Gauss-Seidel, two stopping rules), iterative policy evaluation,
//! Q-values, Monte Carlo control ([`mc`]) and the incremental mean ([`sa`]).
//!
//! Transitions are one CSR matrix per action (`P[a]` is `S x S`, row `s` holds the
//! successors of `(s, a)`), borrowed straight from SciPy's `indptr`/`indices`/`data`
//! arrays: no dense `S x S` anywhere. Rewards arrive as the expected one-step reward
//! `r[s, a]`, row-major `(S, A)`.
//!
//! A backup reads row `s` of every `P[a]` and sums `p * V[s']` left to right, the
//! order of SciPy's CSR mat-vec, so on sparse inputs `r + gamma * (P[a] @ V)` is
//! bitwise the value pymdptoolbox computes. Jacobi sweeps run over fixed blocks of
//! states in parallel (each state's result depends on nothing but `V`), so results
//! are the same for any thread count; Gauss-Seidel is serial by definition.

pub mod mc;
pub mod sa;

use rayon::prelude::*;

use crate::error::{FerropsError, Result};
use crate::simd::{dispatch, SimdKernel};

/// States per parallel work item; fixed so that the split is the same for any
/// thread count. 2048 states x 4 actions x 10 successors is ~1 MB of transitions.
const STATES_PER_TASK: usize = 2048;

/// How far a row of `P[a]` may sum from 1: loose enough for float32 data upcast to
/// float64, tight enough to catch an unnormalised row.
pub const ROW_SUM_TOLERANCE: f64 = 1e-6;

/// One action's `S x S` transition matrix in CSR form (SciPy's int32 arrays).
#[derive(Debug, Clone, Copy)]
pub struct Csr<'a> {
    pub indptr: &'a [i32],
    pub indices: &'a [i32],
    pub data: &'a [f64],
}

impl<'a> Csr<'a> {
    /// The successors and probabilities of row `s` (indptr checked in [`Mdp::new`]).
    #[inline(always)]
    fn row(&self, s: usize) -> (&'a [i32], &'a [f64]) {
        let (lo, hi) = (self.indptr[s] as usize, self.indptr[s + 1] as usize);
        (&self.indices[lo..hi], &self.data[lo..hi])
    }
}

/// A validated MDP: `S` states, `A` actions, transitions per action and the
/// expected reward `r[s * A + a]`.
#[derive(Debug, Clone)]
pub struct Mdp<'a> {
    states: usize,
    transitions: Vec<Csr<'a>>,
    reward: &'a [f64],
}

impl<'a> Mdp<'a> {
    /// Checks the shapes, that every row of every `P[a]` is a probability
    /// distribution over `0..S`, and that rewards are finite; errors name the
    /// function, the action and the state.
    pub fn new(function: &'static str, states: usize, transitions: Vec<Csr<'a>>, reward: &'a [f64]) -> Result<Self> {
        let actions = transitions.len();
        if actions == 0 {
            return Err(FerropsError::value(function, "P", "at least one action", "0 actions"));
        }
        if states > i32::MAX as usize {
            return Err(FerropsError::value(
                function,
                "P",
                "at most 2^31 - 1 states",
                format!("{states} states"),
            ));
        }
        for (a, p) in transitions.iter().enumerate() {
            check_structure(function, states, a, p)?;
        }
        if reward.len() != states * actions {
            return Err(FerropsError::value(
                function,
                "R",
                format!("an expected reward per (state, action): {states} x {actions} values"),
                format!("{} values", reward.len()),
            ));
        }
        if let Some(i) = reward.iter().position(|r| !r.is_finite()) {
            return Err(FerropsError::value(
                function,
                "R",
                "finite rewards",
                format!("reward {} for state {}, action {}", reward[i], i / actions, i % actions),
            ));
        }
        check_rows(function, states, &transitions)?;
        Ok(Mdp {
            states,
            transitions,
            reward,
        })
    }

    pub fn states(&self) -> usize {
        self.states
    }

    pub fn actions(&self) -> usize {
        self.transitions.len()
    }

    /// `r(s, a) + gamma * sum_s' P[a, s, s'] V(s')` (RL-BELLMAN), summed in CSR order.
    #[inline(always)]
    fn q(&self, s: usize, a: usize, gamma: f64, v: &[f64]) -> f64 {
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
    fn best(&self, s: usize, gamma: f64, v: &[f64]) -> (f64, usize) {
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

fn check_structure(function: &'static str, states: usize, a: usize, p: &Csr<'_>) -> Result<()> {
    let bad = |expected: String, got: String| Err(FerropsError::value(function, "P", expected, got));
    if p.indptr.len() != states + 1 {
        return bad(
            format!("P[{a}] with {states} rows (indptr of length {})", states + 1),
            format!("indptr of length {}", p.indptr.len()),
        );
    }
    let nnz = p.indices.len();
    if p.data.len() != nnz || p.indptr[0] != 0 || p.indptr[states] as usize != nnz || p.indptr[states] < 0 {
        return bad(
            format!("P[{a}] in CSR form: indptr from 0 to nnz, indices and data of length nnz"),
            format!(
                "indptr from {} to {}, {} indices, {} values",
                p.indptr[0],
                p.indptr[states],
                nnz,
                p.data.len()
            ),
        );
    }
    if let Some(s) = p.indptr.windows(2).position(|w| w[1] < w[0]) {
        return bad(
            format!("P[{a}] with a non-decreasing indptr"),
            format!("indptr[{}] < indptr[{s}]", s + 1),
        );
    }
    Ok(())
}

/// `(sum, min(0, smallest))` of a row's probabilities in four interleaved lanes:
/// the sum is only compared with 1 within [`ROW_SUM_TOLERANCE`], and four short
/// dependency chains instead of one long one keep the validation at memory speed.
#[inline(always)]
fn row_total_and_min(row: &[f64]) -> (f64, f64) {
    let (mut sums, mut mins) = ([0.0f64; 4], [0.0f64; 4]);
    let mut chunks = row.chunks_exact(4);
    for chunk in &mut chunks {
        for lane in 0..4 {
            sums[lane] += chunk[lane];
            // A compare and select rather than f64::min's NaN handling: a NaN
            // makes the sum NaN, which fails the sum test anyway.
            mins[lane] = if chunk[lane] < mins[lane] {
                chunk[lane]
            } else {
                mins[lane]
            };
        }
    }
    for (lane, &x) in chunks.remainder().iter().enumerate() {
        sums[lane] += x;
        mins[lane] = if x < mins[lane] { x } else { mins[lane] };
    }
    let lowest = mins.into_iter().fold(0.0, |lo, m| if m < lo { m } else { lo });
    ((sums[0] + sums[1]) + (sums[2] + sums[3]), lowest)
}

/// Whether the rows of `p` for the states of `block` are distributions over
/// `0..S`: the fast test behind [`check_rows`], a pass over the block's indices
/// and one over its probabilities, with no early exit and no per-element branch
/// (one loop per row with every test inside measured twice as slow). Finiteness
/// needs no test of its own: once every probability is >= 0, an infinity or a
/// NaN makes its row's sum fail.
fn block_is_valid(states: usize, p: &Csr<'_>, block: usize) -> bool {
    let (lo, hi) = (block * STATES_PER_TASK, ((block + 1) * STATES_PER_TASK).min(states));
    let bounds = &p.indptr[lo..=hi];
    let base = bounds[0] as usize;
    let (cols, probs) = (
        &p.indices[base..bounds[hi - lo] as usize],
        &p.data[base..bounds[hi - lo] as usize],
    );
    // A negative index wraps to above i32::MAX >= S as u32.
    let cols_ok = cols.iter().fold(true, |ok, &j| ok & ((j as u32) < states as u32));
    let mut lowest = 0.0f64;
    let sums_ok = bounds.windows(2).fold(true, |ok, w| {
        let (total, row_lowest) = row_total_and_min(&probs[w[0] as usize - base..w[1] as usize - base]);
        lowest = if row_lowest < lowest { row_lowest } else { lowest };
        ok & ((total - 1.0).abs() <= ROW_SUM_TOLERANCE)
    });
    cols_ok & sums_ok & (lowest >= 0.0)
}

/// Column indices in range, probabilities finite, non-negative and summing to 1
/// in every row of every action; the error names the first bad row, actions in
/// order, then states.
fn check_rows(function: &'static str, states: usize, transitions: &[Csr<'_>]) -> Result<()> {
    let blocks = states.div_ceil(STATES_PER_TASK);
    if (0..blocks)
        .into_par_iter()
        .all(|block| transitions.iter().all(|p| block_is_valid(states, p, block)))
    {
        return Ok(());
    }
    // Some row is bad: find the first and say what is wrong with it.
    let first_problem = |a: usize, p: &Csr<'_>| -> Option<String> {
        (0..states).find_map(|s| {
            let (cols, probs) = p.row(s);
            if let Some(k) = cols.iter().position(|&j| j < 0 || j as usize >= states) {
                return Some(format!(
                    "P[{a}][{s}, :] has a successor index {} outside 0..{states}",
                    cols[k]
                ));
            }
            if let Some(k) = probs.iter().position(|&x| !(x >= 0.0 && x.is_finite())) {
                return Some(format!("P[{a}][{s}, {}] = {}, not a probability", cols[k], probs[k]));
            }
            let (total, _) = row_total_and_min(probs);
            ((total - 1.0).abs() > ROW_SUM_TOLERANCE)
                .then(|| format!("P[{a}][{s}, :] sums to {total}, not 1 (action {a}, state {s})"))
        })
    };
    match transitions.iter().enumerate().find_map(|(a, p)| first_problem(a, p)) {
        Some(got) => Err(FerropsError::value(
            function,
            "P",
            "rows of non-negative transition probabilities summing to 1",
            got,
        )),
        None => Ok(()),
    }
}

/// The discount factor: in (0, 1), or exactly 1 where `allow_one`.
pub fn check_discount(function: &'static str, discount: f64, allow_one: bool) -> Result<()> {
    let ok = discount > 0.0 && (discount < 1.0 || (allow_one && discount == 1.0));
    if !ok {
        let expected = if allow_one {
            "a value in (0, 1]"
        } else {
            "a value in (0, 1)"
        };
        return Err(FerropsError::value(
            function,
            "discount",
            expected,
            format!("{discount}"),
        ));
    }
    Ok(())
}

fn check_vector(function: &'static str, argument: &'static str, values: &[f64], states: usize) -> Result<()> {
    if values.len() != states {
        return Err(FerropsError::value(
            function,
            argument,
            format!("one value per state ({states})"),
            format!("{} values", values.len()),
        ));
    }
    if let Some(s) = values.iter().position(|v| !v.is_finite()) {
        return Err(FerropsError::value(
            function,
            argument,
            "finite values",
            format!("{argument}[{s}] = {}", values[s]),
        ));
    }
    Ok(())
}

fn check_policy(function: &'static str, policy: &[i64], states: usize, actions: usize) -> Result<()> {
    if policy.len() != states {
        return Err(FerropsError::value(
            function,
            "policy",
            format!("one action per state ({states})"),
            format!("{} actions", policy.len()),
        ));
    }
    if let Some(s) = policy.iter().position(|&a| a < 0 || a as usize >= actions) {
        return Err(FerropsError::value(
            function,
            "policy",
            format!("actions in 0..{actions}"),
            format!("action {} for state {s}", policy[s]),
        ));
    }
    Ok(())
}

/// Stored transitions between the value a backup reads and the one it asks the
/// cache for: the reads of `V` are random, and with `V` larger than L2 each would
/// otherwise wait on L3 or memory.
const PREFETCH_AHEAD: usize = 32;

/// Bytes of `V` above which a backup prefetches its reads of `V`: about a core's
/// L2. Below it `V` stays cached and the prefetches only cost instructions
/// (measured 15% slower sweeps at S = 30,000, 3% faster at S = 100,000).
const PREFETCH_ABOVE_BYTES: usize = 512 << 10;

/// Hints the cache to load `values[i]`.
#[inline(always)]
fn prefetch<T>(values: &[T], i: usize) {
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
fn prefetch_transitions(p: &Csr<'_>, from: usize, to: usize) -> usize {
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
fn backup_into(mdp: &Mdp<'_>, gamma: f64, v: &[f64], v_new: &mut [f64], policy: &mut [i64]) -> (f64, f64) {
    v_new
        .par_chunks_mut(STATES_PER_TASK)
        .zip(policy.par_chunks_mut(STATES_PER_TASK))
        .enumerate()
        .map(|(block, (v_new, policy))| {
            dispatch(BackupBlock {
                mdp,
                gamma,
                v,
                first: block * STATES_PER_TASK,
                v_new,
                policy,
            })
        })
        .reduce(
            || (f64::NEG_INFINITY, f64::INFINITY),
            |x, y| (x.0.max(y.0), x.1.min(y.1)),
        )
}

/// States ahead of the one being backed up whose rows a Gauss-Seidel sweep asks
/// the cache for. A state reads one row from each of the `A` matrices: 2A streams
/// at once, more than the hardware prefetchers follow, so without this each cache
/// line of them waited on memory (measured 2-2.8x slower sweeps at S = 100,000).
const GS_ROWS_AHEAD: usize = 8;

/// A Gauss-Seidel sweep (RL-GS): states in order, each backed up with the values
/// already updated in this sweep. Serial by definition.
struct GaussSeidelSweep<'a> {
    mdp: &'a Mdp<'a>,
    gamma: f64,
    v: &'a mut [f64],
    policy: &'a mut [i64],
}

impl SimdKernel for GaussSeidelSweep<'_> {
    type Output = (f64, f64);
    #[inline(always)]
    fn run(self) -> (f64, f64) {
        let (mut hi, mut lo) = (f64::NEG_INFINITY, f64::INFINITY);
        let states = self.mdp.states;
        // Per action, the first stored transition not yet asked for.
        let mut asked = vec![0usize; self.mdp.actions()];
        for s in 0..states {
            let ahead = (s + GS_ROWS_AHEAD).min(states);
            for (p, asked) in self.mdp.transitions.iter().zip(&mut asked) {
                *asked = prefetch_transitions(p, *asked, p.indptr[ahead] as usize);
            }
            let (value, a) = self.mdp.best(s, self.gamma, self.v);
            let delta = value - self.v[s];
            hi = hi.max(delta);
            lo = lo.min(delta);
            self.v[s] = value;
            self.policy[s] = a as i64;
        }
        (hi, lo)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRule {
    /// pymdptoolbox's rule: `span(V_{k+1} - V_k) < eps (1 - gamma) / gamma`
    /// (`eps` when gamma = 1); gives an eps-optimal policy.
    Span,
    /// `||V_{k+1} - V_k||_inf < eps (1 - gamma) / (2 gamma)`: V within eps of V*.
    SupNorm,
}

impl StopRule {
    pub fn parse(function: &'static str, name: &str) -> Result<Self> {
        match name {
            "span" => Ok(StopRule::Span),
            "supnorm" => Ok(StopRule::SupNorm),
            other => Err(FerropsError::value(
                function,
                "stop",
                "one of 'span', 'supnorm'",
                format!("'{other}'"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    Jacobi,
    GaussSeidel,
}

impl Sweep {
    pub fn parse(function: &'static str, name: &str) -> Result<Self> {
        match name {
            "jacobi" => Ok(Sweep::Jacobi),
            "gauss-seidel" => Ok(Sweep::GaussSeidel),
            other => Err(FerropsError::value(
                function,
                "method",
                "one of 'jacobi', 'gauss-seidel'",
                format!("'{other}'"),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    pub values: Vec<f64>,
    pub policy: Vec<i64>,
    pub iterations: usize,
    pub converged: bool,
    /// The last sweep's span or sup-norm of `V_{k+1} - V_k` (the stop rule's measure).
    pub residual: f64,
}

/// Value iteration (RL-BELLMAN, RL-VI-STOP, RL-GS). Iteration `k` computes
/// `V_k` from `V_{k-1}` and stops once the rule holds or `k == max_iter`; the
/// result is the last `V_k` and the greedy policy of that sweep, as in
/// pymdptoolbox's `ValueIteration.run` (whose `max_iter` is not rewritten here).
pub fn value_iteration(
    mdp: &Mdp<'_>,
    discount: f64,
    epsilon: f64,
    max_iter: usize,
    initial_value: Option<&[f64]>,
    stop: StopRule,
    sweep: Sweep,
) -> Result<Solution> {
    const F: &str = "value_iteration";
    check_discount(F, discount, stop == StopRule::Span)?;
    if !(epsilon > 0.0 && epsilon.is_finite()) {
        return Err(FerropsError::value(
            F,
            "epsilon",
            "a positive finite number",
            format!("{epsilon}"),
        ));
    }
    if max_iter == 0 {
        return Err(FerropsError::value(F, "max_iter", "a positive iteration count", "0"));
    }
    let n = mdp.states;
    let mut v = match initial_value {
        Some(v0) => {
            check_vector(F, "initial_value", v0, n)?;
            v0.to_vec()
        }
        None => vec![0.0; n],
    };
    let threshold = match stop {
        StopRule::Span if discount == 1.0 => epsilon,
        StopRule::Span => epsilon * (1.0 - discount) / discount,
        StopRule::SupNorm => epsilon * (1.0 - discount) / (2.0 * discount),
    };
    let mut policy = vec![0i64; n];
    if n == 0 {
        return Ok(Solution {
            values: v,
            policy,
            iterations: 0,
            converged: true,
            residual: 0.0,
        });
    }
    let mut v_new = vec![0.0; n];
    let mut iterations = 0;
    loop {
        iterations += 1;
        let (hi, lo) = match sweep {
            Sweep::Jacobi => {
                let range = backup_into(mdp, discount, &v, &mut v_new, &mut policy);
                std::mem::swap(&mut v, &mut v_new);
                range
            }
            Sweep::GaussSeidel => dispatch(GaussSeidelSweep {
                mdp,
                gamma: discount,
                v: &mut v,
                policy: &mut policy,
            }),
        };
        let residual = match stop {
            StopRule::Span => hi - lo,
            StopRule::SupNorm => hi.abs().max(lo.abs()),
        };
        let converged = residual < threshold;
        if converged || iterations == max_iter {
            return Ok(Solution {
                values: v,
                policy,
                iterations,
                converged,
                residual,
            });
        }
    }
}

/// One Jacobi backup: `(max_a Q(s, a), argmax_a Q(s, a))` for every state.
pub fn bellman_backup(mdp: &Mdp<'_>, discount: f64, values: &[f64]) -> Result<(Vec<f64>, Vec<i64>)> {
    check_discount("bellman_backup", discount, true)?;
    check_vector("bellman_backup", "V", values, mdp.states)?;
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
    q.par_chunks_mut(STATES_PER_TASK * actions)
        .enumerate()
        .for_each(|(block, out)| {
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

/// States ahead of the one being evaluated whose row an iterative policy
/// evaluation asks the cache for: consecutive states read rows of different
/// matrices, `A` streams with gaps that the hardware prefetchers do not follow.
const PE_ROWS_AHEAD: usize = 8;

/// Iterative policy evaluation (RL-PI): Jacobi sweeps `V <- r_pi + gamma P_pi V`
/// from `V = 0` until `||V_{k+1} - V_k||_inf < tol (1 - gamma) / (2 gamma)`, which
/// puts `V` within `tol` of `V_pi`. Returns `(V, sweeps, converged)`.
pub fn evaluate_policy_iterative(
    mdp: &Mdp<'_>,
    policy: &[i64],
    discount: f64,
    tol: f64,
    max_iter: usize,
) -> Result<(Vec<f64>, usize, bool)> {
    const F: &str = "policy_evaluation";
    check_discount(F, discount, false)?;
    check_policy(F, policy, mdp.states, mdp.actions())?;
    if !(tol > 0.0 && tol.is_finite()) {
        return Err(FerropsError::value(
            F,
            "epsilon",
            "a positive finite number",
            format!("{tol}"),
        ));
    }
    if max_iter == 0 {
        return Err(FerropsError::value(F, "max_iter", "a positive iteration count", "0"));
    }
    let n = mdp.states;
    let threshold = tol * (1.0 - discount) / (2.0 * discount);
    let (mut v, mut v_new) = (vec![0.0; n], vec![0.0; n]);
    if n == 0 {
        return Ok((v, 0, true));
    }
    for sweep in 1..=max_iter {
        let change = v_new
            .par_chunks_mut(STATES_PER_TASK)
            .enumerate()
            .map(|(block, out)| {
                let first = block * STATES_PER_TASK;
                let mut change = 0.0f64;
                for (i, slot) in out.iter_mut().enumerate() {
                    let s = first + i;
                    if let Some(&a) = policy.get(s + PE_ROWS_AHEAD) {
                        let p = &mdp.transitions[a as usize];
                        let ahead = s + PE_ROWS_AHEAD;
                        prefetch_transitions(p, p.indptr[ahead] as usize, p.indptr[ahead + 1] as usize);
                    }
                    *slot = mdp.q(s, policy[s] as usize, discount, &v);
                    change = change.max((*slot - v[s]).abs());
                }
                change
            })
            .reduce(|| 0.0, f64::max);
        std::mem::swap(&mut v, &mut v_new);
        if change < threshold {
            return Ok((v, sweep, true));
        }
    }
    Ok((v, max_iter, false))
}

/// The linear system of a policy's value: `P_pi` in CSR form and `r_pi`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySystem {
    pub indptr: Vec<i64>,
    pub indices: Vec<i32>,
    pub data: Vec<f64>,
    pub reward: Vec<f64>,
}

/// The rows of `P_pi` (row `s` of `P[pi(s)]`) and `r_pi`, for an exact sparse
/// solve of `(I - gamma P_pi) V = r_pi`.
pub fn policy_system(mdp: &Mdp<'_>, policy: &[i64]) -> Result<PolicySystem> {
    check_policy("policy_evaluation", policy, mdp.states, mdp.actions())?;
    let actions = mdp.actions();
    let mut indptr = Vec::with_capacity(mdp.states + 1);
    indptr.push(0i64);
    let (mut indices, mut data) = (Vec::new(), Vec::new());
    let mut reward = Vec::with_capacity(mdp.states);
    for (s, &a) in policy.iter().enumerate() {
        let (cols, probs) = mdp.transitions[a as usize].row(s);
        indices.extend_from_slice(cols);
        data.extend_from_slice(probs);
        indptr.push(indices.len() as i64);
        reward.push(mdp.reward[s * actions + a as usize]);
    }
    Ok(PolicySystem {
        indptr,
        indices,
        data,
        reward,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Owned CSR arrays for tests, built from dense `(A, S, S)` rows.
    pub(crate) struct OwnedCsr {
        pub indptr: Vec<i32>,
        pub indices: Vec<i32>,
        pub data: Vec<f64>,
    }

    pub(crate) fn csr_from_dense(p: &[Vec<f64>]) -> OwnedCsr {
        let mut m = OwnedCsr {
            indptr: vec![0],
            indices: vec![],
            data: vec![],
        };
        for row in p {
            for (j, &x) in row.iter().enumerate() {
                if x != 0.0 {
                    m.indices.push(j as i32);
                    m.data.push(x);
                }
            }
            m.indptr.push(m.indices.len() as i32);
        }
        m
    }

    pub(crate) fn views(owned: &[OwnedCsr]) -> Vec<Csr<'_>> {
        owned
            .iter()
            .map(|m| Csr {
                indptr: &m.indptr,
                indices: &m.indices,
                data: &m.data,
            })
            .collect()
    }

    /// pymdptoolbox's forest example (S = 3, r1 = 4, r2 = 2, p = 0.1).
    pub(crate) fn forest() -> (Vec<OwnedCsr>, Vec<f64>) {
        let wait = csr_from_dense(&[vec![0.1, 0.9, 0.0], vec![0.1, 0.0, 0.9], vec![0.1, 0.0, 0.9]]);
        let cut = csr_from_dense(&[vec![1.0, 0.0, 0.0], vec![1.0, 0.0, 0.0], vec![1.0, 0.0, 0.0]]);
        (vec![wait, cut], vec![0.0, 0.0, 0.0, 1.0, 4.0, 2.0])
    }

    /// A random sparse MDP with `k` successors per (s, a).
    pub(crate) fn random_mdp(states: usize, actions: usize, k: usize, seed: u64) -> (Vec<OwnedCsr>, Vec<f64>) {
        let mut rng = mc::Stream::new(seed, 0);
        let mats = (0..actions)
            .map(|_| {
                let mut m = OwnedCsr {
                    indptr: vec![0],
                    indices: vec![],
                    data: vec![],
                };
                for _ in 0..states {
                    let mut cols: Vec<i32> = (0..k).map(|_| rng.below(states) as i32).collect();
                    cols.sort_unstable();
                    cols.dedup();
                    let w: Vec<f64> = cols.iter().map(|_| rng.uniform() + 0.1).collect();
                    let total: f64 = w.iter().sum();
                    m.indices.extend_from_slice(&cols);
                    m.data.extend(w.iter().map(|x| x / total));
                    m.indptr.push(m.indices.len() as i32);
                }
                m
            })
            .collect();
        let reward = (0..states * actions).map(|_| rng.uniform()).collect();
        (mats, reward)
    }

    #[test]
    fn forest_matches_pymdptoolbox_docstring() {
        let (mats, r) = forest();
        let mdp = Mdp::new("value_iteration", 3, views(&mats), &r).unwrap();
        let sol = value_iteration(&mdp, 0.96, 0.01, 1000, None, StopRule::Span, Sweep::Jacobi).unwrap();
        let expected = [5.93215488, 9.38815488, 13.38815488];
        for (v, e) in sol.values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-8, "{:?}", sol.values);
        }
        assert_eq!(sol.policy, vec![0, 0, 0]);
        assert_eq!(sol.iterations, 4);
    }

    #[test]
    fn same_result_for_any_thread_count_and_simd_level() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (mats, r) = random_mdp(5000, 3, 6, 7);
        let mdp = Mdp::new("value_iteration", 5000, views(&mats), &r).unwrap();
        let mut results = Vec::new();
        for (threads, level) in [(1, crate::simd::SimdLevel::Scalar), (2, crate::simd::detected())] {
            crate::parallel::set_num_threads(threads).unwrap();
            crate::simd::set_level(level);
            results.push(crate::parallel::install(|| {
                value_iteration(&mdp, 0.95, 1e-6, 1000, None, StopRule::SupNorm, Sweep::Jacobi).unwrap()
            }));
        }
        crate::simd::set_level(crate::simd::detected());
        assert_eq!(results[0], results[1]);
        assert!(results[0].converged);
    }

    #[test]
    fn gauss_seidel_needs_fewer_sweeps() {
        let (mats, r) = random_mdp(500, 3, 4, 3);
        let mdp = Mdp::new("value_iteration", 500, views(&mats), &r).unwrap();
        let run = |sweep| value_iteration(&mdp, 0.99, 1e-6, 100000, None, StopRule::SupNorm, sweep).unwrap();
        let (jacobi, gs) = (run(Sweep::Jacobi), run(Sweep::GaussSeidel));
        assert!(
            gs.iterations < jacobi.iterations,
            "{} vs {}",
            gs.iterations,
            jacobi.iterations
        );
        let gap = jacobi
            .values
            .iter()
            .zip(&gs.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(gap < 2e-6, "{gap}");
    }

    #[test]
    fn bad_rows_are_named() {
        let mut bad = csr_from_dense(&[vec![0.5, 0.5], vec![0.5, 0.4]]);
        let ok = csr_from_dense(&[vec![1.0, 0.0], vec![0.0, 1.0]]);
        let r = [0.0; 4];
        let err = Mdp::new("f", 2, views(&[ok, bad]), &r).unwrap_err().to_string();
        assert!(err.contains("P[1][1, :] sums to 0.9"), "{err}");
        bad = csr_from_dense(&[vec![1.5, -0.5], vec![0.5, 0.5]]);
        let err = Mdp::new("f", 2, views(&[bad]), &r[..2]).unwrap_err().to_string();
        assert!(err.contains("P[0][0, 1] = -0.5"), "{err}");
        let ok = csr_from_dense(&[vec![1.0, 0.0], vec![0.0, 1.0]]);
        let err = Mdp::new("f", 2, views(&[ok]), &[0.0, f64::NAN])
            .unwrap_err()
            .to_string();
        assert!(err.contains("state 1, action 0"), "{err}");
    }

    #[test]
    fn block_kernels_equal_the_per_pair_formula() {
        // Both sides of PREFETCH_ABOVE_BYTES: V of 8 KB and of 560 KB.
        for states in [1000, 70_000] {
            let (mats, reward) = random_mdp(states, 3, 4, 5);
            let mdp = Mdp::new("f", states, views(&mats), &reward).unwrap();
            let v: Vec<f64> = (0..states).map(|s| (s % 17) as f64 * 0.37 - 2.0).collect();
            let q = q_values(&mdp, 0.9, &v).unwrap();
            let (v_new, policy) = bellman_backup(&mdp, 0.9, &v).unwrap();
            for s in 0..states {
                for a in 0..3 {
                    assert_eq!(q[s * 3 + a].to_bits(), mdp.q(s, a, 0.9, &v).to_bits(), "Q({s}, {a})");
                }
                let (best, action) = mdp.best(s, 0.9, &v);
                assert_eq!(
                    (v_new[s].to_bits(), policy[s]),
                    (best.to_bits(), action as i64),
                    "state {s}"
                );
            }
        }
    }

    #[test]
    fn every_bad_entry_is_caught_and_named() {
        // Several blocks of states, rows of 9 entries (two 4-lane chunks and a
        // tail); each corruption is caught by the block test and named by the
        // search that follows it.
        let states = 2 * STATES_PER_TASK + 100;
        let (mats, reward) = random_mdp(states, 3, 9, 7);
        assert!(Mdp::new("f", states, views(&mats), &reward).is_ok());
        let mut rng = mc::Stream::new(11, 0);
        type Corrupt = fn(&mut OwnedCsr, usize);
        let corruptions: [(&str, Corrupt); 8] = [
            ("not a probability", |m, k| m.data[k] = -1e-300),
            ("not a probability", |m, k| m.data[k] = f64::NAN),
            ("not a probability", |m, k| m.data[k] = f64::INFINITY),
            ("not a probability", |m, k| m.data[k] = f64::NEG_INFINITY),
            ("sums to", |m, k| m.data[k] *= 0.5),
            ("sums to", |m, k| m.data[k] += 1e-5),
            ("outside 0..", |m, k| m.indices[k] = -1),
            ("outside 0..", |m, k| m.indices[k] = (m.indptr.len() - 1) as i32),
        ];
        for (expected, corrupt) in corruptions {
            for _ in 0..4 {
                let (mut mats, reward) = random_mdp(states, 3, 9, 7);
                let (a, s) = (rng.below(3), rng.below(states));
                let lo = mats[a].indptr[s] as usize;
                let k = lo + rng.below(mats[a].indptr[s + 1] as usize - lo);
                corrupt(&mut mats[a], k);
                let err = Mdp::new("f", states, views(&mats), &reward).unwrap_err().to_string();
                assert!(
                    err.contains(&format!("P[{a}][{s}, ")) && err.contains(expected),
                    "{err}"
                );
            }
        }
        // -0.0 is a probability (0), as `x >= 0.0` says.
        let zero = csr_from_dense(&[vec![1.0, 0.0], vec![0.0, 1.0]]);
        let mut signed = OwnedCsr {
            indptr: vec![0, 2, 3],
            indices: vec![0, 1, 1],
            data: vec![-0.0, 1.0, 1.0],
        };
        assert!(Mdp::new("f", 2, views(&[zero]), &[0.0; 2]).is_ok());
        assert!(Mdp::new("f", 2, views(std::slice::from_ref(&signed)), &[0.0; 2]).is_ok());
        signed.data[0] = -f64::MIN_POSITIVE;
        assert!(Mdp::new("f", 2, views(&[signed]), &[0.0; 2]).is_err());
    }

    #[test]
    fn iterative_evaluation_solves_the_linear_system() {
        let (mats, r) = forest();
        let mdp = Mdp::new("policy_evaluation", 3, views(&mats), &r).unwrap();
        let (v, _, converged) = evaluate_policy_iterative(&mdp, &[0, 0, 0], 0.9, 1e-10, 100000).unwrap();
        assert!(converged);
        // Residual of V = r_pi + gamma P_pi V.
        let q = q_values(&mdp, 0.9, &v).unwrap();
        for s in 0..3 {
            assert!((q[s * 2] - v[s]).abs() < 1e-9);
        }
    }
}
