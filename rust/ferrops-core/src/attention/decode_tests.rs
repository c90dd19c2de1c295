//! Unit tests of `decode.rs`: a float64 reference, the SIMD levels, threads,
//! paged against contiguous caches, and bad block tables.

use super::decode::*;
use super::decode_task::f16_to_f32;
use crate::interrupt::Cancel;
use crate::test_rng::Lcg;
use crate::{parallel, simd};

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Lcg::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..n).map(|_| rng.signed_f64() as f32).collect()
}

const B: usize = 2;
const LQ: usize = 2;
const HQ: usize = 8;
const HKV: usize = 2;
const D: usize = 24;
const S: usize = 600;

fn contiguous<'a>(table: &'a [i32], lens: &'a [i32], starts: &'a [i32], split: usize) -> KvCacheAttention<'a> {
    KvCacheAttention {
        function: "test".into(),
        batch: B,
        len_q: LQ,
        heads_q: HQ,
        heads_kv: HKV,
        dim_qk: D,
        dim_v: D,
        num_blocks: B,
        block_size: S,
        block_table: table,
        max_blocks: 1,
        seqlens_k: lens,
        key_starts: starts,
        scale: 0.2,
        window_left: None,
        window_right: Some(0),
        softcap: 0.0,
        alibi_slopes: None,
        tree_mask: None,
        split,
    }
}

/// ATT-REF for the causal contiguous case, in f64: `out` row by row.
fn reference(q: &[f32], k: &[f32], v: &[f32], lens: &[i32]) -> Vec<f64> {
    let mut out = vec![0.0; B * LQ * HQ * D];
    for (b, &len) in lens.iter().enumerate() {
        let len = len as usize;
        for i in 0..LQ {
            for h in 0..HQ {
                let g = h / (HQ / HKV);
                let row = ((b * LQ + i) * HQ + h) * D;
                let visible = len - LQ + i + 1;
                let scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        let key = ((b * S + j) * HKV + g) * D;
                        0.2 * (0..D).map(|c| q[row + c] as f64 * k[key + c] as f64).sum::<f64>()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let l: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                for (j, s) in scores.iter().enumerate() {
                    let value = ((b * S + j) * HKV + g) * D;
                    for c in 0..D {
                        out[row + c] += (s - m).exp() / l * v[value + c] as f64;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn every_level_and_thread_count_matches_the_reference_and_paging() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (q, k, v) = (random(B * LQ * HQ * D, 1), random(B * S * HKV * D, 2), random(B * S * HKV * D, 3));
    let (table, lens, starts) = ([0, 1], [600, 333], [0, 0]);
    let expected = reference(&q, &k, &v, &lens);
    // The same rows in shuffled blocks of 16: block t of sequence b is 2 * t + b
    // reversed, so neighbours are far apart.
    let per = S.div_ceil(16);
    let paged_table: Vec<i32> = (0..B).flat_map(|b| (0..per).map(move |t| (2 * (per - 1 - t) + b) as i32)).collect();
    let mut pk = vec![0.0; B * per * 16 * HKV * D];
    let mut pv = pk.clone();
    for b in 0..B {
        for pos in 0..S {
            let from = (b * S + pos) * HKV * D;
            let to = ((paged_table[b * per + pos / 16] as usize * 16) + pos % 16) * HKV * D;
            pk[to..to + HKV * D].copy_from_slice(&k[from..from + HKV * D]);
            pv[to..to + HKV * D].copy_from_slice(&v[from..from + HKV * D]);
        }
    }
    for level in [simd::SimdLevel::Scalar, simd::SimdLevel::Avx2, simd::SimdLevel::Avx512] {
        simd::set_level(level);
        let mut runs = Vec::new();
        for threads in [1, 2] {
            parallel::set_num_threads(threads).unwrap();
            let att = contiguous(&table, &lens, &starts, DEFAULT_SPLIT);
            let run = || kvcache_attention(&att, &q, CacheValues::F32(&k), CacheValues::F32(&v), &Cancel::new());
            runs.push(parallel::install(run).unwrap());
        }
        assert_eq!(runs[0], runs[1], "threads changed the result at {level:?}");
        for (got, want) in runs[0].0.iter().zip(&expected) {
            assert!((*got as f64 - want).abs() < 2e-6, "{got} against {want} at {level:?}");
        }
        let mut att = contiguous(&paged_table, &lens, &starts, DEFAULT_SPLIT);
        (att.num_blocks, att.block_size, att.max_blocks) = (B * per, 16, per);
        let paged = kvcache_attention(&att, &q, CacheValues::F32(&pk), CacheValues::F32(&pv), &Cancel::new()).unwrap();
        assert_eq!(paged, runs[0], "paged and contiguous differ at {level:?}");
        let whole = contiguous(&table, &lens, &starts, 0);
        let unsplit =
            kvcache_attention(&whole, &q, CacheValues::F32(&k), CacheValues::F32(&v), &Cancel::new()).unwrap();
        for (a, b) in unsplit.0.iter().zip(&runs[0].0) {
            assert!((a - b).abs() < 1e-6);
        }
    }
    simd::set_level(simd::detected());
    parallel::set_num_threads(2).unwrap();
}

#[test]
fn block_tables_and_lengths_outside_the_cache_are_errors() {
    let (q, k) = (random(B * LQ * HQ * D, 4), random(B * S * HKV * D, 5));
    let starts = [0, 0];
    for (table, lens, argument) in
        [([0, 2], [600, 600], "block_table"), ([0, -1], [10, 10], "block_table"), ([0, 1], [601, 1], "cache_seqlens")]
    {
        let att = contiguous(&table, &lens, &starts, DEFAULT_SPLIT);
        let err = kvcache_attention(&att, &q, CacheValues::F32(&k), CacheValues::F32(&k), &Cancel::new()).unwrap_err();
        assert!(err.to_string().contains(argument), "{err}");
    }
    let (table, lens) = ([0, 1], [10, 10]);
    let att = contiguous(&table, &lens, &starts, DEFAULT_SPLIT);
    let half = vec![0u16; k.len()];
    let err = kvcache_attention(&att, &q, CacheValues::F32(&k), CacheValues::Bf16(&half), &Cancel::new()).unwrap_err();
    assert!(err.to_string().contains("v_cache"), "{err}");
}

#[test]
fn float16_widening_is_exact() {
    for (bits, value) in
        [(0x3c00u16, 1.0f32), (0xc000, -2.0), (0x0001, 2f32.powi(-24)), (0x7bff, 65504.0), (0x8000, -0.0)]
    {
        assert_eq!(f16_to_f32(bits).to_bits(), value.to_bits());
    }
    assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    assert!(f16_to_f32(0x7e00).is_nan());
}

#[test]
fn bfloat16_caches_match_their_float32_widening_at_every_level() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (table, lens, starts) = ([0, 1], [600, 333], [0, 0]);
    // 64 and 96 take the AVX-512 kernels' pair order, 24 the sixteen-lane loads.
    for dim in [24, 64, 96] {
        let att = KvCacheAttention { dim_qk: dim, dim_v: dim, ..contiguous(&table, &lens, &starts, DEFAULT_SPLIT) };
        let q = random(B * LQ * HQ * dim, 6);
        let bits =
            |seed| -> Vec<u16> { random(B * S * HKV * dim, seed).iter().map(|x| (x.to_bits() >> 16) as u16).collect() };
        let (kb, vb) = (bits(7), bits(8));
        let widen = |b: &[u16]| -> Vec<f32> { b.iter().map(|&h| f32::from_bits((h as u32) << 16)).collect() };
        let (kf, vf) = (widen(&kb), widen(&vb));
        for level in [simd::SimdLevel::Scalar, simd::SimdLevel::Avx2, simd::SimdLevel::Avx512] {
            simd::set_level(level);
            let want =
                kvcache_attention(&att, &q, CacheValues::F32(&kf), CacheValues::F32(&vf), &Cancel::new()).unwrap();
            let mut runs = Vec::new();
            for threads in [1, 2] {
                parallel::set_num_threads(threads).unwrap();
                let run =
                    || kvcache_attention(&att, &q, CacheValues::Bf16(&kb), CacheValues::Bf16(&vb), &Cancel::new());
                runs.push(parallel::install(run).unwrap());
            }
            assert_eq!(runs[0], runs[1], "threads changed the result at {level:?}, dim {dim}");
            for (got, want) in runs[0].0.iter().zip(&want.0).chain(runs[0].1.iter().zip(&want.1)) {
                assert!((got - want).abs() < 2e-6, "{got} against {want} at {level:?}, dim {dim}");
            }
        }
    }
    simd::set_level(simd::detected());
    parallel::set_num_threads(2).unwrap();
}

/// The rows of a contiguous cache `[B, S, HKV, dim]` moved to shuffled blocks of
/// 16 positions (block `t` of sequence `b` is `2 * t + b` reversed): the blocks
/// and their table.
fn paged_copy<E: Copy + Default>(cache: &[E], dim: usize) -> (Vec<E>, Vec<i32>) {
    let per = S.div_ceil(16);
    let table: Vec<i32> = (0..B).flat_map(|b| (0..per).map(move |t| (2 * (per - 1 - t) + b) as i32)).collect();
    let mut blocks = vec![E::default(); B * per * 16 * HKV * dim];
    for b in 0..B {
        for pos in 0..S {
            let from = (b * S + pos) * HKV * dim;
            let to = ((table[b * per + pos / 16] as usize * 16) + pos % 16) * HKV * dim;
            blocks[to..to + HKV * dim].copy_from_slice(&cache[from..from + HKV * dim]);
        }
    }
    (blocks, table)
}

#[test]
fn bfloat16_queries_on_bfloat16_dot_products_match_the_widened_cache() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (table, lens, starts) = ([0, 1], [600, 333], [0, 0]);
    // 64 and 96 take `VDPBF16PS` where the CPU has it, 24 the widening kernels.
    for dim in [24, 64, 96] {
        let att = KvCacheAttention { dim_qk: dim, dim_v: dim, ..contiguous(&table, &lens, &starts, DEFAULT_SPLIT) };
        let to_bits = |x: &[f32]| -> Vec<u16> { x.iter().map(|x| (x.to_bits() >> 16) as u16).collect() };
        let widen = |b: &[u16]| -> Vec<f32> { b.iter().map(|&h| f32::from_bits((h as u32) << 16)).collect() };
        // Queries that are bfloat16 values, as a bfloat16 `q` reaches the core.
        let q = widen(&to_bits(&random(B * LQ * HQ * dim, 9)));
        let (kb, vb) = (to_bits(&random(B * S * HKV * dim, 10)), to_bits(&random(B * S * HKV * dim, 11)));
        let (kf, vf) = (widen(&kb), widen(&vb));
        let ((pk, paged_table), (pv, _)) = (paged_copy(&kb, dim), paged_copy(&vb, dim));
        let per = S.div_ceil(16);
        let paged = KvCacheAttention {
            num_blocks: B * per,
            block_size: 16,
            max_blocks: per,
            block_table: &paged_table,
            ..att.clone()
        };
        simd::set_level(simd::detected());
        let want = kvcache_attention(&att, &q, CacheValues::F32(&kf), CacheValues::F32(&vf), &Cancel::new()).unwrap();
        for dot in [true, false] {
            crate::attention::bf16::set_dot_products(Some(dot));
            let mut runs = Vec::new();
            for threads in [1, 2] {
                parallel::set_num_threads(threads).unwrap();
                let run =
                    || kvcache_attention(&att, &q, CacheValues::Bf16(&kb), CacheValues::Bf16(&vb), &Cancel::new());
                runs.push(parallel::install(run).unwrap());
            }
            assert_eq!(runs[0], runs[1], "threads changed the result, dot products {dot}, dim {dim}");
            let from_pages =
                kvcache_attention(&paged, &q, CacheValues::Bf16(&pk), CacheValues::Bf16(&pv), &Cancel::new()).unwrap();
            assert_eq!(from_pages, runs[0], "paged and contiguous differ, dot products {dot}, dim {dim}");
            for (got, want) in runs[0].0.iter().zip(&want.0).chain(runs[0].1.iter().zip(&want.1)) {
                assert!((got - want).abs() < 2e-6, "{got} against {want}, dot products {dot}, dim {dim}");
            }
        }
    }
    crate::attention::bf16::set_dot_products(None);
    parallel::set_num_threads(2).unwrap();
}
