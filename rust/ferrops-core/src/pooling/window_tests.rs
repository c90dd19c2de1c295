use super::*;
use crate::parallel;
use crate::simd::{self, SimdLevel};
use crate::test_rng::Lcg;

fn naive_max_pool(x: &[f64], s: Shape, k: [usize; 2], st: [usize; 2], p: [usize; 2]) -> Vec<f64> {
    let oh = (s.h + 2 * p[0] - k[0]) / st[0] + 1;
    let ow = (s.w + 2 * p[1] - k[1]) / st[1] + 1;
    let mut out = Vec::new();
    for plane in x.chunks(s.h * s.w) {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f64::NEG_INFINITY;
                for dy in 0..k[0] {
                    for dx in 0..k[1] {
                        let (y, x) =
                            ((oy * st[0] + dy) as isize - p[0] as isize, (ox * st[1] + dx) as isize - p[1] as isize);
                        if y >= 0 && x >= 0 && (y as usize) < s.h && (x as usize) < s.w {
                            m = m.max(plane[y as usize * s.w + x as usize]);
                        }
                    }
                }
                out.push(m);
            }
        }
    }
    out
}

fn data(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = Lcg::new(seed);
    // The first state only mixes the seed.
    rng.next_u64();
    // Few distinct values, so ties are common.
    (0..len).map(|_| rng.below(7) as f64).collect()
}

#[test]
fn max_pool_matches_the_definition_at_every_level_and_thread_count() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = Shape::new([2, 3, 11, 17]);
    let x = data(s.len(), 3);
    for (k, st, p) in
        [([3, 3], [1, 1], [1, 1]), ([2, 3], [2, 1], [1, 0]), ([5, 4], [3, 2], [2, 2]), ([1, 1], [1, 1], [0, 0])]
    {
        let want = naive_max_pool(&x, s, k, st, p);
        let mut results = Vec::new();
        for level in [SimdLevel::Scalar, SimdLevel::Avx512] {
            simd::set_level(level);
            for threads in [1, 2] {
                parallel::set_num_threads(threads).unwrap();
                let (got, _) = parallel::install(|| max_pool2d(&x, s, k, st, p)).unwrap();
                assert_eq!(got, want);
                results.push(got);
            }
        }
        simd::set_level(simd::detected());
    }
}

#[test]
fn sppf_equals_pools_of_growing_kernels() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = Shape::new([2, 3, 9, 14]);
    let x = data(s.len(), 5);
    let out = sppf(&x, s, 5).unwrap();
    let chw = s.c * s.h * s.w;
    for (block, k) in [(1usize, 5usize), (2, 9), (3, 13)] {
        let want = naive_max_pool(&x, s, [k, k], [1, 1], [k / 2, k / 2]);
        for b in 0..s.n {
            assert_eq!(&out[b * 4 * chw + block * chw..][..chw], &want[b * chw..][..chw]);
        }
    }
    for b in 0..s.n {
        assert_eq!(&out[b * 4 * chw..][..chw], &x[b * chw..][..chw]);
    }
}

#[test]
fn separable_arg_max_equals_the_row_major_scan() {
    let s = Shape::new([1, 2, 9, 11]);
    let mut x = data(s.len(), 4);
    x[13] = f64::NAN;
    x[17] = f64::NAN;
    x[120] = f64::NAN;
    for (k, st, p) in
        [([3, 3], [1, 1], [1, 1]), ([2, 5], [2, 1], [1, 2]), ([5, 5], [1, 1], [2, 2]), ([4, 3], [3, 2], [0, 1])]
    {
        let g = Window::new("test", s.h, s.w, k, st, p).unwrap();
        let grad: Vec<f64> = (0..s.planes() * g.oh * g.ow).map(|i| 1.0 + i as f64).collect();
        let got = max_pool2d_backward(&x, s, k, st, p, &grad).unwrap();
        let mut want = vec![0.0; s.len()];
        for plane in 0..s.planes() {
            let src = &x[plane * s.h * s.w..][..s.h * s.w];
            for oy in 0..g.oh {
                let (r0, r1) = g.rows(oy);
                for ox in 0..g.ow {
                    let (c0, c1) = g.cols(ox);
                    let mut at = r0 * s.w + c0;
                    for r in r0..r1 {
                        for c in c0..c1 {
                            if beats(src[r * s.w + c], src[at]) {
                                at = r * s.w + c;
                            }
                        }
                    }
                    want[plane * s.h * s.w + at] += grad[(plane * g.oh + oy) * g.ow + ox];
                }
            }
        }
        assert_eq!(got, want);
    }
}

#[test]
fn backward_sends_gradient_to_the_first_arg_max_and_is_thread_independent() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = Shape::new([1, 2, 6, 7]);
    let x = data(s.len(), 9);
    let (_, [oh, ow]) = max_pool2d(&x, s, [3, 3], [2, 2], [1, 1]).unwrap();
    let grad = vec![1.0; s.planes() * oh * ow];
    parallel::set_num_threads(1).unwrap();
    let one = parallel::install(|| max_pool2d_backward(&x, s, [3, 3], [2, 2], [1, 1], &grad)).unwrap();
    parallel::set_num_threads(2).unwrap();
    let two = parallel::install(|| max_pool2d_backward(&x, s, [3, 3], [2, 2], [1, 1], &grad)).unwrap();
    assert_eq!(one, two);
    assert_eq!(one.iter().sum::<f64>(), grad.len() as f64);
    let sg = vec![1.0; 4 * s.len()];
    let a = sppf_backward(&x, s, 3, &sg).unwrap();
    assert!(a.iter().all(|&v| v >= 1.0));
    assert_eq!(a.iter().sum::<f64>(), sg.len() as f64);
}

#[test]
fn bad_arguments_are_errors() {
    let s = Shape::new([1, 1, 4, 4]);
    let x = vec![0.0f32; 16];
    assert!(max_pool2d(&x, s, [0, 2], [1, 1], [0, 0]).is_err());
    assert!(max_pool2d(&x, s, [3, 3], [1, 1], [2, 0]).is_err());
    assert!(max_pool2d(&x, s, [6, 6], [1, 1], [0, 0]).is_err());
    assert!(max_pool2d(&x[..15], s, [2, 2], [1, 1], [0, 0]).is_err());
    assert!(sppf(&x, s, 4).is_err());
    assert!(sppf(&x, s, 0).is_err());
    assert!(max_pool2d(&x, s, [1 << 40, 2], [1, 1], [1 << 39, 0]).is_err());
    let wide = sppf(&x, s, (1 << 40) + 1).unwrap();
    assert_eq!(wide, sppf(&x, s, 9).unwrap());
    let (empty, _) = max_pool2d(&[] as &[f32], Shape::new([0, 3, 4, 4]), [2, 2], [2, 2], [0, 0]).unwrap();
    assert!(empty.is_empty());
}
