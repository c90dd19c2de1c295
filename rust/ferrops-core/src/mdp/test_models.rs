//! Models for the unit tests of the MDP family: owned CSR arrays, pymdptoolbox's
//! forest example and random sparse MDPs.

use super::model::Csr;
use crate::test_rng::Lcg;

/// Owned CSR arrays for tests, built from dense `(A, S, S)` rows.
pub(crate) struct OwnedCsr {
    pub indptr: Vec<i32>,
    pub indices: Vec<i32>,
    pub data: Vec<f64>,
}

pub(crate) fn csr_from_dense(p: &[Vec<f64>]) -> OwnedCsr {
    let mut m = OwnedCsr { indptr: vec![0], indices: vec![], data: vec![] };
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
    owned.iter().map(|m| Csr { indptr: &m.indptr, indices: &m.indices, data: &m.data }).collect()
}

/// pymdptoolbox's forest example (S = 3, r1 = 4, r2 = 2, p = 0.1).
pub(crate) fn forest() -> (Vec<OwnedCsr>, Vec<f64>) {
    let wait = csr_from_dense(&[vec![0.1, 0.9, 0.0], vec![0.1, 0.0, 0.9], vec![0.1, 0.0, 0.9]]);
    let cut = csr_from_dense(&[vec![1.0, 0.0, 0.0], vec![1.0, 0.0, 0.0], vec![1.0, 0.0, 0.0]]);
    (vec![wait, cut], vec![0.0, 0.0, 0.0, 1.0, 4.0, 2.0])
}

/// A random sparse MDP with `k` successors per (s, a).
pub(crate) fn random_mdp(states: usize, actions: usize, k: usize, seed: u64) -> (Vec<OwnedCsr>, Vec<f64>) {
    let mut rng = Lcg::new(seed);
    let mats = (0..actions)
        .map(|_| {
            let mut m = OwnedCsr { indptr: vec![0], indices: vec![], data: vec![] };
            for _ in 0..states {
                let mut cols: Vec<i32> = (0..k).map(|_| rng.below(states as u64) as i32).collect();
                cols.sort_unstable();
                cols.dedup();
                let w: Vec<f64> = cols.iter().map(|_| rng.unit_f64() + 0.1).collect();
                let total: f64 = w.iter().sum();
                m.indices.extend_from_slice(&cols);
                m.data.extend(w.iter().map(|x| x / total));
                m.indptr.push(m.indices.len() as i32);
            }
            m
        })
        .collect();
    let reward = (0..states * actions).map(|_| rng.unit_f64()).collect();
    (mats, reward)
}

/// Each stored transition's reward `R[s, a]`, per action, in the CSR's order
/// (the per-step rewards the sampling methods take).
pub(crate) fn pair_rewards(mats: &[OwnedCsr], r: &[f64], actions: usize) -> Vec<Vec<f64>> {
    mats.iter()
        .enumerate()
        .map(|(a, m)| {
            (0..m.indptr.len() - 1)
                .flat_map(|s| std::iter::repeat_n(r[s * actions + a], (m.indptr[s + 1] - m.indptr[s]) as usize))
                .collect()
        })
        .collect()
}
