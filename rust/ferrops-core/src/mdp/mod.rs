//! Finite MDP solvers (SPEC section 5, RL-*): the model and its checks
//! ([`model`]), Bellman backups and Q-values ([`backups`]), value iteration
//! (Jacobi and Gauss-Seidel, two stopping rules) and policy evaluation
//! ([`solvers`]), Monte Carlo control ([`monte_carlo`]) and the incremental mean
//! ([`stochastic_approximation`]).
//!
//! Transitions are one CSR matrix per action (`P[a]` is `S x S`, row `s` holds the
//! successors of `(s, a)`), borrowed straight from SciPy's `indptr`/`indices`/`data`
//! arrays: no dense `S x S` anywhere. Rewards arrive as the expected one-step reward
//! `r[s, a]`, row-major `(S, A)`.

mod backups;
mod horizons;
mod model;
mod modified;
pub mod monte_carlo;
mod solvers;
pub mod stochastic_approximation;
pub mod temporal_difference;
#[cfg(test)]
mod test_models;

pub use backups::{bellman_backup, q_values};
pub use horizons::{finite_horizon, relative_value_iteration, RviSolution};
pub use model::{check_discount, Csr, Mdp, ROW_SUM_TOLERANCE};
pub use modified::{modified_policy_iteration, Evaluation, MpiConfig, MpiSolution};
pub use solvers::{evaluate_policy_iterative, policy_system, value_iteration, PolicySystem, Solution, StopRule, Sweep};

/// States per parallel work item (validation, backups, policy evaluation); fixed
/// so that the split is the same for any thread count. 2048 states x 4 actions x
/// 10 successors is ~1 MB of transitions.
const STATES_PER_TASK: usize = 2048;
