//! Modified policy iteration with a certified stop (RL-MPI): a Jacobi Bellman
//! backup (the improvement) alternating with a few sweeps of the greedy policy's
//! own backup (a partial evaluation: one action per state, `1/A` of a backup).
//!
//! The stop is the span rule, and it certifies the policy: for `pi` greedy for
//! `V` and `d = TV - V`, MacQueen's bounds give
//! `TV + gamma/(1-gamma) min d <= V_pi <= V* <= TV + gamma/(1-gamma) max d`,
//! so `V* - V_pi <= gamma/(1-gamma) span(d)`, the `bound` a solution reports.
//! Whatever the evaluation sweeps did to `V` (Jacobi, Gauss-Seidel or
//! over-relaxed), the bound is computed from one Jacobi backup of a fixed `V`.

use rayon::prelude::*;

use super::backups::{backup_into, prefetch, prefetch_transitions, PREFETCH_ABOVE_BYTES};
use super::model::{check_discount, check_finite_values, check_policy, check_tolerance, check_vector, Mdp};
use super::STATES_PER_TASK;
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::interrupt::Cancel;

/// States ahead of the one being evaluated whose row a policy sweep asks the
/// cache for: consecutive states read rows of different matrices, `A` streams
/// with gaps that the hardware prefetchers do not follow.
const ROWS_AHEAD: usize = 8;

/// How a partial evaluation sweeps `V <- r_pi + gamma P_pi V`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Evaluation {
    /// Every state from the previous sweep's values, in parallel over blocks.
    Jacobi,
    /// States in order, in place (serial), each moved `omega` of the way to its
    /// backup: Gauss-Seidel at `omega = 1`, successive over-relaxation above.
    Relaxed { omega: f64 },
}

impl Evaluation {
    /// `method` is "jacobi", "gauss-seidel" or "sor" (with `omega` in (0, 2)).
    pub fn parse(function: &'static str, method: &str, omega: f64) -> Result<Self> {
        match method {
            "jacobi" => Ok(Evaluation::Jacobi),
            "gauss-seidel" => Ok(Evaluation::Relaxed { omega: 1.0 }),
            "sor" => {
                ensure!(
                    omega > 0.0 && omega < 2.0,
                    FerropsError::value(function, "omega", "a relaxation factor in (0, 2)", format!("{omega}"))
                );
                Ok(Evaluation::Relaxed { omega })
            }
            other => Err(FerropsError::value(
                function,
                "method",
                "one of 'jacobi', 'gauss-seidel', 'sor'",
                format!("'{other}'"),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct MpiConfig {
    pub discount: f64,
    /// The policy returned is `epsilon`-optimal: `V* - V_pi < epsilon`.
    pub epsilon: f64,
    /// The most evaluation sweeps after each improvement (pymdptoolbox's `max_iter`).
    pub evaluation_sweeps: usize,
    /// The most improvements (backups); the run reports `converged = false` there.
    pub max_improvements: usize,
    pub evaluation: Evaluation,
    /// Also end an evaluation once a sweep's `span(change)` falls below this
    /// share of the last backup's `span(TV - V)`: the greedy policy ignores a
    /// constant shift of `V`, so sweeps that mostly add one are wasted (a fast
    /// solve's choice; pymdptoolbox's evaluation has no such stop: `None`).
    pub span_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MpiSolution {
    /// `TV`, the last backup.
    pub values: Vec<f64>,
    /// Greedy for the `V` of the last backup.
    pub policy: Vec<i64>,
    /// Improvements (backups).
    pub iterations: usize,
    /// Evaluation sweeps, all improvements together.
    pub evaluation_sweeps: usize,
    pub converged: bool,
    /// `span(TV - V)` of the last backup.
    pub residual: f64,
    /// `(min, max)` of `TV - V` of the last backup: with `c = gamma/(1-gamma)`,
    /// `TV + c min <= V_policy <= V* <= TV + c max`.
    pub change: (f64, f64),
    /// `gamma/(1-gamma) span(TV - V)`: proved `V* - V_policy <= bound` everywhere.
    pub bound: f64,
}

/// One Jacobi sweep of a policy's backup, `v_new = r_pi + gamma P_pi v`, in
/// parallel over fixed blocks; returns the (max, min) of `v_new - v`.
pub(super) fn policy_sweep_jacobi(
    mdp: &Mdp<'_>,
    policy: &[i64],
    gamma: f64,
    v: &[f64],
    v_new: &mut [f64],
) -> (f64, f64) {
    let prefetch_values = std::mem::size_of_val(v) > PREFETCH_ABOVE_BYTES;
    v_new
        .par_chunks_mut(STATES_PER_TASK)
        .enumerate()
        .map(|(block, out)| {
            let first = block * STATES_PER_TASK;
            let (mut hi, mut lo) = (f64::NEG_INFINITY, f64::INFINITY);
            for (i, slot) in out.iter_mut().enumerate() {
                let s = first + i;
                prefetch_row(mdp, policy, s + 2 * ROWS_AHEAD);
                if prefetch_values {
                    // Its row was asked for `ROWS_AHEAD` states ago.
                    prefetch_row_values(mdp, policy, s + ROWS_AHEAD, v);
                }
                *slot = mdp.q(s, policy[s] as usize, gamma, v);
                let delta = *slot - v[s];
                hi = hi.max(delta);
                lo = lo.min(delta);
            }
            (hi, lo)
        })
        .reduce(|| (f64::NEG_INFINITY, f64::INFINITY), |x, y| (x.0.max(y.0), x.1.min(y.1)))
}

/// One in-place sweep of a policy's backup in state order, each state moved
/// `omega` of the way to its backup; returns the (max, min) change. Serial.
fn policy_sweep_relaxed(mdp: &Mdp<'_>, policy: &[i64], gamma: f64, omega: f64, v: &mut [f64]) -> (f64, f64) {
    let (mut hi, mut lo) = (f64::NEG_INFINITY, f64::INFINITY);
    for s in 0..v.len() {
        prefetch_row(mdp, policy, s + ROWS_AHEAD);
        let target = mdp.q(s, policy[s] as usize, gamma, v);
        let step = omega * (target - v[s]);
        v[s] += step;
        hi = hi.max(step);
        lo = lo.min(step);
    }
    (hi, lo)
}

/// Asks the cache for the row of state `s` under `policy`.
#[inline(always)]
fn prefetch_row(mdp: &Mdp<'_>, policy: &[i64], s: usize) {
    if let Some(&a) = policy.get(s) {
        let p = &mdp.transitions[a as usize];
        prefetch_transitions(p, p.indptr[s] as usize, p.indptr[s + 1] as usize);
    }
}

/// Asks the cache for the values the row of state `s` under `policy` reads:
/// random reads that otherwise wait on memory once `V` outgrows L2.
#[inline(always)]
fn prefetch_row_values(mdp: &Mdp<'_>, policy: &[i64], s: usize, v: &[f64]) {
    if let Some(&a) = policy.get(s) {
        let p = &mdp.transitions[a as usize];
        for &j in &p.indices[p.indptr[s] as usize..p.indptr[s + 1] as usize] {
            prefetch(v, j as usize);
        }
    }
}

/// Modified policy iteration (RL-MPI) from `V_0` (`initial_value`; default
/// pymdptoolbox's `min r / (1 - gamma)`, a lower bound of `V*`, 0 when gamma = 1).
/// With `initial_policy`, that policy is evaluated (the sweeps of one partial
/// evaluation) before the first improvement. Each improvement is a Jacobi
/// backup `TV` with its greedy policy; the run stops once
/// `span(TV - V) < epsilon (1 - gamma) / gamma` (`epsilon` when gamma = 1, as
/// pymdptoolbox), else sets `V = TV` and sweeps the greedy policy's backup
/// until `max |change| < epsilon (1 - gamma) / gamma` (never at gamma = 1) or `evaluation_sweeps`
/// sweeps (pymdptoolbox's `_evalPolicyIterative`). Looks at `cancel` before each
/// sweep.
pub fn modified_policy_iteration(
    function: &str,
    mdp: &Mdp<'_>,
    config: MpiConfig,
    initial_value: Option<&[f64]>,
    initial_policy: Option<&[i64]>,
    cancel: &Cancel,
) -> Result<MpiSolution> {
    let gamma = config.discount;
    check_discount(function, gamma, true)?;
    check_tolerance(function, "epsilon", config.epsilon)?;
    for (name, count) in [("max_iter", config.evaluation_sweeps), ("max_improvements", config.max_improvements)] {
        ensure!(count != 0, FerropsError::value(function.to_owned(), name, "a positive count", "0"));
    }
    let n = mdp.states;
    let mut v = match initial_value {
        Some(v0) => {
            check_vector(function, "initial_value", v0, n)?;
            v0.to_vec()
        }
        None if gamma == 1.0 => vec![0.0; n],
        None => vec![mdp.reward.iter().copied().fold(f64::INFINITY, f64::min) / (1.0 - gamma); n],
    };
    let mut policy = match initial_policy {
        Some(pi) => {
            check_policy(function, pi, n, mdp.actions())?;
            pi.to_vec()
        }
        None => vec![0i64; n],
    };
    if n == 0 {
        let bound = 0.0;
        let (values, iterations) = (v, 0);
        return Ok(MpiSolution {
            values,
            policy,
            iterations,
            evaluation_sweeps: 0,
            converged: true,
            residual: 0.0,
            change: (0.0, 0.0),
            bound,
        });
    }
    let threshold = if gamma == 1.0 { config.epsilon } else { config.epsilon * (1.0 - gamma) / gamma };
    // pymdptoolbox's evaluation tolerance, 0 (every sweep runs) when gamma = 1.
    let evaluation_threshold = config.epsilon * (1.0 - gamma) / gamma;
    let mut v_new = vec![0.0; n];
    let mut sweeps = 0;
    if initial_policy.is_some() {
        let stops = (evaluation_threshold, 0.0);
        sweeps += evaluate(function, mdp, &policy, &config, stops, &mut v, &mut v_new, cancel)?;
    }
    let mut iterations = 0;
    loop {
        cancel.check(function)?;
        iterations += 1;
        let (hi, lo) = backup_into(mdp, gamma, &v, &mut v_new, &mut policy);
        std::mem::swap(&mut v, &mut v_new);
        if !(hi.is_finite() && lo.is_finite()) {
            check_finite_values(function, &v, iterations + sweeps)?;
        }
        let residual = hi - lo;
        let converged = residual < threshold;
        if converged || iterations == config.max_improvements {
            let bound = if gamma < 1.0 { gamma / (1.0 - gamma) * residual } else { f64::INFINITY };
            return Ok(MpiSolution {
                values: v,
                policy,
                iterations,
                evaluation_sweeps: sweeps,
                converged,
                residual,
                change: (lo, hi),
                bound,
            });
        }
        let stops = (evaluation_threshold, config.span_ratio.map_or(0.0, |ratio| ratio * residual));
        sweeps += evaluate(function, mdp, &policy, &config, stops, &mut v, &mut v_new, cancel)?;
    }
}

/// A partial evaluation of `policy` from `v` (left in `v`); returns the sweeps.
/// It ends once a sweep changes no value by `stops.0` or more, or its change has
/// a span below `stops.1`.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    function: &str,
    mdp: &Mdp<'_>,
    policy: &[i64],
    config: &MpiConfig,
    stops: (f64, f64),
    v: &mut Vec<f64>,
    v_new: &mut Vec<f64>,
    cancel: &Cancel,
) -> Result<usize> {
    for sweep in 1..=config.evaluation_sweeps {
        cancel.check(function)?;
        let (hi, lo) = match config.evaluation {
            Evaluation::Jacobi => {
                let change = policy_sweep_jacobi(mdp, policy, config.discount, v, v_new);
                std::mem::swap(v, v_new);
                change
            }
            Evaluation::Relaxed { omega } => policy_sweep_relaxed(mdp, policy, config.discount, omega, v),
        };
        if !(hi.is_finite() && lo.is_finite()) {
            if let Evaluation::Relaxed { omega } = config.evaluation {
                // Over-relaxation can diverge where Gauss-Seidel converges:
                // blame omega, not the rewards.
                if omega > 1.0 {
                    return Err(FerropsError::value(
                        function.to_owned(),
                        "omega",
                        "a relaxation factor under which the evaluation converges (1: Gauss-Seidel)",
                        format!("omega = {omega}: the values left float64 after {sweep} sweeps"),
                    ));
                }
            }
            check_finite_values(function, v, sweep)?;
        }
        if hi.abs().max(lo.abs()) < stops.0 || hi - lo < stops.1 {
            return Ok(sweep);
        }
    }
    Ok(config.evaluation_sweeps)
}

#[cfg(test)]
mod tests {
    use super::super::test_models::{forest, random_mdp, views};
    use super::super::{evaluate_policy_iterative, value_iteration, StopRule, Sweep};
    use super::*;

    fn config(evaluation: Evaluation) -> MpiConfig {
        MpiConfig {
            discount: 0.95,
            epsilon: 1e-3,
            evaluation_sweeps: 10,
            max_improvements: 10_000,
            evaluation,
            span_ratio: None,
        }
    }

    #[test]
    fn the_bound_holds_for_every_evaluation() {
        let (mats, r) = random_mdp(3000, 4, 5, 9);
        let mdp = Mdp::new("f", 3000, views(&mats), &r).unwrap();
        let exact =
            value_iteration(&mdp, 0.95, 1e-9, 100_000, None, StopRule::SupNorm, Sweep::Jacobi, &Cancel::new()).unwrap();
        for evaluation in [Evaluation::Jacobi, Evaluation::Relaxed { omega: 1.0 }, Evaluation::Relaxed { omega: 1.3 }] {
            let sol = modified_policy_iteration("f", &mdp, config(evaluation), None, None, &Cancel::new()).unwrap();
            assert!(sol.converged && sol.bound < 1e-3, "{evaluation:?}: {}", sol.bound);
            let (v_pi, _, _) =
                evaluate_policy_iterative("f", &mdp, &sol.policy, 0.95, 1e-9, 100_000, &Cancel::new()).unwrap();
            let gap = exact.values.iter().zip(&v_pi).map(|(a, b)| a - b).fold(f64::NEG_INFINITY, f64::max);
            assert!(gap <= sol.bound + 1e-8, "{evaluation:?}: {gap} > {}", sol.bound);
            // V* and V_pi lie between TV + c min(TV - V) and TV + c max(TV - V).
            let c = 0.95 / 0.05;
            for (s, ((v, v_star), v_pi)) in sol.values.iter().zip(&exact.values).zip(&v_pi).enumerate() {
                let (low, high) = (v + c * sol.change.0 - 1e-8, v + c * sol.change.1 + 1e-8);
                assert!(low <= *v_star && v_star <= &high && low <= *v_pi && v_pi <= &high, "{s}");
            }
        }
    }

    #[test]
    fn forest_matches_pymdptoolbox() {
        // mdptoolbox.mdp.PolicyIterationModified(P, R, 0.9) on forest(): V and policy.
        let (mats, r) = forest();
        let mdp = Mdp::new("f", 3, views(&mats), &r).unwrap();
        let cfg = MpiConfig { discount: 0.9, epsilon: 0.01, ..config(Evaluation::Jacobi) };
        let sol = modified_policy_iteration("f", &mdp, cfg, None, None, &Cancel::new()).unwrap();
        let expected = [21.81408652, 25.05408652, 29.05408652];
        for (v, e) in sol.values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-7, "{:?}", sol.values);
        }
        assert_eq!((sol.policy, sol.iterations), (vec![0, 0, 0], 3));
    }

    #[test]
    fn same_result_for_any_thread_count() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (mats, r) = random_mdp(5000, 3, 6, 7);
        let mdp = Mdp::new("f", 5000, views(&mats), &r).unwrap();
        let mut results = Vec::new();
        for threads in [1, 2] {
            crate::parallel::set_num_threads(threads).unwrap();
            results.push(crate::parallel::install(|| {
                modified_policy_iteration("f", &mdp, config(Evaluation::Jacobi), None, None, &Cancel::new()).unwrap()
            }));
        }
        assert_eq!(results[0], results[1]);
    }

    #[test]
    fn bad_arguments_and_cancel() {
        let (mats, r) = forest();
        let mdp = Mdp::new("f", 3, views(&mats), &r).unwrap();
        assert!(Evaluation::parse("f", "sor", 2.0).is_err());
        assert!(Evaluation::parse("f", "newton", 1.0).is_err());
        let err =
            modified_policy_iteration("f", &mdp, config(Evaluation::Jacobi), None, Some(&[0, 2, 0]), &Cancel::new())
                .unwrap_err();
        assert!(err.to_string().contains("'policy'") || err.to_string().contains("actions in 0..2"), "{err}");
        let cancel = Cancel::new();
        cancel.raise();
        let err = modified_policy_iteration("f", &mdp, config(Evaluation::Jacobi), None, None, &cancel).unwrap_err();
        assert_eq!(err, FerropsError::interrupted("f"));
    }
}
