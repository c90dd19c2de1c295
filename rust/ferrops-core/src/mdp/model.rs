//! The MDP as the kernels read it, and every check of its arguments: one CSR
//! matrix per action validated once in [`Mdp::new`] (so the backups index it
//! unchecked), the discount, per-state vectors and policies.

use rayon::prelude::*;

use super::STATES_PER_TASK;
use crate::ensure;
use crate::error::{FerropsError, Result};

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
    pub(super) fn row(&self, s: usize) -> (&'a [i32], &'a [f64]) {
        let (lo, hi) = (self.indptr[s] as usize, self.indptr[s + 1] as usize);
        (&self.indices[lo..hi], &self.data[lo..hi])
    }
}

/// A validated MDP: `S` states, `A` actions, transitions per action and the
/// expected reward `r[s * A + a]`.
#[derive(Debug, Clone)]
pub struct Mdp<'a> {
    pub(super) states: usize,
    pub(super) transitions: Vec<Csr<'a>>,
    pub(super) reward: &'a [f64],
}

impl<'a> Mdp<'a> {
    /// Checks the shapes, that every row of every `P[a]` is a probability
    /// distribution over `0..S`, and that rewards are finite; errors name the
    /// function (the public one the caller serves), the action and the state.
    pub fn new(function: &str, states: usize, transitions: Vec<Csr<'a>>, reward: &'a [f64]) -> Result<Self> {
        let actions = transitions.len();
        ensure!(actions != 0, FerropsError::value(function.to_owned(), "P", "at least one action", "0 actions"));
        ensure!(
            states <= i32::MAX as usize,
            FerropsError::value(function.to_owned(), "P", "at most 2^31 - 1 states", format!("{states} states"))
        );
        for (a, p) in transitions.iter().enumerate() {
            check_structure(function, states, a, p)?;
        }
        ensure!(
            reward.len() == states * actions,
            FerropsError::value(
                function.to_owned(),
                "R",
                format!("an expected reward per (state, action): {states} x {actions} values"),
                format!("{} values", reward.len()),
            )
        );
        if let Some(i) = reward.iter().position(|r| !r.is_finite()) {
            return Err(FerropsError::value(
                function.to_owned(),
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
}

fn check_structure(function: &str, states: usize, a: usize, p: &Csr<'_>) -> Result<()> {
    let bad = |expected: String, got: String| FerropsError::value(function.to_owned(), "P", expected, got);
    ensure!(
        p.indptr.len() == states + 1,
        bad(
            format!("P[{a}] with {states} rows (indptr of length {})", states + 1),
            format!("indptr of length {}", p.indptr.len()),
        )
    );
    let nnz = p.indices.len();
    ensure!(
        p.data.len() == nnz && p.indptr[0] == 0 && p.indptr[states] as usize == nnz && p.indptr[states] >= 0,
        bad(
            format!("P[{a}] in CSR form: indptr from 0 to nnz, indices and data of length nnz"),
            format!(
                "indptr from {} to {}, {} indices, {} values",
                p.indptr[0],
                p.indptr[states],
                nnz,
                p.data.len()
            ),
        )
    );
    if let Some(s) = p.indptr.windows(2).position(|w| w[1] < w[0]) {
        return Err(bad(
            format!("P[{a}] with a non-decreasing indptr"),
            format!("indptr[{}] < indptr[{s}]", s + 1),
        ));
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
fn check_rows(function: &str, states: usize, transitions: &[Csr<'_>]) -> Result<()> {
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
            function.to_owned(),
            "P",
            "rows of non-negative transition probabilities summing to 1",
            got,
        )),
        None => Ok(()),
    }
}

/// The discount factor: in (0, 1), or exactly 1 where `allow_one`.
pub fn check_discount(function: &str, discount: f64, allow_one: bool) -> Result<()> {
    ensure!(
        discount > 0.0 && (discount < 1.0 || (allow_one && discount == 1.0)),
        FerropsError::value(
            function.to_owned(),
            "discount",
            if allow_one { "a value in (0, 1]" } else { "a value in (0, 1)" },
            format!("{discount}"),
        )
    );
    Ok(())
}

/// A tolerance: positive and finite.
pub(super) fn check_tolerance(function: &str, argument: &'static str, tolerance: f64) -> Result<()> {
    ensure!(
        tolerance > 0.0 && tolerance.is_finite(),
        FerropsError::value(function.to_owned(), argument, "a positive finite number", format!("{tolerance}"))
    );
    Ok(())
}

/// One finite value per state.
pub(super) fn check_vector(function: &str, argument: &'static str, values: &[f64], states: usize) -> Result<()> {
    ensure!(
        values.len() == states,
        FerropsError::value(
            function.to_owned(),
            argument,
            format!("one value per state ({states})"),
            format!("{} values", values.len()),
        )
    );
    if let Some(s) = values.iter().position(|v| !v.is_finite()) {
        return Err(FerropsError::value(
            function.to_owned(),
            argument,
            "finite values",
            format!("{argument}[{s}] = {}", values[s]),
        ));
    }
    Ok(())
}

/// The values a solver computed after `sweeps` sweeps are still finite: with
/// rewards near float64's limit they overflow (`V` grows to about
/// `|r| / (1 - gamma)`), which the caller's `R` caused.
pub(super) fn check_finite_values(function: &str, values: &[f64], sweeps: usize) -> Result<()> {
    if let Some(s) = values.iter().position(|v| !v.is_finite()) {
        return Err(FerropsError::value(
            function.to_owned(),
            "R",
            "rewards small enough for the values to stay finite in float64 (|V| grows to about max |R| / (1 - discount))",
            format!("V[{s}] = {} after {sweeps} sweeps", values[s]),
        ));
    }
    Ok(())
}

/// One action in `0..A` per state.
pub(super) fn check_policy(function: &str, policy: &[i64], states: usize, actions: usize) -> Result<()> {
    ensure!(
        policy.len() == states,
        FerropsError::value(
            function.to_owned(),
            "policy",
            format!("one action per state ({states})"),
            format!("{} actions", policy.len()),
        )
    );
    if let Some(s) = policy.iter().position(|&a| a < 0 || a as usize >= actions) {
        return Err(FerropsError::value(
            function.to_owned(),
            "policy",
            format!("actions in 0..{actions}"),
            format!("action {} for state {s}", policy[s]),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_models::{csr_from_dense, random_mdp, views, OwnedCsr};
    use super::*;
    use crate::test_rng::Lcg;

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
    fn every_bad_entry_is_caught_and_named() {
        // Several blocks of states, rows of 9 entries (two 4-lane chunks and a
        // tail); each corruption is caught by the block test and named by the
        // search that follows it.
        let states = 2 * STATES_PER_TASK + 100;
        let (mats, reward) = random_mdp(states, 3, 9, 7);
        assert!(Mdp::new("f", states, views(&mats), &reward).is_ok());
        let mut rng = Lcg::new(11);
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
                let (a, s) = (rng.below(3) as usize, rng.below(states as u64) as usize);
                let lo = mats[a].indptr[s] as usize;
                let k = lo + rng.below((mats[a].indptr[s + 1] as usize - lo) as u64) as usize;
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
}
