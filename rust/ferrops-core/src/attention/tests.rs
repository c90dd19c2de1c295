use super::*;
use crate::interrupt::Cancel;
use crate::test_rng::Lcg;
use crate::{parallel, simd};

/// `n` values uniform in `[-1, 1)`; nearby seeds are spread apart first.
fn random(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Lcg::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..n).map(|_| rng.signed_f64()).collect()
}

/// The formulas of ATT-REF (with every option) and ATT-BWD, row by row in f64.
struct Reference {
    out: Vec<f64>,
    lse: Vec<f64>,
    dq: Vec<f64>,
    dk: Vec<f64>,
    dv: Vec<f64>,
}

fn reference(att: &Attention<'_, f64>, q: &[f64], k: &[f64], v: &[f64], d_out: &[f64]) -> Reference {
    let seqs = att.validate(q, k, v).unwrap();
    let (total_q, _) = att.total_rows().unwrap();
    let (hq, hkv, d, dv) = (att.heads_q, att.heads_kv, att.dim_qk, att.dim_v);
    let mut r = Reference {
        out: vec![0.0; q.len() / d.max(1) * dv],
        lse: vec![f64::NEG_INFINITY; hq * total_q],
        dq: vec![0.0; q.len()],
        dk: vec![0.0; k.len()],
        dv: vec![0.0; v.len()],
    };
    for (s, seq) in seqs.iter().enumerate() {
        for h in 0..hq {
            let hk = h / (hq / hkv);
            let scorer = forward::Scorer::new(att, s, seq, h);
            for i in 0..seq.len_q {
                let qa = att.row_offset(seq.q_row0, seq.len_q, hq, h, i, d);
                let oa = att.row_offset(seq.q_row0, seq.len_q, hq, h, i, dv);
                let (lo, hi) = scorer.range(i);
                let mut scores = vec![f64::NEG_INFINITY; seq.len_k];
                let mut cap_grad = vec![1.0; seq.len_k];
                for j in lo..hi {
                    let ka = att.row_offset(seq.k_row0, seq.len_k, hkv, hk, j, d);
                    let mut x: f64 = att.scale * (0..d).map(|c| q[qa + c] * k[ka + c]).sum::<f64>();
                    if att.softcap > 0.0 {
                        let t = (x / att.softcap).tanh();
                        cap_grad[j] = 1.0 - t * t;
                        x = att.softcap * t;
                    }
                    if let Some(slope) = att.alibi_slope(s, h) {
                        let pos = i as i64 + if att.bottom_right { seq.len_k as i64 - seq.len_q as i64 } else { 0 };
                        x -= slope * (pos - j as i64).abs() as f64;
                    }
                    if let Some(m) = &att.mask {
                        let at = m.offsets[s * hq + h] + i * m.row_stride + j * m.col_stride;
                        match m.values {
                            MaskValues::Bool(b) => {
                                if !b[at] {
                                    x = f64::NEG_INFINITY
                                }
                            }
                            MaskValues::Additive(a) => x += a[at],
                        }
                    }
                    scores[j] = x;
                }
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if mx == f64::NEG_INFINITY {
                    continue;
                }
                let sum: f64 = scores.iter().map(|x| (x - mx).exp()).sum();
                // The kernels' log-sum-exp is base 2 (see `attention_forward`).
                r.lse[h * total_q + seq.q_row0 + i] = (mx + sum.ln()) * std::f64::consts::LOG2_E;
                let p: Vec<f64> = scores.iter().map(|x| (x - mx).exp() / sum).collect();
                for (j, &pj) in p.iter().enumerate() {
                    let va = att.row_offset(seq.k_row0, seq.len_k, hkv, hk, j, dv);
                    for c in 0..dv {
                        r.out[oa + c] += pj * v[va + c];
                    }
                }
                let delta: f64 = (0..dv).map(|c| d_out[oa + c] * r.out[oa + c]).sum();
                for (j, &pj) in p.iter().enumerate() {
                    let ka = att.row_offset(seq.k_row0, seq.len_k, hkv, hk, j, d);
                    let va = att.row_offset(seq.k_row0, seq.len_k, hkv, hk, j, dv);
                    let dp: f64 = (0..dv).map(|c| d_out[oa + c] * v[va + c]).sum();
                    let ds = pj * (dp - delta) * cap_grad[j];
                    for c in 0..dv {
                        r.dv[va + c] += pj * d_out[oa + c];
                    }
                    for c in 0..d {
                        r.dq[qa + c] += att.scale * ds * k[ka + c];
                        r.dk[ka + c] += att.scale * ds * q[qa + c];
                    }
                }
            }
        }
    }
    r
}

fn assert_close(name: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g == w) || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(ok, "{name}[{i}]: got {g}, want {w}");
    }
}

fn base(
    layout: Layout,
    batch: Batch<'static>,
    heads_q: usize,
    heads_kv: usize,
    d: usize,
    dv: usize,
) -> Attention<'static, f64> {
    Attention {
        function: "test".into(),
        layout,
        batch,
        heads_q,
        heads_kv,
        dim_qk: d,
        dim_v: dv,
        scale: 1.0 / (d as f64).sqrt(),
        bottom_right: true,
        window_left: None,
        window_right: None,
        softcap: 0.0,
        alibi_slopes: None,
        mask: None,
    }
}

fn check(att: &Attention<'_, f64>, seed: u64) {
    let (tq, tk) = att.total_rows().unwrap();
    let q = random(tq * att.heads_q * att.dim_qk, seed);
    let k: Vec<f64> = random(tk * att.heads_kv * att.dim_qk, seed + 1).iter().map(|x| 3.0 * x).collect();
    let v = random(tk * att.heads_kv * att.dim_v, seed + 2);
    let d_out = random(tq * att.heads_q * att.dim_v, seed + 3);
    let want = reference(att, &q, &k, &v, &d_out);
    let (out, lse) = attention_forward(att, &q, &k, &v, &Cancel::new()).unwrap();
    assert_close("out f64", &out, &want.out, 1e-12);
    assert_close("lse f64", &lse, &want.lse, 1e-12);
    let (dq, dk, dv) = attention_backward(att, &q, &k, &v, &out, &lse, &d_out, &Cancel::new()).unwrap();
    assert_close("dq f64", &dq, &want.dq, 1e-10);
    assert_close("dk f64", &dk, &want.dk, 1e-10);
    assert_close("dv f64", &dv, &want.dv, 1e-10);

    // float32, at every SIMD level and for 1 and 2 threads (bitwise the same).
    let f = |x: &[f64]| x.iter().map(|&y| y as f32).collect::<Vec<f32>>();
    let (q32, k32, v32, do32) = (f(&q), f(&k), f(&v), f(&d_out));
    let mask32: Vec<f32> = match att.mask.as_ref().map(|m| m.values) {
        Some(MaskValues::Additive(a)) => f(a),
        _ => Vec::new(),
    };
    let att32 = Attention::<f32> {
        function: att.function.clone(),
        layout: att.layout,
        batch: att.batch,
        heads_q: att.heads_q,
        heads_kv: att.heads_kv,
        dim_qk: att.dim_qk,
        dim_v: att.dim_v,
        scale: att.scale,
        bottom_right: att.bottom_right,
        window_left: att.window_left,
        window_right: att.window_right,
        softcap: att.softcap,
        alibi_slopes: att.alibi_slopes,
        mask: att.mask.as_ref().map(|m| Mask {
            values: match m.values {
                MaskValues::Bool(b) => MaskValues::Bool(b),
                MaskValues::Additive(_) => MaskValues::Additive(&mask32),
            },
            offsets: m.offsets,
            row_stride: m.row_stride,
            col_stride: m.col_stride,
        }),
    };
    let guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut runs = Vec::new();
    for level in [simd::SimdLevel::Scalar, simd::detected()] {
        simd::set_level(level);
        for threads in [1, 2] {
            parallel::set_num_threads(threads).unwrap();
            let (o, l) = parallel::install(|| attention_forward(&att32, &q32, &k32, &v32, &Cancel::new())).unwrap();
            let g = parallel::install(|| attention_backward(&att32, &q32, &k32, &v32, &o, &l, &do32, &Cancel::new()))
                .unwrap();
            runs.push((o, l, g));
        }
    }
    simd::set_level(simd::detected());
    parallel::set_num_threads(2).unwrap();
    let up = |x: &[f32]| x.iter().map(|&y| y as f64).collect::<Vec<f64>>();
    for (n, (o, l, (dq, dk, dv))) in runs.iter().enumerate() {
        assert_close("out f32", &up(o), &want.out, 2e-5);
        assert_close("lse f32", &up(l), &want.lse, 2e-5);
        assert_close("dq f32", &up(dq), &want.dq, 1e-3);
        assert_close("dk f32", &up(dk), &want.dk, 1e-3);
        assert_close("dv f32", &up(dv), &want.dv, 1e-3);
        if n % 2 == 1 {
            let (o1, l1, g1) = &runs[n - 1];
            assert!(o1 == o && l1 == l && g1.0 == *dq && g1.1 == *dk && g1.2 == *dv, "1 vs 2 threads differ");
        }
    }
    drop(guard);
    check_bfloat16(att, &att32, &q32, &k32, &v32, &d_out);
}

/// bfloat16 inputs against the f64 formula on the same (rounded) values: widened
/// at the scalar and the detected level, and on the AVX-512 BF16 dot products
/// where the CPU has them; for 1 and 2 threads (bitwise the same).
fn check_bfloat16(
    att: &Attention<'_, f64>,
    att32: &Attention<'_, f32>,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d_out: &[f64],
) {
    let (q, k, v) = (bf16::f32_to_bf16(q), bf16::f32_to_bf16(k), bf16::f32_to_bf16(v));
    let up = |x: &[u16]| bf16::bf16_to_f32(x).iter().map(|&y| y as f64).collect::<Vec<f64>>();
    let want = reference(att, &up(&q), &up(&k), &up(&v), d_out);
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for (level, dot_products) in [(simd::SimdLevel::Scalar, false), (simd::detected(), false), (simd::detected(), true)]
    {
        simd::set_level(level);
        bf16::set_dot_products(Some(dot_products));
        let level = (level, bf16::native_dot_products());
        let mut runs = Vec::new();
        for threads in [1, 2] {
            parallel::set_num_threads(threads).unwrap();
            runs.push(parallel::install(|| bf16::attention_forward_bf16(att32, &q, &k, &v, &Cancel::new())).unwrap());
        }
        assert!(runs[0] == runs[1], "bfloat16 at {level:?}: 1 vs 2 threads differ");
        let (o, l) = &runs[0];
        // The output is rounded to bfloat16 (2^-9 relative), and the AVX-512 BF16
        // path rounds the probabilities too before the P V product.
        assert_close(&format!("out bf16 {level:?}"), &up(o), &want.out, 8e-3);
        assert_close(&format!("lse bf16 {level:?}"), &l.iter().map(|&x| x as f64).collect::<Vec<_>>(), &want.lse, 2e-5);
    }
    simd::set_level(simd::detected());
    bf16::set_dot_products(None);
    parallel::set_num_threads(2).unwrap();
}

#[test]
fn dense_token_major_with_every_option() {
    let mut att = base(Layout::TokenMajor, Batch::Dense { batch: 2, len_q: 130, len_k: 201 }, 4, 2, 20, 24);
    check(&att, 1);
    att.window_right = Some(0);
    check(&att, 2);
    att.window_left = Some(37);
    att.softcap = 2.5;
    static SLOPES: [f64; 4] = [0.5, 0.25, 0.125, 0.0625];
    att.alibi_slopes = Some(&SLOPES);
    check(&att, 3);
    // more queries than keys: the first rows see nothing under bottom-right causal.
    let mut tall = base(Layout::TokenMajor, Batch::Dense { batch: 1, len_q: 300, len_k: 97 }, 2, 1, 16, 16);
    tall.window_right = Some(0);
    check(&tall, 4);
}

#[test]
fn head_major_with_masks() {
    let (b, h, l, s) = (2, 2, 101, 150);
    let mut att = base(Layout::HeadMajor, Batch::Dense { batch: b, len_q: l, len_k: s }, h, h, 32, 16);
    att.bottom_right = false;
    att.window_right = Some(0);
    check(&att, 5);
    att.window_right = None;
    // one [L, S] mask shared by every batch entry and head; row 3 fully masked.
    let bools: Vec<bool> = random(l * s, 9).iter().enumerate().map(|(n, &x)| n / s != 3 && x > -0.3).collect();
    let bools: &'static [bool] = Box::leak(bools.into_boxed_slice());
    let offsets: &'static [usize] = Box::leak(vec![0usize; b * h].into_boxed_slice());
    att.mask = Some(Mask { values: MaskValues::Bool(bools), offsets, row_stride: s, col_stride: 1 });
    check(&att, 6);
    // an additive [B, 1, L, 1] mask: broadcast over heads and keys.
    let add: &'static [f64] = Box::leak(random(b * l, 10).into_boxed_slice());
    let offsets: &'static [usize] = Box::leak((0..b * h).map(|n| (n / h) * l).collect::<Vec<_>>().into_boxed_slice());
    att.mask = Some(Mask { values: MaskValues::Additive(add), offsets, row_stride: 1, col_stride: 0 });
    check(&att, 7);
    // a key-padding mask [B, 1, 1, S]: whole tiles of keys are masked and skipped.
    let padding: Vec<bool> = (0..b * s).map(|n| n % s < if n / s == 0 { 40 } else { 130 }).collect();
    let padding: &'static [bool] = Box::leak(padding.into_boxed_slice());
    let offsets: &'static [usize] = Box::leak((0..b * h).map(|n| (n / h) * s).collect::<Vec<_>>().into_boxed_slice());
    att.mask = Some(Mask { values: MaskValues::Bool(padding), offsets, row_stride: 0, col_stride: 1 });
    check(&att, 13);
}

#[test]
fn packed_sequences_equal_each_sequence_alone() {
    static CU_Q: [i32; 4] = [0, 5, 5, 140];
    static CU_K: [i32; 4] = [0, 9, 30, 130];
    let mut att = base(Layout::TokenMajor, Batch::Packed { cu_seqlens_q: &CU_Q, cu_seqlens_k: &CU_K }, 3, 3, 8, 8);
    att.window_right = Some(0);
    check(&att, 8);
}

#[test]
fn bad_arguments_are_errors() {
    let att = base(Layout::TokenMajor, Batch::Dense { batch: 1, len_q: 2, len_k: 2 }, 3, 2, 4, 4);
    let x = vec![0.0; 2 * 3 * 4];
    let y = vec![0.0; 2 * 2 * 4];
    assert!(attention_forward(&att, &x, &y, &y, &Cancel::new()).unwrap_err().to_string().contains("heads"));
    let att = base(Layout::TokenMajor, Batch::Dense { batch: 1, len_q: 2, len_k: 2 }, 2, 2, 4, 4);
    assert!(attention_forward(&att, &y, &y[1..], &y, &Cancel::new()).is_err());
    for (cu, needle) in [(&[1, 2][..], "first entry"), (&[0, 3, 2][..], "non-decreasing"), (&[][..], "at least one")] {
        let packed = Attention { batch: Batch::Packed { cu_seqlens_q: cu, cu_seqlens_k: cu }, ..att.clone() };
        let err = attention_forward(&packed, &y, &y, &y, &Cancel::new()).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn empty_inputs_give_empty_results() {
    let att = base(Layout::HeadMajor, Batch::Dense { batch: 0, len_q: 3, len_k: 3 }, 2, 2, 4, 4);
    let (o, l) = attention_forward(&att, &[], &[], &[], &Cancel::new()).unwrap();
    assert!(o.is_empty() && l.is_empty());
    let att = base(Layout::HeadMajor, Batch::Dense { batch: 1, len_q: 3, len_k: 0 }, 1, 1, 4, 4);
    let (o, l) = attention_forward(&att, &[0.5; 12], &[], &[], &Cancel::new()).unwrap();
    assert_eq!(o, vec![0.0; 12]);
    assert!(l.iter().all(|&x| x == f64::NEG_INFINITY));
}

#[test]
fn few_queries_against_many_keys_split_the_keys() {
    // One query tile against more than SPLIT_MIN_KEYS keys: chunks merged in order.
    let mut att = base(Layout::TokenMajor, Batch::Dense { batch: 1, len_q: 3, len_k: 5000 }, 2, 1, 8, 8);
    check(&att, 11);
    att.window_right = Some(0);
    att.window_left = Some(4500);
    check(&att, 12);
    // Single-query tiles (decoding, and the last row of 97) take the dot-product path.
    for (len_q, softcap) in [(1, 0.0), (97, 3.0)] {
        let mut one = base(Layout::TokenMajor, Batch::Dense { batch: 2, len_q, len_k: 4500 }, 2, 2, 37, 8);
        one.softcap = softcap;
        one.window_right = Some(0);
        check(&one, 14);
    }
}

/// ATT-BWD's single-key clause: `P = 1` and `dP - Delta = 0` exactly, so `dQ` and
/// `dK` are exactly 0 and `dV` the sum of `dO`, at every SIMD level, including a
/// one-row query tile (scored by a dot product) and softcap.
#[test]
fn a_single_key_has_exactly_zero_score_gradients() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (b, hq, hkv, d, dv) = (2, 4, 2, 24, 20);
    for len_q in [1, 7, 97] {
        for softcap in [0.0, 2.0] {
            let mut att64 = base(Layout::TokenMajor, Batch::Dense { batch: b, len_q, len_k: 1 }, hq, hkv, d, dv);
            att64.softcap = softcap;
            let att32 = Attention::<f32> {
                function: "test".into(),
                layout: att64.layout,
                batch: att64.batch,
                heads_q: hq,
                heads_kv: hkv,
                dim_qk: d,
                dim_v: dv,
                scale: att64.scale,
                bottom_right: true,
                window_left: None,
                window_right: None,
                softcap,
                alibi_slopes: None,
                mask: None,
            };
            let f = |x: Vec<f64>| x.iter().map(|&y| (3.0 * y) as f32).collect::<Vec<f32>>();
            let (q, k, v) = (random(b * len_q * hq * d, 1), random(b * hkv * d, 2), random(b * hkv * dv, 3));
            // Multiples of 1/256: their float32 sums are exact, so dV must equal the
            // float64 sum bitwise, which it does only if every P is exactly 1.
            let d_out: Vec<f64> = random(b * len_q * hq * dv, 4).iter().map(|x| (x * 256.0).round() / 768.0).collect();
            for level in [simd::SimdLevel::Scalar, simd::SimdLevel::Avx2, simd::SimdLevel::Avx512] {
                simd::set_level(level);
                let (q32, k32, v32, do32) = (f(q.clone()), f(k.clone()), f(v.clone()), f(d_out.clone()));
                let (o, l) = attention_forward(&att32, &q32, &k32, &v32, &Cancel::new()).unwrap();
                let (dq, dk, dvv) =
                    attention_backward(&att32, &q32, &k32, &v32, &o, &l, &do32, &Cancel::new()).unwrap();
                assert!(dq.iter().chain(&dk).all(|&x| x == 0.0), "{level:?} len_q {len_q} softcap {softcap}");
                // dV of key head hk: dO summed over the rows and the group's heads.
                for (at, &g) in dvv.iter().enumerate() {
                    let (batch, hk, c) = (at / (hkv * dv), at / dv % hkv, at % dv);
                    let exact: f64 = (0..len_q)
                        .flat_map(|i| (hk * 2..hk * 2 + 2).map(move |h| ((batch * len_q + i) * hq + h) * dv + c))
                        .map(|n| do32[n] as f64)
                        .sum();
                    assert_eq!(g as f64, exact, "{level:?} dv[{at}]");
                }
            }
            simd::set_level(simd::detected());
            let (o, l) = attention_forward(&att64, &q, &k, &v, &Cancel::new()).unwrap();
            let (dq, dk, _) = attention_backward(&att64, &q, &k, &v, &o, &l, &d_out, &Cancel::new()).unwrap();
            assert!(dq.iter().chain(&dk).all(|&x| x == 0.0), "f64 len_q {len_q} softcap {softcap}");
        }
    }
}

/// RUN-INTERRUPT: a token raised before or during a call stops the forward and
/// backward passes with `Interrupted`; an unraised one changes nothing (the other
/// tests).
#[test]
fn a_raised_token_stops_forward_and_backward() {
    let att = base(Layout::TokenMajor, Batch::Dense { batch: 1, len_q: 300, len_k: 300 }, 2, 1, 8, 8);
    let (q, kv, d_out) = (random(300 * 2 * 8, 1), random(300 * 8, 2), random(300 * 2 * 8, 3));
    let (out, lse) = attention_forward(&att, &q, &kv, &kv, &Cancel::new()).unwrap();
    let raised = Cancel::new();
    raised.raise();
    let interrupted = crate::FerropsError::interrupted(att.function.clone());
    assert_eq!(attention_forward(&att, &q, &kv, &kv, &raised).unwrap_err(), interrupted);
    assert_eq!(attention_backward(&att, &q, &kv, &kv, &out, &lse, &d_out, &raised).unwrap_err(), interrupted);

    // Four query tiles against 2^20 keys (300M scores, 0.1 s or more): each task
    // scans every key. Raised from another thread 1 ms in, the token stops the
    // running tasks within a key tile and skips the rest.
    let (queries, keys) = (300, 1 << 20);
    let long = base(Layout::TokenMajor, Batch::Dense { batch: 1, len_q: queries, len_k: keys }, 1, 1, 8, 8);
    let (q, kv, d_out) = (random(queries * 8, 4), vec![0.5; keys * 8], random(queries * 8, 5));
    let (out, lse) = (vec![0.5; queries * 8], vec![20.0; queries]);
    for forward in [true, false] {
        let cancel = Cancel::new();
        let started = std::time::Instant::now();
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(1));
                cancel.raise();
            });
            if forward {
                parallel::install(|| attention_forward(&long, &q, &kv, &kv, &cancel).map(|_| ()))
            } else {
                parallel::install(|| attention_backward(&long, &q, &kv, &kv, &out, &lse, &d_out, &cancel).map(|_| ()))
            }
        });
        assert_eq!(result.unwrap_err(), interrupted, "forward: {forward}");
        assert!(started.elapsed().as_secs() < 5);
    }
}
