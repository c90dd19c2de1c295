//! Monte Carlo control (RL-MC): MC Basic, MC Exploring Starts and MC
//! epsilon-greedy, on episodes simulated from the MDP's own transitions.
//!
//! Randomness is counter-based: episode `i` draws from its own stream keyed by
//! `(seed, i)`, so a result depends on the seed only, never on the thread count or
//! on which thread ran which episode. MC Basic evaluates every (state, action)
//! pair of an iteration in parallel (the policy is fixed during evaluation); the
//! other two update the policy after every episode, which makes them serial.
//!
//! Every simulated step ticks a [`Checkpoint`], so a raised [`Cancel`] token stops
//! a run within [`crate::interrupt::CHECK_INTERVAL`] steps of each thread, however
//! the work is split into episodes.

use rayon::prelude::*;

use super::{check_discount, Mdp};
use crate::buffer;
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::interrupt::{Cancel, Checkpoint};

/// One SplitMix64 stream (Steele, Lea and Flood 2014), keyed by a seed and a
/// stream index: a cheap generator of full period that passes BigCrush, with
/// independent-looking streams for consecutive keys.
#[derive(Debug, Clone)]
pub struct Stream {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Stream {
    pub fn new(seed: u64, index: u64) -> Self {
        Stream { state: mix64(seed ^ mix64(index.wrapping_add(GOLDEN_GAMMA))) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in [0, 1), 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for
    /// any `n` an MDP has).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum McMethod {
    /// Policy iteration with each `q(s, a)` estimated from `episodes` episodes
    /// starting at `(s, a)`; at most `iterations` rounds, stopping early once the
    /// greedy policy no longer changes.
    Basic { iterations: usize },
    /// One episode per count from a uniformly drawn `(s, a)`, greedy policy after.
    ExploringStarts,
    /// Episodes from a uniformly drawn state, actions from the epsilon-greedy policy.
    EpsilonGreedy { epsilon: f64 },
}

impl McMethod {
    /// The public function that runs this method, the name its errors carry.
    pub fn function_name(self) -> &'static str {
        match self {
            McMethod::Basic { .. } => "mc_basic",
            McMethod::ExploringStarts => "mc_exploring_starts",
            McMethod::EpsilonGreedy { .. } => "mc_epsilon_greedy",
        }
    }
}

/// Which visits of a pair in an episode contribute a return to its average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Only the first visit of `(s, a)` in each episode: the return with the
    /// longest horizon the episode offers, so the least cut short by its end.
    First,
    /// Every visit: the visits near the end of an episode contribute returns of a
    /// few rewards only, which biases `q` towards the short-horizon value however
    /// many episodes run (the truncation bias).
    Every,
}

impl Visit {
    pub fn parse(function: &'static str, name: &str) -> Result<Self> {
        match name {
            "first" => Ok(Visit::First),
            "every" => Ok(Visit::Every),
            other => Err(FerropsError::value(function, "visit", "one of 'first', 'every'", format!("'{other}'"))),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct McConfig {
    pub discount: f64,
    pub episodes: usize,
    pub episode_length: usize,
    pub seed: u64,
    pub visit: Visit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct McResult {
    /// Action-value estimates, row-major `(S, A)`; 0 for pairs never visited.
    pub q: Vec<f64>,
    /// Greedy policy from `q` (ties to the lowest action).
    pub policy: Vec<i64>,
    /// Returns averaged into each `q(s, a)`.
    pub visits: Vec<i64>,
    /// Policy-improvement rounds (MC Basic) or episodes (the others).
    pub iterations: usize,
}

/// The MDP as a simulator: transitions plus a reward per stored transition
/// (`rewards[a]` aligned with `P[a]`'s data).
pub(super) struct Simulator<'a> {
    pub(super) mdp: &'a Mdp<'a>,
    pub(super) rewards: &'a [&'a [f64]],
}

impl Simulator<'_> {
    /// Samples `s' ~ P[a][s, :]`; returns `(s', reward)`.
    #[inline]
    pub(super) fn step(&self, s: usize, a: usize, rng: &mut Stream) -> (usize, f64) {
        let p = &self.mdp.transitions[a];
        let (lo, hi) = (p.indptr[s] as usize, p.indptr[s + 1] as usize);
        let u = rng.uniform();
        let mut acc = 0.0;
        let mut last_possible = lo;
        for k in lo..hi {
            if p.data[k] > 0.0 {
                acc += p.data[k];
                last_possible = k;
                if u < acc {
                    return (p.indices[k] as usize, self.rewards[a][k]);
                }
            }
        }
        // Rounding left the row's total just below u.
        (p.indices[last_possible] as usize, self.rewards[a][last_possible])
    }
}

/// The first action of largest value.
pub(super) fn greedy(row: &[f64]) -> usize {
    let mut best = 0;
    for (a, &q) in row.iter().enumerate().skip(1) {
        if q > row[best] {
            best = a;
        }
    }
    best
}

fn check(function: &'static str, mdp: &Mdp<'_>, rewards: &[&[f64]], config: &McConfig) -> Result<()> {
    check_discount(function, config.discount, true)?;
    for (name, value) in [("episodes", config.episodes), ("episode_length", config.episode_length)] {
        ensure!(value != 0, FerropsError::value(function, name, "a positive count", "0"));
    }
    check_step_rewards(function, mdp, rewards)
}

/// `rewards[a]` holds one finite reward per stored transition of `P[a]`.
pub(super) fn check_step_rewards(function: &'static str, mdp: &Mdp<'_>, rewards: &[&[f64]]) -> Result<()> {
    ensure!(
        rewards.len() == mdp.actions(),
        FerropsError::value(
            function,
            "R",
            format!("transition rewards for {} actions", mdp.actions()),
            format!("{} actions", rewards.len()),
        )
    );
    for (a, (r, p)) in rewards.iter().zip(&mdp.transitions).enumerate() {
        ensure!(
            r.len() == p.data.len(),
            FerropsError::value(
                function,
                "R",
                format!("one reward per stored transition of P[{a}] ({})", p.data.len()),
                format!("{} rewards", r.len()),
            )
        );
        if let Some(k) = r.iter().position(|x| !x.is_finite()) {
            let s = p.indptr.partition_point(|&start| start as usize <= k) - 1;
            return Err(FerropsError::value(
                function,
                "R",
                "finite rewards",
                format!("reward {} for state {s}, action {a}, next state {}", r[k], p.indices[k]),
            ));
        }
    }
    Ok(())
}

/// Monte Carlo control (RL-MC) with first- or every-visit averages
/// (`config.visit`) and returns computed backwards, `g = gamma g + r_{t+1}`.
/// `rewards[a]` holds the reward of each stored transition of `P[a]` (for `R` given per `(s, a)`, that value repeated).
/// Stops with [`FerropsError::Interrupted`] once `cancel` is raised.
pub fn mc_control(
    mdp: &Mdp<'_>,
    rewards: &[&[f64]],
    method: McMethod,
    config: McConfig,
    cancel: &Cancel,
) -> Result<McResult> {
    let function = method.function_name();
    check(function, mdp, rewards, &config)?;
    let sim = Simulator { mdp, rewards };
    match method {
        McMethod::Basic { iterations } => {
            ensure!(iterations != 0, FerropsError::value(function, "iterations", "a positive count", "0"));
            mc_basic(&sim, iterations, &config, &cancel.checkpoint(function))
        }
        McMethod::ExploringStarts => mc_per_episode(&sim, None, &config, &mut cancel.checkpoint(function)),
        McMethod::EpsilonGreedy { epsilon } => {
            ensure!(
                (0.0..=1.0).contains(&epsilon),
                FerropsError::value(function, "epsilon", "a value in [0, 1]", format!("{epsilon}"))
            );
            mc_per_episode(&sim, Some(epsilon), &config, &mut cancel.checkpoint(function))
        }
    }
}

/// The discounted return of one episode of `length` rewards from `(s, a)`,
/// following the deterministic `policy` after the first action.
#[allow(clippy::too_many_arguments)]
fn episode_return(
    sim: &Simulator<'_>,
    policy: &[i64],
    s: usize,
    a: usize,
    config: &McConfig,
    rng: &mut Stream,
    rewards: &mut Vec<f64>,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<f64> {
    rewards.clear();
    let (mut s, mut a) = (s, a);
    for _ in 0..config.episode_length {
        checkpoint.tick(1)?;
        let (next, r) = sim.step(s, a, rng);
        rewards.push(r);
        s = next;
        a = policy[s] as usize;
    }
    Ok(rewards.iter().rev().fold(0.0, |g, &r| config.discount * g + r))
}

/// Steps of room an episode's buffer starts with; it grows to longer episodes.
const EPISODE_BUFFER_START: usize = 1 << 12;

/// An empty buffer for the steps of one episode of `length` steps, or the
/// `OutOfMemory` error when a whole episode would not fit in memory: refused up
/// front, where growing to it would abort the process or meet the OOM killer.
fn episode_buffer<T>(function: &str, length: usize) -> Result<Vec<T>> {
    buffer::checked_len::<T>(function.to_owned(), "the steps of one episode", &[length])?;
    Ok(Vec::with_capacity(length.min(EPISODE_BUFFER_START)))
}

/// `checkpoint` is the template of each parallel task's own.
fn mc_basic(
    sim: &Simulator<'_>,
    iterations: usize,
    config: &McConfig,
    checkpoint: &Checkpoint<'_>,
) -> Result<McResult> {
    let (states, actions) = (sim.mdp.states(), sim.mdp.actions());
    let pairs = states * actions;
    let mut policy = vec![0i64; states];
    let mut q = vec![0.0; pairs];
    let mut rounds = 0;
    episode_buffer::<f64>(checkpoint.function(), config.episode_length)?;
    for round in 0..iterations {
        rounds = round + 1;
        q.par_iter_mut().enumerate().try_for_each_init(
            || (Vec::with_capacity(config.episode_length.min(EPISODE_BUFFER_START)), checkpoint.clone()),
            |(rewards, checkpoint), (pair, slot)| {
                let (s, a) = (pair / actions, pair % actions);
                let mut total = 0.0;
                for e in 0..config.episodes {
                    // Wrapping: a key past 2^64 (a huge `episodes`) only reuses streams.
                    let index =
                        ((round * pairs + pair) as u64).wrapping_mul(config.episodes as u64).wrapping_add(e as u64);
                    let mut rng = Stream::new(config.seed, index);
                    total += episode_return(sim, &policy, s, a, config, &mut rng, rewards, checkpoint)?;
                }
                *slot = total / config.episodes as f64;
                Ok(())
            },
        )?;
        let improved: Vec<i64> = q.chunks_exact(actions).map(|row| greedy(row) as i64).collect();
        let stable = improved == policy;
        policy = improved;
        if stable {
            break;
        }
    }
    let visits = vec![(rounds as i64).saturating_mul(config.episodes as i64); pairs];
    Ok(McResult { q, policy, visits, iterations: rounds })
}

/// MC Exploring Starts (`epsilon = None`) or MC epsilon-greedy: episode `e` starts
/// from a uniformly drawn pair (or a uniform state and an epsilon-greedy action),
/// follows the current policy, and updates `q` and the greedy action of each
/// visited state walking the episode backwards.
fn mc_per_episode(
    sim: &Simulator<'_>,
    epsilon: Option<f64>,
    config: &McConfig,
    checkpoint: &mut Checkpoint<'_>,
) -> Result<McResult> {
    let (states, actions) = (sim.mdp.states(), sim.mdp.actions());
    let mut q = vec![0.0; states * actions];
    let mut sums = vec![0.0; states * actions];
    let mut visits = vec![0i64; states * actions];
    let mut policy = vec![0i64; states];
    let mut trajectory: Vec<(usize, usize, f64)> = episode_buffer(checkpoint.function(), config.episode_length)?;
    // First visits: the step of each pair's first visit in the episode that last
    // visited it (`first_seen[pair].0` the episode's number plus one).
    let mut first_seen = match config.visit {
        Visit::First => vec![(0u64, 0usize); states * actions],
        Visit::Every => Vec::new(),
    };
    // pi(a* | s) = 1 - (|A| - 1) eps / |A|: a uniform action with probability eps,
    // otherwise the greedy one.
    let choose = |s: usize, policy: &[i64], rng: &mut Stream| -> usize {
        match epsilon {
            Some(eps) if rng.uniform() < eps => rng.below(actions),
            _ => policy[s] as usize,
        }
    };
    for e in 0..config.episodes {
        let mut rng = Stream::new(config.seed, e as u64);
        let (mut s, mut a) = match epsilon {
            None => {
                let pair = rng.below(states * actions);
                (pair / actions, pair % actions)
            }
            Some(_) => {
                let s = rng.below(states);
                (s, choose(s, &policy, &mut rng))
            }
        };
        trajectory.clear();
        for _ in 0..config.episode_length {
            checkpoint.tick(1)?;
            let (next, r) = sim.step(s, a, &mut rng);
            trajectory.push((s, a, r));
            s = next;
            a = choose(s, &policy, &mut rng);
        }
        if config.visit == Visit::First {
            let stamp = e as u64 + 1;
            for (t, &(s, a, _)) in trajectory.iter().enumerate() {
                let seen = &mut first_seen[s * actions + a];
                if seen.0 != stamp {
                    *seen = (stamp, t);
                }
            }
        }
        let mut g = 0.0;
        for (t, &(s, a, r)) in trajectory.iter().enumerate().rev() {
            g = config.discount * g + r;
            let pair = s * actions + a;
            if config.visit == Visit::First && first_seen[pair].1 != t {
                continue;
            }
            sums[pair] += g;
            visits[pair] += 1;
            q[pair] = sums[pair] / visits[pair] as f64;
            policy[s] = greedy(&q[s * actions..(s + 1) * actions]) as i64;
        }
    }
    Ok(McResult { q, policy, visits, iterations: config.episodes })
}

#[cfg(test)]
mod tests {
    use super::super::test_models::{forest, pair_rewards, views};
    use super::super::{value_iteration, StopRule, Sweep};
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = {
            let mut s = Stream::new(1, 5);
            (0..4).map(|_| s.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut s = Stream::new(1, 5);
            (0..4).map(|_| s.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut s = Stream::new(1, 6);
            (0..4).map(|_| s.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut s = Stream::new(0, 0);
        let mean = (0..100_000).map(|_| s.uniform()).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01);
    }

    #[test]
    fn mc_finds_the_forest_policy_for_any_thread_count() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (mats, r) = forest();
        let mdp = Mdp::new("mc_basic", 3, views(&mats), &r).unwrap();
        let rewards = pair_rewards(&mats, &r, 2);
        let rewards: Vec<&[f64]> = rewards.iter().map(|v| v.as_slice()).collect();
        let exact =
            value_iteration(&mdp, 0.9, 1e-9, 10000, None, StopRule::SupNorm, Sweep::Jacobi, &Cancel::new()).unwrap();
        let config = McConfig { discount: 0.9, episodes: 400, episode_length: 80, seed: 3, visit: Visit::First };
        let mut runs = Vec::new();
        for threads in [1, 2] {
            crate::parallel::set_num_threads(threads).unwrap();
            runs.push(crate::parallel::install(|| {
                mc_control(&mdp, &rewards, McMethod::Basic { iterations: 10 }, config, &Cancel::new()).unwrap()
            }));
        }
        assert_eq!(runs[0], runs[1]);
        assert_eq!(runs[0].policy, exact.policy);
        let es = mc_control(
            &mdp,
            &rewards,
            McMethod::ExploringStarts,
            McConfig { episodes: 3000, ..config },
            &Cancel::new(),
        )
        .unwrap();
        assert_eq!(es.policy, exact.policy);
    }

    #[test]
    fn a_raised_token_stops_every_method_within_an_interval() {
        let (mats, r) = forest();
        let mdp = Mdp::new("mc_basic", 3, views(&mats), &r).unwrap();
        let rewards = pair_rewards(&mats, &r, 2);
        let rewards: Vec<&[f64]> = rewards.iter().map(|v| v.as_slice()).collect();
        let cancel = Cancel::new();
        cancel.raise();
        // Episodes far longer than the check interval, and many short ones.
        for (episodes, episode_length) in [(1, 1 << 24), (1 << 40, 1)] {
            let config = McConfig { discount: 0.9, episodes, episode_length, seed: 0, visit: Visit::Every };
            for method in
                [McMethod::Basic { iterations: 1 }, McMethod::ExploringStarts, McMethod::EpsilonGreedy { epsilon: 0.1 }]
            {
                let err = mc_control(&mdp, &rewards, method, config, &cancel).unwrap_err();
                assert_eq!(err, FerropsError::interrupted(method.function_name()));
            }
        }
    }

    #[test]
    fn an_episode_longer_than_memory_is_refused_up_front() {
        let (mats, r) = forest();
        let mdp = Mdp::new("mc_basic", 3, views(&mats), &r).unwrap();
        let rewards = pair_rewards(&mats, &r, 2);
        let rewards: Vec<&[f64]> = rewards.iter().map(|v| v.as_slice()).collect();
        let config = McConfig { discount: 0.9, episodes: 1, episode_length: usize::MAX, seed: 0, visit: Visit::First };
        for method in [McMethod::Basic { iterations: 1 }, McMethod::ExploringStarts] {
            let err = mc_control(&mdp, &rewards, method, config, &Cancel::new()).unwrap_err();
            assert!(
                matches!(&err, FerropsError::OutOfMemory { function, .. } if function == method.function_name()),
                "{err}"
            );
        }
    }
}
