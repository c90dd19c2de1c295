//! Temporal-difference learning (RL-TD) on episodes simulated from the MDP's own
//! transitions: TD(0) state values of a given policy, Sarsa and n-step Sarsa,
//! Expected Sarsa, Q-learning on- and off-policy, and pymdptoolbox's `QLearning`.
//!
//! One trajectory is learnt from in order, so a run is serial by nature; episode
//! `e` draws from its own stream keyed by `(seed, e)` (as Monte Carlo's), so a
//! result depends on the seed only. Step sizes follow RL-SA: a constant `alpha`,
//! or `alpha / k^power` at the `k`-th update of a pair (`power` in (1/2, 1]:
//! `sum a_k = inf`, `sum a_k^2 < inf`, the Robbins-Monro conditions).

use super::model::{check_discount, Mdp};
use super::monte_carlo::{check_step_rewards, greedy, Simulator, Stream};
use crate::buffer;
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::interrupt::{Cancel, Checkpoint};

/// How far a row of a given policy may sum from 1.
const POLICY_SUM_TOLERANCE: f64 = 1e-6;

#[derive(Debug, Clone, Copy)]
pub enum TdMethod<'a> {
    /// TD(0) values of the policy with probabilities `policy[s * A + a]`.
    Td0 { policy: &'a [f64] },
    /// n-step Sarsa (`n = 1`: Sarsa), epsilon-greedy in `Q`; `n_step`: called as
    /// `n_step_sarsa` (errors name it, whatever `n`).
    Sarsa { n: usize, n_step: bool },
    /// Expected Sarsa: the target averages `Q(s', .)` over the epsilon-greedy policy.
    ExpectedSarsa,
    /// Q-learning; actions from `behaviour` (probabilities per state, off-policy)
    /// or, without one, epsilon-greedy in `Q` (on-policy).
    QLearning { behaviour: Option<&'a [f64]> },
}

impl TdMethod<'_> {
    pub fn function_name(&self) -> &'static str {
        match self {
            TdMethod::Td0 { .. } => "td0",
            TdMethod::Sarsa { n_step: false, .. } => "sarsa",
            TdMethod::Sarsa { n_step: true, .. } => "n_step_sarsa",
            TdMethod::ExpectedSarsa => "expected_sarsa",
            TdMethod::QLearning { .. } => "q_learning",
        }
    }
}

/// `alpha` constant, or `alpha / k^power` at the `k`-th update of a pair (state
/// for TD(0)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSize {
    pub alpha: f64,
    pub power: Option<f64>,
}

impl StepSize {
    #[inline(always)]
    fn at(&self, k: i64) -> f64 {
        match self.power {
            None => self.alpha,
            Some(1.0) => self.alpha / k as f64,
            Some(p) => self.alpha / (k as f64).powf(p),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TdConfig<'a> {
    pub discount: f64,
    pub episodes: usize,
    /// The most steps of an episode; it ends earlier on a terminal state.
    pub episode_length: usize,
    /// Exploration of the epsilon-greedy policies.
    pub epsilon: f64,
    pub step: StepSize,
    pub seed: u64,
    /// States where an episode ends (their value is 0).
    pub terminal: &'a [i64],
}

#[derive(Debug, Clone, PartialEq)]
pub struct TdResult {
    /// `Q` row-major `(S, A)`, or `V` (S) for TD(0).
    pub values: Vec<f64>,
    /// Updates of each pair (of each state for TD(0)).
    pub updates: Vec<i64>,
    /// Simulated steps, all episodes together.
    pub steps: usize,
}

fn check_distribution(function: &'static str, argument: &'static str, probs: &[f64], mdp: &Mdp<'_>) -> Result<()> {
    let (states, actions) = (mdp.states(), mdp.actions());
    ensure!(
        probs.len() == states * actions,
        FerropsError::value(
            function,
            argument,
            format!("action probabilities per state: {states} x {actions} values"),
            format!("{} values", probs.len()),
        )
    );
    for (s, row) in probs.chunks_exact(actions.max(1)).enumerate() {
        let total: f64 = row.iter().sum();
        ensure!(
            row.iter().all(|&p| p >= 0.0) && (total - 1.0).abs() <= POLICY_SUM_TOLERANCE,
            FerropsError::value(
                function,
                argument,
                "rows of non-negative action probabilities summing to 1",
                format!("row {s}: {row:?}"),
            )
        );
    }
    Ok(())
}

fn check(
    function: &'static str,
    mdp: &Mdp<'_>,
    rewards: &[&[f64]],
    method: &TdMethod<'_>,
    c: &TdConfig<'_>,
) -> Result<()> {
    check_discount(function, c.discount, true)?;
    check_step_rewards(function, mdp, rewards)?;
    for (name, value) in [("episodes", c.episodes), ("episode_length", c.episode_length)] {
        ensure!(value != 0, FerropsError::value(function, name, "a positive count", "0"));
    }
    ensure!(
        (0.0..=1.0).contains(&c.epsilon),
        FerropsError::value(function, "epsilon", "a value in [0, 1]", format!("{}", c.epsilon))
    );
    ensure!(
        c.step.alpha > 0.0 && c.step.alpha <= 1.0,
        FerropsError::value(function, "alpha", "a step size in (0, 1]", format!("{}", c.step.alpha))
    );
    if let Some(p) = c.step.power {
        ensure!(
            p > 0.5 && p <= 1.0,
            FerropsError::value(
                function,
                "power",
                "an exponent in (1/2, 1] (Robbins-Monro: sum a_k = inf, sum a_k^2 < inf)",
                format!("{p}")
            )
        );
    }
    if let Some(&s) = c.terminal.iter().find(|&&s| s < 0 || s as usize >= mdp.states()) {
        return Err(FerropsError::value(
            function,
            "terminal",
            format!("states in 0..{}", mdp.states()),
            format!("{s}"),
        ));
    }
    ensure!(
        c.discount < 1.0 || !c.terminal.is_empty(),
        FerropsError::value(
            function,
            "discount",
            "a value below 1, or terminal states (with discount 1 an episode that never ends has no finite return)",
            "1 without terminal states",
        )
    );
    match method {
        TdMethod::Td0 { policy } => check_distribution(function, "policy", policy, mdp)?,
        TdMethod::QLearning { behaviour: Some(b) } => check_distribution(function, "behaviour", b, mdp)?,
        TdMethod::Sarsa { n, .. } => ensure!(*n != 0, FerropsError::value(function, "n", "a positive step count", "0")),
        _ => {}
    }
    Ok(())
}

/// What a learner needs at every step.
struct Learner<'a> {
    sim: Simulator<'a>,
    actions: usize,
    terminal: Vec<bool>,
    config: TdConfig<'a>,
}

impl Learner<'_> {
    fn sample(&self, probs: &[f64], rng: &mut Stream) -> usize {
        let u = rng.uniform();
        let mut acc = 0.0;
        let mut last = 0;
        for (a, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                acc += p;
                last = a;
                if u < acc {
                    return a;
                }
            }
        }
        last
    }

    fn epsilon_greedy(&self, q: &[f64], s: usize, rng: &mut Stream) -> usize {
        if self.config.epsilon > 0.0 && rng.uniform() < self.config.epsilon {
            rng.below(self.actions)
        } else {
            greedy(&q[s * self.actions..(s + 1) * self.actions])
        }
    }

    /// `sum_a pi(a|s) Q(s, a)` for the epsilon-greedy `pi` of `Q`.
    fn expected_q(&self, q: &[f64], s: usize) -> f64 {
        let row = &q[s * self.actions..(s + 1) * self.actions];
        let eps = self.config.epsilon;
        let mean = row.iter().sum::<f64>() / self.actions as f64;
        (1.0 - eps) * row[greedy(row)] + eps * mean
    }

    /// A uniform non-terminal start state.
    fn start(&self, rng: &mut Stream) -> usize {
        loop {
            let s = rng.below(self.terminal.len());
            if !self.terminal[s] {
                return s;
            }
        }
    }
}

/// Runs a TD method (RL-TD) on `episodes` episodes from uniform non-terminal
/// states, each ending at a terminal state or after `episode_length` steps (a
/// cut episode bootstraps from where it stopped). Stops with
/// [`FerropsError::Interrupted`] once `cancel` is raised.
pub fn td_learning(
    mdp: &Mdp<'_>,
    rewards: &[&[f64]],
    method: TdMethod<'_>,
    config: TdConfig<'_>,
    cancel: &Cancel,
) -> Result<TdResult> {
    let function = method.function_name();
    check(function, mdp, rewards, &method, &config)?;
    let (states, actions) = (mdp.states(), mdp.actions());
    let mut terminal = vec![false; states];
    for &s in config.terminal {
        terminal[s as usize] = true;
    }
    ensure!(
        states == 0 || terminal.iter().any(|&t| !t),
        FerropsError::value(function, "terminal", "at least one state that is not terminal", "every state")
    );
    let width = if matches!(method, TdMethod::Td0 { .. }) { 1 } else { actions };
    let mut values = buffer::try_zeroed::<f64>(function, "the value estimates", &[states, width])?;
    let mut updates = buffer::try_zeroed::<i64>(function, "the update counts", &[states, width])?;
    if states == 0 {
        return Ok(TdResult { values, updates, steps: 0 });
    }
    let learner = Learner { sim: Simulator { mdp, rewards }, actions, terminal, config };
    let mut checkpoint = cancel.checkpoint(function);
    let steps = match method {
        TdMethod::Sarsa { n, .. } => n_step_sarsa(&learner, n, &mut values, &mut updates, &mut checkpoint)?,
        _ => one_step(&learner, method, &mut values, &mut updates, &mut checkpoint)?,
    };
    Ok(TdResult { values, updates, steps })
}

/// TD(0), Expected Sarsa and Q-learning: one-step targets, updated at each step.
fn one_step(
    l: &Learner<'_>,
    method: TdMethod<'_>,
    values: &mut [f64],
    updates: &mut [i64],
    checkpoint: &mut Checkpoint<'_>,
) -> Result<usize> {
    let (gamma, actions) = (l.config.discount, l.actions);
    let mut steps = 0;
    for e in 0..l.config.episodes {
        let mut rng = Stream::new(l.config.seed, e as u64);
        let mut s = l.start(&mut rng);
        for _ in 0..l.config.episode_length {
            checkpoint.tick(1)?;
            steps += 1;
            let a = match method {
                TdMethod::Td0 { policy } => l.sample(&policy[s * actions..(s + 1) * actions], &mut rng),
                TdMethod::QLearning { behaviour: Some(b) } => l.sample(&b[s * actions..(s + 1) * actions], &mut rng),
                _ => l.epsilon_greedy(values, s, &mut rng),
            };
            let (next, r) = l.sim.step(s, a, &mut rng);
            let ends = l.terminal[next];
            let ahead = if ends {
                0.0
            } else {
                match method {
                    TdMethod::Td0 { .. } => values[next],
                    TdMethod::ExpectedSarsa => l.expected_q(values, next),
                    _ => {
                        let row = &values[next * actions..(next + 1) * actions];
                        row[greedy(row)]
                    }
                }
            };
            let slot = if matches!(method, TdMethod::Td0 { .. }) { s } else { s * actions + a };
            updates[slot] += 1;
            let alpha = l.config.step.at(updates[slot]);
            values[slot] += alpha * (r + gamma * ahead - values[slot]);
            if ends {
                break;
            }
            s = next;
        }
    }
    Ok(steps)
}

/// n-step Sarsa (Sutton and Barto, section 7.2): the pair of step `t` is updated
/// at step `t + n` towards `sum_{i<n} gamma^i r_{t+i+1} + gamma^n Q(s_{t+n}, a_{t+n})`,
/// the sum cut at a terminal state (no bootstrap) or at the episode's last step
/// (bootstrap from the pair reached there).
fn n_step_sarsa(
    l: &Learner<'_>,
    n: usize,
    q: &mut [f64],
    updates: &mut [i64],
    checkpoint: &mut Checkpoint<'_>,
) -> Result<usize> {
    let (gamma, actions) = (l.config.discount, l.actions);
    let length = l.config.episode_length;
    // The pairs and rewards of one episode: at most `length + 1` pairs.
    let mut pairs: Vec<usize> = Vec::with_capacity(length.min(1 << 12) + 1);
    let mut rewards: Vec<f64> = Vec::with_capacity(length.min(1 << 12));
    buffer::checked_len::<(usize, f64)>(checkpoint.function().to_owned(), "the steps of one episode", &[length])?;
    let mut steps = 0;
    for e in 0..l.config.episodes {
        let mut rng = Stream::new(l.config.seed, e as u64);
        pairs.clear();
        rewards.clear();
        let s0 = l.start(&mut rng);
        pairs.push(s0 * actions + l.epsilon_greedy(q, s0, &mut rng));
        // `end`: the last step, once known; `terminal_end`: it reached a terminal state.
        let mut end = usize::MAX;
        let mut terminal_end = false;
        let mut t = 0;
        loop {
            if t < end {
                checkpoint.tick(1)?;
                steps += 1;
                let pair = pairs[t];
                let (next, r) = l.sim.step(pair / actions, pair % actions, &mut rng);
                rewards.push(r);
                if l.terminal[next] {
                    end = t + 1;
                    terminal_end = true;
                } else {
                    pairs.push(next * actions + l.epsilon_greedy(q, next, &mut rng));
                    if t + 1 == length {
                        end = t + 1;
                    }
                }
            }
            // The step whose pair is updated now.
            if t + 1 >= n {
                let tau = t + 1 - n;
                let last = (tau + n).min(end);
                let mut g = 0.0;
                for i in (tau..last).rev() {
                    g = rewards[i] + gamma * g;
                }
                if tau + n < end || !terminal_end {
                    // Bootstrap from the pair `last` (n steps on, or where a cut
                    // episode stopped).
                    g += gamma.powi((last - tau) as i32) * q[pairs[last]];
                }
                let pair = pairs[tau];
                updates[pair] += 1;
                let alpha = l.config.step.at(updates[pair]);
                q[pair] += alpha * (g - q[pair]);
                if tau + 1 == end {
                    break;
                }
            }
            t += 1;
        }
    }
    Ok(steps)
}

/// pymdptoolbox's `QLearning` (its `run`), on this module's random streams: one
/// trajectory of `n_iter` steps from a uniform state, restarted at a uniform
/// state at every step `n` divisible by 100; at step `n` the greedy action with
/// probability `1 - 1/ln(n + 2)`, else a uniform one; the update
/// `Q(s, a) += (r + gamma max Q(s', .) - Q(s, a)) / sqrt(n + 2)`. Returns `Q`
/// and the mean `|dQ|` of each full block of 100 steps (`mean_discrepancy`).
pub fn q_learning_toolbox(
    mdp: &Mdp<'_>,
    rewards: &[&[f64]],
    discount: f64,
    n_iter: usize,
    seed: u64,
    cancel: &Cancel,
) -> Result<(Vec<f64>, Vec<f64>)> {
    const F: &str = "pymdptoolbox_q_learning";
    check_discount(F, discount, true)?;
    check_step_rewards(F, mdp, rewards)?;
    ensure!(n_iter != 0, FerropsError::value(F, "n_iter", "a positive step count", "0"));
    let (states, actions) = (mdp.states(), mdp.actions());
    let mut q = buffer::try_zeroed::<f64>(F, "the action values", &[states, actions])?;
    let mut means = Vec::with_capacity(n_iter / 100);
    if states == 0 {
        return Ok((q, means));
    }
    let sim = Simulator { mdp, rewards };
    let mut rng = Stream::new(seed, 0);
    let mut checkpoint = cancel.checkpoint(F);
    let mut s = rng.below(states);
    let mut block = 0.0;
    for n in 1..=n_iter {
        checkpoint.tick(1)?;
        if n % 100 == 0 {
            s = rng.below(states);
        }
        let row = &q[s * actions..(s + 1) * actions];
        let a = if rng.uniform() < 1.0 - 1.0 / ((n + 2) as f64).ln() { greedy(row) } else { rng.below(actions) };
        let (next, r) = sim.step(s, a, &mut rng);
        let next_row = &q[next * actions..(next + 1) * actions];
        let delta = r + discount * next_row[greedy(next_row)] - q[s * actions + a];
        let dq = delta / ((n + 2) as f64).sqrt();
        q[s * actions + a] += dq;
        s = next;
        block += dq.abs();
        if n % 100 == 0 {
            means.push(block / 100.0);
            block = 0.0;
        }
    }
    Ok((q, means))
}

#[cfg(test)]
mod tests {
    use super::super::test_models::{forest, pair_rewards, views};
    use super::super::{value_iteration, StopRule, Sweep};
    use super::*;

    #[test]
    fn every_control_method_finds_the_forest_policy() {
        let (mats, r) = forest();
        let mdp = Mdp::new("f", 3, views(&mats), &r).unwrap();
        let rewards = pair_rewards(&mats, &r, 2);
        let rewards: Vec<&[f64]> = rewards.iter().map(|v| v.as_slice()).collect();
        let exact =
            value_iteration(&mdp, 0.9, 1e-9, 10000, None, StopRule::SupNorm, Sweep::Jacobi, &Cancel::new()).unwrap();
        let uniform = [0.5; 6];
        let config = TdConfig {
            discount: 0.9,
            episodes: 2000,
            episode_length: 100,
            epsilon: 0.2,
            step: StepSize { alpha: 1.0, power: Some(0.7) },
            seed: 1,
            terminal: &[],
        };
        for method in [
            TdMethod::Sarsa { n: 1, n_step: false },
            TdMethod::Sarsa { n: 4, n_step: true },
            TdMethod::ExpectedSarsa,
            TdMethod::QLearning { behaviour: None },
            TdMethod::QLearning { behaviour: Some(&uniform) },
        ] {
            let res = td_learning(&mdp, &rewards, method, config, &Cancel::new()).unwrap();
            let policy: Vec<i64> = res.values.chunks_exact(2).map(|row| greedy(row) as i64).collect();
            assert_eq!(policy, exact.policy, "{method:?}");
            assert_eq!(res.updates.iter().sum::<i64>() as usize, res.steps, "{method:?}");
        }
        // Off-policy Q-learning learns Q*, not the behaviour's values.
        let res =
            td_learning(&mdp, &rewards, TdMethod::QLearning { behaviour: Some(&uniform) }, config, &Cancel::new())
                .unwrap();
        for s in 0..3 {
            let best = res.values[s * 2].max(res.values[s * 2 + 1]);
            assert!((best - exact.values[s]).abs() < 0.5, "{s}: {best} vs {}", exact.values[s]);
        }
    }

    #[test]
    fn bad_arguments() {
        let (mats, r) = forest();
        let mdp = Mdp::new("f", 3, views(&mats), &r).unwrap();
        let rewards = pair_rewards(&mats, &r, 2);
        let rewards: Vec<&[f64]> = rewards.iter().map(|v| v.as_slice()).collect();
        let ok = TdConfig {
            discount: 0.9,
            episodes: 1,
            episode_length: 1,
            epsilon: 0.1,
            step: StepSize { alpha: 0.5, power: None },
            seed: 0,
            terminal: &[],
        };
        let run = |config| td_learning(&mdp, &rewards, TdMethod::ExpectedSarsa, config, &Cancel::new());
        assert!(run(ok).is_ok());
        let bad_power = TdConfig { step: StepSize { alpha: 0.5, power: Some(0.5) }, ..ok };
        assert!(run(bad_power).unwrap_err().to_string().contains("'power'"));
        let never_ends = TdConfig { discount: 1.0, ..ok };
        assert!(run(never_ends).unwrap_err().to_string().contains("never ends"));
        let all_terminal = TdConfig { terminal: &[0, 1, 2], ..ok };
        assert!(run(all_terminal).is_err());
        let cancel = Cancel::new();
        cancel.raise();
        let long = TdConfig { episodes: 1 << 40, ..ok };
        assert_eq!(
            td_learning(&mdp, &rewards, TdMethod::Sarsa { n: 3, n_step: true }, long, &cancel).unwrap_err(),
            FerropsError::interrupted("n_step_sarsa")
        );
    }
}
