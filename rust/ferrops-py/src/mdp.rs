//! Bindings of `ferrops_core::mdp`. Transitions arrive as one CSR matrix per action
//! (SciPy's int32 `indptr`/`indices` and float64 `data`, passed without a copy),
//! rewards as the expected reward `r[s, a]`, a C-contiguous float64 `(S, A)` array.

use ferrops_core::mdp::monte_carlo::{self, McConfig, McMethod, Visit};
use ferrops_core::mdp::temporal_difference::{self, StepSize, TdConfig, TdMethod};
use ferrops_core::mdp::{self, stochastic_approximation, Csr, Evaluation, Mdp, MpiConfig, StopRule, Sweep};
use ferrops_core::{ensure, FerropsError};
use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use crate::convert::{owned1, owned2, slice1, slice2};
use crate::error::BindingResult;
use crate::run::{run_kernel, run_kernel_interruptible};

/// `(V, policy, iterations, converged, residual)`.
type ViResult = (Py<PyAny>, Py<PyAny>, usize, bool, f64);
/// `(indptr, indices, data, r_pi)`.
type SystemResult = (Py<PyAny>, Py<PyAny>, Py<PyAny>, Py<PyAny>);
/// `(q, policy, visits, iterations)`.
type McResult = (Py<PyAny>, Py<PyAny>, Py<PyAny>, usize);

/// One call's transition arrays, a tuple `(indptrs, indices, data)` of per-action
/// lists, borrowed from NumPy for the duration of the call.
#[derive(FromPyObject)]
struct Transitions<'py>(
    Vec<PyReadonlyArray1<'py, i32>>,
    Vec<PyReadonlyArray1<'py, i32>>,
    Vec<PyReadonlyArray1<'py, f64>>,
);

/// The CSR views and the reward slice; `Mdp::new` (inside the kernel, without the
/// GIL) validates them.
fn views<'a>(
    function: &'static str,
    p: &'a Transitions<'_>,
    reward: &'a PyReadonlyArray2<'_, f64>,
) -> BindingResult<(Vec<Csr<'a>>, &'a [f64])> {
    let Transitions(indptrs, indices, data) = p;
    ensure!(
        indptrs.len() == indices.len() && indptrs.len() == data.len(),
        FerropsError::value(function, "P", "matching CSR arrays per action", "ragged lists")
    );
    let mut out = Vec::with_capacity(indptrs.len());
    for ((indptr, indices), data) in indptrs.iter().zip(indices).zip(data) {
        out.push(Csr {
            indptr: slice1(function, "P", indptr)?,
            indices: slice1(function, "P", indices)?,
            data: slice1(function, "P", data)?,
        });
    }
    // Any width: `Mdp::new` checks that R holds one reward per (state, action).
    let r = slice2(function, "R", reward.shape()[1], reward)?;
    Ok((out, r))
}

/// Stored transitions plus rewards of the model: what one sweep reads, the unit
/// of the solvers' `work` bound for [`run_kernel_interruptible`].
fn sweep_work(csr: &[Csr<'_>], reward: &[f64]) -> u128 {
    csr.iter().map(|p| p.data.len() as u128).sum::<u128>() + reward.len() as u128
}

/// Returns `(V, policy, iterations, converged, residual)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (p, reward, states, discount, epsilon, max_iter, initial_value, stop, method))]
fn mdp_value_iteration<'py>(
    py: Python<'py>,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    states: usize,
    discount: f64,
    epsilon: f64,
    max_iter: usize,
    initial_value: Option<PyReadonlyArray1<'py, f64>>,
    stop: &str,
    method: &str,
) -> BindingResult<ViResult> {
    const F: &str = "value_iteration";
    let stop = StopRule::parse(F, stop)?;
    let sweep = Sweep::parse(F, method)?;
    let (csr, r) = views(F, &p, &reward)?;
    let v0 = match &initial_value {
        Some(v) => Some(slice1(F, "initial_value", v)?),
        None => None,
    };
    let work = sweep_work(&csr, r) * (max_iter as u128 + 1);
    let sol = run_kernel_interruptible(py, work, |cancel| {
        let mdp = Mdp::new(F, states, csr, r)?;
        mdp::value_iteration(&mdp, discount, epsilon, max_iter, v0, stop, sweep, cancel)
    })?;
    Ok((
        owned1(py, sol.values).into_py_any(py)?,
        owned1(py, sol.policy).into_py_any(py)?,
        sol.iterations,
        sol.converged,
        sol.residual,
    ))
}

// The next three serve several public functions (policy iteration backs up and
// evaluates too): `function`, the caller's name, is what the model's errors carry.
// The contiguity checks name the kernel: the Python layer passes contiguous arrays.

/// One Bellman backup: `(max_a Q, argmax_a Q)`.
#[pyfunction]
fn mdp_bellman_backup<'py>(
    py: Python<'py>,
    function: &str,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    states: usize,
    discount: f64,
    values: PyReadonlyArray1<'py, f64>,
) -> BindingResult<(Py<PyAny>, Py<PyAny>)> {
    const F: &str = "bellman_backup";
    let (csr, r) = views(F, &p, &reward)?;
    let v = slice1(F, "V", &values)?;
    let (v_new, policy) =
        run_kernel(py, || mdp::bellman_backup(function, &Mdp::new(function, states, csr, r)?, discount, v))?;
    Ok((owned1(py, v_new).into_py_any(py)?, owned1(py, policy).into_py_any(py)?))
}

/// Returns `(V, sweeps, converged)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn mdp_policy_evaluation<'py>(
    py: Python<'py>,
    function: &str,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    states: usize,
    policy: PyReadonlyArray1<'py, i64>,
    discount: f64,
    epsilon: f64,
    max_iter: usize,
) -> BindingResult<(Py<PyAny>, usize, bool)> {
    const F: &str = "policy_evaluation";
    let (csr, r) = views(F, &p, &reward)?;
    let pi = slice1(F, "policy", &policy)?;
    let work = sweep_work(&csr, r) * (max_iter as u128 + 1);
    let (v, sweeps, converged) = run_kernel_interruptible(py, work, |cancel| {
        let mdp = Mdp::new(function, states, csr, r)?;
        mdp::evaluate_policy_iterative(function, &mdp, pi, discount, epsilon, max_iter, cancel)
    })?;
    Ok((owned1(py, v).into_py_any(py)?, sweeps, converged))
}

/// Returns `(indptr, indices, data, r_pi)` of the policy's system.
#[pyfunction]
fn mdp_policy_system<'py>(
    py: Python<'py>,
    function: &str,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    states: usize,
    policy: PyReadonlyArray1<'py, i64>,
) -> BindingResult<SystemResult> {
    const F: &str = "policy_evaluation";
    let (csr, r) = views(F, &p, &reward)?;
    let pi = slice1(F, "policy", &policy)?;
    let system = run_kernel(py, || mdp::policy_system(function, &Mdp::new(function, states, csr, r)?, pi))?;
    Ok((
        owned1(py, system.indptr).into_py_any(py)?,
        owned1(py, system.indices).into_py_any(py)?,
        owned1(py, system.data).into_py_any(py)?,
        owned1(py, system.reward).into_py_any(py)?,
    ))
}

#[pyfunction]
fn mdp_q_values<'py>(
    py: Python<'py>,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    states: usize,
    discount: f64,
    values: PyReadonlyArray1<'py, f64>,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "q_values";
    let (csr, r) = views(F, &p, &reward)?;
    let actions = csr.len();
    let v = slice1(F, "V", &values)?;
    let q = run_kernel(py, || mdp::q_values(&Mdp::new(F, states, csr, r)?, discount, v))?;
    Ok(owned2(py, q, states, actions).into_py_any(py)?)
}

/// Monte Carlo control; `method` is "basic", "exploring_starts" or
/// "epsilon_greedy". Returns `(q, policy, visits, iterations)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (p, reward, step_rewards, states, method, discount, episodes, episode_length, seed, iterations, epsilon, visit))]
fn mdp_mc_control<'py>(
    py: Python<'py>,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    step_rewards: Vec<PyReadonlyArray1<'py, f64>>,
    states: usize,
    method: &str,
    discount: f64,
    episodes: usize,
    episode_length: usize,
    seed: u64,
    iterations: usize,
    epsilon: f64,
    visit: &str,
) -> BindingResult<McResult> {
    let method = match method {
        "basic" => McMethod::Basic { iterations },
        "exploring_starts" => McMethod::ExploringStarts,
        _ => McMethod::EpsilonGreedy { epsilon },
    };
    let name = method.function_name();
    let visit = Visit::parse(name, visit)?;
    let (csr, r) = views(name, &p, &reward)?;
    let actions = csr.len();
    let rewards = step_rewards.iter().map(|x| slice1(name, "R", x)).collect::<PyResult<Vec<_>>>()?;
    let config = McConfig { discount, episodes, episode_length, seed, visit };
    // Simulated steps: MC Basic runs `episodes` per pair in each round.
    let runs = match method {
        McMethod::Basic { iterations } => iterations as u128 * r.len() as u128,
        _ => 1,
    };
    let work = sweep_work(&csr, r) + runs * episodes as u128 * episode_length as u128;
    let result = run_kernel_interruptible(py, work, |cancel| {
        monte_carlo::mc_control(&Mdp::new(name, states, csr, r)?, &rewards, method, config, cancel)
    })?;
    Ok((
        owned2(py, result.q, states, actions).into_py_any(py)?,
        owned1(py, result.policy).into_py_any(py)?,
        owned2(py, result.visits, states, actions).into_py_any(py)?,
        result.iterations,
    ))
}

/// `(V, policy, improvements, evaluation sweeps, converged, residual, bound,
/// (min, max) of TV - V)`.
type MpiResult = (Py<PyAny>, Py<PyAny>, usize, usize, bool, f64, f64, (f64, f64));

/// Modified policy iteration; `function` names the public caller.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (function, p, reward, states, discount, epsilon, max_iter, max_improvements, initial_value, initial_policy, method, omega, span_ratio))]
fn mdp_modified_policy_iteration<'py>(
    py: Python<'py>,
    function: &str,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    states: usize,
    discount: f64,
    epsilon: f64,
    max_iter: usize,
    max_improvements: usize,
    initial_value: Option<PyReadonlyArray1<'py, f64>>,
    initial_policy: Option<PyReadonlyArray1<'py, i64>>,
    method: &str,
    omega: f64,
    span_ratio: Option<f64>,
) -> BindingResult<MpiResult> {
    const F: &str = "modified_policy_iteration";
    let evaluation = Evaluation::parse(F, method, omega)?;
    let (csr, r) = views(F, &p, &reward)?;
    let v0 = initial_value.as_ref().map(|v| slice1(F, "initial_value", v)).transpose()?;
    let pi0 = initial_policy.as_ref().map(|v| slice1(F, "initial_policy", v)).transpose()?;
    let config = MpiConfig { discount, epsilon, evaluation_sweeps: max_iter, max_improvements, evaluation, span_ratio };
    let work = sweep_work(&csr, r) * (max_improvements as u128).saturating_mul(max_iter as u128 + 1);
    let sol = run_kernel_interruptible(py, work, |cancel| {
        let mdp = Mdp::new(function, states, csr, r)?;
        mdp::modified_policy_iteration(function, &mdp, config, v0, pi0, cancel)
    })?;
    Ok((
        owned1(py, sol.values).into_py_any(py)?,
        owned1(py, sol.policy).into_py_any(py)?,
        sol.iterations,
        sol.evaluation_sweeps,
        sol.converged,
        sol.residual,
        sol.bound,
        sol.change,
    ))
}

/// `(V, policy, iterations, converged, residual, average reward, its upper bound)`.
type RviResult = (Py<PyAny>, Py<PyAny>, usize, bool, f64, f64, f64);

#[pyfunction]
fn mdp_relative_value_iteration<'py>(
    py: Python<'py>,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    states: usize,
    epsilon: f64,
    max_iter: usize,
    initial_value: Option<PyReadonlyArray1<'py, f64>>,
) -> BindingResult<RviResult> {
    const F: &str = "relative_value_iteration";
    let (csr, r) = views(F, &p, &reward)?;
    let v0 = initial_value.as_ref().map(|v| slice1(F, "initial_value", v)).transpose()?;
    let work = sweep_work(&csr, r) * (max_iter as u128 + 1);
    let sol = run_kernel_interruptible(py, work, |cancel| {
        mdp::relative_value_iteration(&Mdp::new(F, states, csr, r)?, epsilon, max_iter, v0, cancel)
    })?;
    Ok((
        owned1(py, sol.values).into_py_any(py)?,
        owned1(py, sol.policy).into_py_any(py)?,
        sol.iterations,
        sol.converged,
        sol.residual,
        sol.average_reward,
        sol.average_reward_upper,
    ))
}

/// Values `(N + 1, S)` and policies `(N, S)`, stage-major.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn mdp_finite_horizon<'py>(
    py: Python<'py>,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    states: usize,
    discount: f64,
    horizon: usize,
    terminal: Option<PyReadonlyArray1<'py, f64>>,
) -> BindingResult<(Py<PyAny>, Py<PyAny>)> {
    const F: &str = "finite_horizon";
    let (csr, r) = views(F, &p, &reward)?;
    let h = terminal.as_ref().map(|v| slice1(F, "h", v)).transpose()?;
    let work = sweep_work(&csr, r) * (horizon as u128);
    let (values, policies) = run_kernel_interruptible(py, work, |cancel| {
        mdp::finite_horizon(&Mdp::new(F, states, csr, r)?, discount, horizon, h, cancel)
    })?;
    Ok((
        owned2(py, values, horizon + 1, states).into_py_any(py)?,
        owned2(py, policies, horizon, states).into_py_any(py)?,
    ))
}

/// TD learning; `method` is "td0", "sarsa" (n steps), "expected_sarsa" or
/// "q_learning"; `policy` is TD(0)'s policy or Q-learning's behaviour (`(S, A)`
/// probabilities). Returns `(values, updates, steps)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (p, reward, step_rewards, states, method, policy, n, discount, episodes, episode_length, epsilon, alpha, power, seed, terminal))]
fn mdp_td_learning<'py>(
    py: Python<'py>,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    step_rewards: Vec<PyReadonlyArray1<'py, f64>>,
    states: usize,
    method: &str,
    policy: Option<PyReadonlyArray2<'py, f64>>,
    n: usize,
    discount: f64,
    episodes: usize,
    episode_length: usize,
    epsilon: f64,
    alpha: f64,
    power: Option<f64>,
    seed: u64,
    terminal: PyReadonlyArray1<'py, i64>,
) -> BindingResult<(Py<PyAny>, Py<PyAny>, usize)> {
    let probs = policy.as_ref().map(|x| slice2("td_learning", "policy", x.shape()[1], x)).transpose()?;
    let method = match (method, probs) {
        ("td0", Some(policy)) => TdMethod::Td0 { policy },
        ("sarsa", _) => TdMethod::Sarsa { n, n_step: false },
        ("n_step_sarsa", _) => TdMethod::Sarsa { n, n_step: true },
        ("expected_sarsa", _) => TdMethod::ExpectedSarsa,
        ("q_learning", behaviour) => TdMethod::QLearning { behaviour },
        (other, _) => {
            return Err(
                FerropsError::value("td_learning", "method", "a TD method with its policy", other.to_owned()).into()
            )
        }
    };
    let name = method.function_name();
    let (csr, r) = views(name, &p, &reward)?;
    let width = if matches!(method, TdMethod::Td0 { .. }) { 1 } else { csr.len() };
    let rewards = step_rewards.iter().map(|x| slice1(name, "R", x)).collect::<PyResult<Vec<_>>>()?;
    let terminal = slice1(name, "terminal", &terminal)?;
    let step = StepSize { alpha, power };
    let config = TdConfig { discount, episodes, episode_length, epsilon, step, seed, terminal };
    let work = sweep_work(&csr, r) + episodes as u128 * episode_length as u128;
    let result = run_kernel_interruptible(py, work, |cancel| {
        temporal_difference::td_learning(&Mdp::new(name, states, csr, r)?, &rewards, method, config, cancel)
    })?;
    Ok((
        owned2(py, result.values, states, width).into_py_any(py)?,
        owned2(py, result.updates, states, width).into_py_any(py)?,
        result.steps,
    ))
}

/// pymdptoolbox's `QLearning`: `(Q, mean_discrepancy)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn mdp_q_learning_toolbox<'py>(
    py: Python<'py>,
    p: Transitions<'py>,
    reward: PyReadonlyArray2<'py, f64>,
    step_rewards: Vec<PyReadonlyArray1<'py, f64>>,
    states: usize,
    discount: f64,
    n_iter: usize,
    seed: u64,
) -> BindingResult<(Py<PyAny>, Py<PyAny>)> {
    const F: &str = "pymdptoolbox_q_learning";
    let (csr, r) = views(F, &p, &reward)?;
    let actions = csr.len();
    let rewards = step_rewards.iter().map(|x| slice1(F, "R", x)).collect::<PyResult<Vec<_>>>()?;
    let work = sweep_work(&csr, r) + n_iter as u128;
    let (q, means) = run_kernel_interruptible(py, work, |cancel| {
        temporal_difference::q_learning_toolbox(&Mdp::new(F, states, csr, r)?, &rewards, discount, n_iter, seed, cancel)
    })?;
    Ok((owned2(py, q, states, actions).into_py_any(py)?, owned1(py, means).into_py_any(py)?))
}

/// Running means of the rows of a float64 `(N, D)` array.
#[pyfunction]
fn incremental_mean<'py>(py: Python<'py>, x: PyReadonlyArray2<'py, f64>) -> BindingResult<Py<PyAny>> {
    let (rows, width) = (x.shape()[0], x.shape()[1]);
    let data = slice2("incremental_mean", "x", width, &x)?;
    let out = run_kernel(py, || stochastic_approximation::incremental_mean(data, width))?;
    Ok(owned2(py, out, rows, width).into_py_any(py)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mdp_value_iteration, m)?)?;
    m.add_function(wrap_pyfunction!(mdp_bellman_backup, m)?)?;
    m.add_function(wrap_pyfunction!(mdp_q_values, m)?)?;
    m.add_function(wrap_pyfunction!(mdp_policy_evaluation, m)?)?;
    m.add_function(wrap_pyfunction!(mdp_policy_system, m)?)?;
    m.add_function(wrap_pyfunction!(mdp_mc_control, m)?)?;
    m.add_function(wrap_pyfunction!(incremental_mean, m)?)?;
    m.add_function(wrap_pyfunction!(mdp_modified_policy_iteration, m)?)?;
    m.add_function(wrap_pyfunction!(mdp_relative_value_iteration, m)?)?;
    m.add_function(wrap_pyfunction!(mdp_finite_horizon, m)?)?;
    m.add_function(wrap_pyfunction!(mdp_td_learning, m)?)?;
    m.add_function(wrap_pyfunction!(mdp_q_learning_toolbox, m)?)?;
    Ok(())
}
