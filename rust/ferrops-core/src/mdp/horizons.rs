//! Criteria other than the discounted infinite horizon: relative value
//! iteration for the average reward (RL-RVI) and backward induction over a
//! finite horizon (RL-FH), both on the Jacobi backup of [`super::backups`].

use super::backups::backup_into;
use super::model::{check_discount, check_finite_values, check_tolerance, check_vector, Mdp};
use crate::buffer;
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::interrupt::Cancel;

#[derive(Debug, Clone, PartialEq)]
pub struct RviSolution {
    /// Relative values (pymdptoolbox's `V`: `TV_{k-1}` shifted by the previous gain).
    pub values: Vec<f64>,
    pub policy: Vec<i64>,
    pub iterations: usize,
    pub converged: bool,
    /// `span(TV - V)` of the last iteration.
    pub residual: f64,
    /// pymdptoolbox's `average_reward`: `gain + min(V_next - V)` = `min(TV - V)`.
    pub average_reward: f64,
    /// `max(TV - V)`: with the average reward, brackets the optimal gain of a
    /// unichain MDP (Puterman, Theorem 8.5.5).
    pub average_reward_upper: f64,
}

/// Relative value iteration (RL-RVI), pymdptoolbox's `RelativeValueIteration`:
/// from `V = initial_value` (default 0) and gain 0, `V_next = TV - gain`
/// (undiscounted backup), stop once `span(V_next - V) < epsilon` or after
/// `max_iter`; then `V = V_next` and `gain = V[S - 1]`.
pub fn relative_value_iteration(
    mdp: &Mdp<'_>,
    epsilon: f64,
    max_iter: usize,
    initial_value: Option<&[f64]>,
    cancel: &Cancel,
) -> Result<RviSolution> {
    const F: &str = "relative_value_iteration";
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
    let mut policy = vec![0i64; n];
    if n == 0 {
        let (average_reward, average_reward_upper) = (0.0, 0.0);
        return Ok(RviSolution {
            values: v,
            policy,
            iterations: 0,
            converged: true,
            residual: 0.0,
            average_reward,
            average_reward_upper,
        });
    }
    let mut v_next = vec![0.0; n];
    let mut gain = 0.0;
    for iterations in 1..=max_iter {
        cancel.check(F)?;
        backup_into(mdp, 1.0, &v, &mut v_next, &mut policy);
        // The change is taken after the shift, as pymdptoolbox's, so the
        // average reward is its value to the last bit.
        let (mut hi, mut lo) = (f64::NEG_INFINITY, f64::INFINITY);
        for (next, old) in v_next.iter_mut().zip(&v) {
            *next -= gain;
            let delta = *next - old;
            hi = hi.max(delta);
            lo = lo.min(delta);
        }
        if !(hi.is_finite() && lo.is_finite()) {
            check_finite_values(F, &v_next, iterations)?;
        }
        let residual = hi - lo;
        let converged = residual < epsilon;
        std::mem::swap(&mut v, &mut v_next);
        if converged || iterations == max_iter {
            return Ok(RviSolution {
                values: v,
                policy,
                iterations,
                converged,
                residual,
                average_reward: gain + lo,
                average_reward_upper: gain + hi,
            });
        }
        gain = v[n - 1];
    }
    unreachable!("the loop returns at max_iter")
}

/// Backward induction over `horizon` stages (RL-FH), pymdptoolbox's
/// `FiniteHorizon`: `V_N = terminal` (default 0), `V_n = max_a r + gamma P V_{n+1}`
/// and `policy_n` its greedy actions, for `n = N - 1` down to 0. Returns the
/// values stage-major `(N + 1) x S` and the policies `N x S`.
pub fn finite_horizon(
    mdp: &Mdp<'_>,
    discount: f64,
    horizon: usize,
    terminal: Option<&[f64]>,
    cancel: &Cancel,
) -> Result<(Vec<f64>, Vec<i64>)> {
    const F: &str = "finite_horizon";
    check_discount(F, discount, true)?;
    ensure!(horizon != 0, FerropsError::value(F, "N", "a horizon of at least 1 stage", "0"));
    let n = mdp.states;
    let mut values = buffer::try_zeroed::<f64>(F, "the values of every stage", &[horizon + 1, n])?;
    let mut policies = buffer::try_zeroed::<i64>(F, "the policies of every stage", &[horizon, n])?;
    if let Some(h) = terminal {
        check_vector(F, "h", h, n)?;
        values[horizon * n..].copy_from_slice(h);
    }
    if n == 0 {
        return Ok((values, policies));
    }
    for stage in (0..horizon).rev() {
        cancel.check(F)?;
        let (now, later) = values.split_at_mut((stage + 1) * n);
        let (hi, lo) =
            backup_into(mdp, discount, &later[..n], &mut now[stage * n..], &mut policies[stage * n..(stage + 1) * n]);
        if !(hi.is_finite() && lo.is_finite()) {
            check_finite_values(F, &now[stage * n..], horizon - stage)?;
        }
    }
    Ok((values, policies))
}

#[cfg(test)]
mod tests {
    use super::super::test_models::{forest, views};
    use super::*;

    #[test]
    fn forest_matches_pymdptoolbox() {
        let (mats, r) = forest();
        let mdp = Mdp::new("f", 3, views(&mats), &r).unwrap();
        // mdptoolbox.mdp.RelativeValueIteration(P, R) on forest().
        let sol = relative_value_iteration(&mdp, 0.01, 1000, None, &Cancel::new()).unwrap();
        assert_eq!(sol.policy, vec![0, 0, 0]);
        assert!((sol.average_reward - 3.2399999999999993).abs() < 1e-12, "{}", sol.average_reward);
        // mdptoolbox.mdp.FiniteHorizon(P, R, 0.9, 3) on forest().
        let (v, pi) = finite_horizon(&mdp, 0.9, 3, None, &Cancel::new()).unwrap();
        let stage0 = [2.6973, 5.9373, 9.9373];
        for (got, want) in v[..3].iter().zip(stage0) {
            assert!((got - want).abs() < 1e-4, "{v:?}");
        }
        assert_eq!(pi, vec![0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert!(finite_horizon(&mdp, 0.9, 0, None, &Cancel::new()).is_err());
        let cancel = Cancel::new();
        cancel.raise();
        assert_eq!(
            finite_horizon(&mdp, 0.9, 3, None, &cancel).unwrap_err(),
            FerropsError::interrupted("finite_horizon")
        );
    }
}
