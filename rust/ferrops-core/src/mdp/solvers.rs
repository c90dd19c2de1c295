//! The solvers (RL-VI-STOP, RL-GS, RL-PI): value iteration with Jacobi or
//! Gauss-Seidel sweeps and two stopping rules, iterative policy evaluation, and the
//! linear system of a policy for an exact solve.
//!
//! Jacobi sweeps run over fixed blocks of states in parallel (each state's result
//! depends on nothing but `V`), so results are the same for any thread count;
//! Gauss-Seidel is serial by definition.

use rayon::prelude::*;

use super::backups::{backup_into, prefetch_transitions};
use super::model::{check_discount, check_finite_values, check_policy, check_tolerance, check_vector, Mdp};
use super::STATES_PER_TASK;
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::interrupt::Cancel;
use crate::simd::{dispatch, SimdKernel};

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
/// Looks at `cancel` before each sweep.
#[allow(clippy::too_many_arguments)]
pub fn value_iteration(
    mdp: &Mdp<'_>,
    discount: f64,
    epsilon: f64,
    max_iter: usize,
    initial_value: Option<&[f64]>,
    stop: StopRule,
    sweep: Sweep,
    cancel: &Cancel,
) -> Result<Solution> {
    const F: &str = "value_iteration";
    check_discount(F, discount, stop == StopRule::Span)?;
    check_tolerance(F, "epsilon", epsilon)?;
    ensure!(max_iter != 0, FerropsError::value(F, "max_iter", "a positive iteration count", "0"));
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
        cancel.check(F)?;
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
        // A change of values that overflowed is infinite: the one test per sweep
        // that a value may have left float64 (the scan runs only then).
        if !(hi.is_finite() && lo.is_finite()) {
            check_finite_values(F, &v, iterations)?;
        }
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

/// States ahead of the one being evaluated whose row an iterative policy
/// evaluation asks the cache for: consecutive states read rows of different
/// matrices, `A` streams with gaps that the hardware prefetchers do not follow.
const PE_ROWS_AHEAD: usize = 8;

/// Iterative policy evaluation (RL-PI): Jacobi sweeps `V <- r_pi + gamma P_pi V`
/// from `V = 0` until `||V_{k+1} - V_k||_inf < tol (1 - gamma) / (2 gamma)`, which
/// puts `V` within `tol` of `V_pi`. Returns `(V, sweeps, converged)`. Errors name
/// `function`, the public function served (policy evaluation or iteration); looks
/// at `cancel` before each sweep.
pub fn evaluate_policy_iterative(
    function: &str,
    mdp: &Mdp<'_>,
    policy: &[i64],
    discount: f64,
    tol: f64,
    max_iter: usize,
    cancel: &Cancel,
) -> Result<(Vec<f64>, usize, bool)> {
    check_discount(function, discount, false)?;
    check_policy(function, policy, mdp.states, mdp.actions())?;
    check_tolerance(function, "epsilon", tol)?;
    ensure!(
        max_iter != 0,
        FerropsError::value(function.to_owned(), "max_iter", "a positive iteration count", "0")
    );
    let n = mdp.states;
    let threshold = tol * (1.0 - discount) / (2.0 * discount);
    let (mut v, mut v_new) = (vec![0.0; n], vec![0.0; n]);
    if n == 0 {
        return Ok((v, 0, true));
    }
    for sweep in 1..=max_iter {
        cancel.check(function)?;
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
        if !change.is_finite() {
            check_finite_values(function, &v, sweep)?;
        }
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
/// solve of `(I - gamma P_pi) V = r_pi`. Errors name `function`.
pub fn policy_system(function: &str, mdp: &Mdp<'_>, policy: &[i64]) -> Result<PolicySystem> {
    check_policy(function, policy, mdp.states, mdp.actions())?;
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
mod tests {
    use super::super::q_values;
    use super::super::test_models::{forest, random_mdp, views};
    use super::*;

    #[test]
    fn forest_matches_pymdptoolbox_docstring() {
        let (mats, r) = forest();
        let mdp = Mdp::new("value_iteration", 3, views(&mats), &r).unwrap();
        let sol = value_iteration(&mdp, 0.96, 0.01, 1000, None, StopRule::Span, Sweep::Jacobi, &Cancel::new()).unwrap();
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
                value_iteration(&mdp, 0.95, 1e-6, 1000, None, StopRule::SupNorm, Sweep::Jacobi, &Cancel::new()).unwrap()
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
        let run = |sweep| {
            value_iteration(&mdp, 0.99, 1e-6, 100000, None, StopRule::SupNorm, sweep, &Cancel::new()).unwrap()
        };
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
    fn iterative_evaluation_solves_the_linear_system() {
        let (mats, r) = forest();
        let mdp = Mdp::new("policy_evaluation", 3, views(&mats), &r).unwrap();
        let (v, _, converged) = evaluate_policy_iterative("f", &mdp, &[0, 0, 0], 0.9, 1e-10, 100000, &Cancel::new()).unwrap();
        assert!(converged);
        // Residual of V = r_pi + gamma P_pi V.
        let q = q_values(&mdp, 0.9, &v).unwrap();
        for s in 0..3 {
            assert!((q[s * 2] - v[s]).abs() < 1e-9);
        }
    }

    #[test]
    fn a_raised_token_stops_every_solver() {
        let (mats, r) = random_mdp(500, 3, 4, 3);
        let mdp = Mdp::new("value_iteration", 500, views(&mats), &r).unwrap();
        let cancel = Cancel::new();
        cancel.raise();
        for sweep in [Sweep::Jacobi, Sweep::GaussSeidel] {
            let err = value_iteration(&mdp, 0.99, 1e-6, 1000, None, StopRule::SupNorm, sweep, &cancel).unwrap_err();
            assert_eq!(err, FerropsError::interrupted("value_iteration"));
        }
        let err = evaluate_policy_iterative("policy_iteration", &mdp, &[0; 500], 0.9, 1e-6, 1000, &cancel).unwrap_err();
        assert_eq!(err, FerropsError::interrupted("policy_iteration"));
    }

    #[test]
    fn values_that_overflow_blame_the_rewards() {
        let (mats, _) = forest();
        let huge = [1e308; 6];
        let mdp = Mdp::new("value_iteration", 3, views(&mats), &huge).unwrap();
        for sweep in [Sweep::Jacobi, Sweep::GaussSeidel] {
            let err = value_iteration(&mdp, 0.9, 0.01, 1000, None, StopRule::SupNorm, sweep, &Cancel::new()).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("value_iteration(): argument 'R': expected rewards small enough"), "{text}");
            assert!(text.contains("= inf after "), "{text}");
        }
        let err = evaluate_policy_iterative("policy_iteration", &mdp, &[0; 3], 0.9, 1e-6, 1000, &Cancel::new()).unwrap_err();
        assert!(err.to_string().starts_with("policy_iteration(): argument 'R'"), "{err}");
        // A change that overflows between finite values is not an error.
        let (mats, r) = forest();
        let mdp = Mdp::new("value_iteration", 3, views(&mats), &r).unwrap();
        let start = [-1e308, 1e308, -1e308];
        let sol = value_iteration(&mdp, 0.9, 0.01, 3, Some(&start), StopRule::Span, Sweep::Jacobi, &Cancel::new()).unwrap();
        assert!(sol.values.iter().all(|v| v.is_finite()));
    }
}
