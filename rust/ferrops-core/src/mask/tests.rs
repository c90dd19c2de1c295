//! Unit tests of the mask kernels, and a deterministic fuzz of the string
//! decoder and the rasteriser (never a panic, always a valid mask or an error).

use super::codec::{compress, decompress};
use super::polygon::{from_boxes, from_polygons};
use super::rle::{area, decode, encode, encode_row_major, iou, merge, runs_of, to_bbox, RunRule};
use super::Rle;
use crate::test_rng::Lcg;

fn random_mask(rng: &mut Lcg, pixels: usize, density: f64, blocky: bool) -> Vec<u8> {
    let mut value = 0u8;
    (0..pixels)
        .map(|_| {
            if !blocky || rng.unit_f64() < 0.1 {
                value = u8::from(rng.unit_f64() < density);
            }
            value
        })
        .collect()
}

/// The dense walk of pycocotools' `rleFrPoly`, every step of every edge kept, as
/// the reference for the rasteriser's skipping walk.
fn dense_reference(xy: &[f64], h: u32, w: u32) -> Vec<u32> {
    let k = xy.len() / 2;
    let c_int = |x: f64| if x.is_nan() { i32::MIN as i64 } else { x.trunc() as i64 };
    let x: Vec<i64> = (0..=k).map(|j| c_int(5.0 * xy[2 * (j % k)] + 0.5)).collect();
    let y: Vec<i64> = (0..=k).map(|j| c_int(5.0 * xy[2 * (j % k) + 1] + 0.5)).collect();
    let (mut u, mut v) = (Vec::new(), Vec::new());
    for j in 0..k {
        let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
        let (dx, dy) = ((xe - xs).abs(), (ys - ye).abs());
        let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
        if flip {
            (xs, xe, ys, ye) = (xe, xs, ye, ys);
        }
        if dx >= dy {
            let s = (ye - ys) as f64 / dx as f64;
            for d in 0..=dx {
                let t = if flip { dx - d } else { d };
                u.push(t + xs);
                v.push(c_int(ys as f64 + s * t as f64 + 0.5));
            }
        } else {
            let s = (xe - xs) as f64 / dy as f64;
            for d in 0..=dy {
                let t = if flip { dy - d } else { d };
                v.push(t + ys);
                u.push(c_int(xs as f64 + s * t as f64 + 0.5));
            }
        }
    }
    let mut a = Vec::new();
    for j in 1..u.len() {
        if u[j] == u[j - 1] {
            continue;
        }
        let xd = (if u[j] < u[j - 1] { u[j] } else { u[j] - 1 }) as f64;
        let xd = (xd + 0.5) / 5.0 - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > f64::from(w) - 1.0 {
            continue;
        }
        let yd = ((v[j].min(v[j - 1]) as f64 + 0.5) / 5.0 - 0.5).clamp(0.0, f64::from(h)).ceil();
        a.push(xd as u64 * u64::from(h) + yd as u64);
    }
    a.push(u64::from(h) * u64::from(w));
    a.sort_unstable();
    let mut p = 0;
    let d: Vec<u32> = a
        .iter()
        .map(|&t| {
            let r = (t - p) as u32;
            p = t;
            r
        })
        .collect();
    let mut b = vec![d[0]];
    let mut j = 1;
    while j < d.len() {
        if d[j] > 0 {
            b.push(d[j]);
            j += 1;
        } else {
            j += 1;
            if j < d.len() {
                *b.last_mut().unwrap() += d[j];
                j += 1;
            }
        }
    }
    b
}

#[test]
fn compress_round_trips_and_uses_two_back_differences() {
    // Runs 3, 5, 3, 5: the fourth is written as 5 - 5 = 0.
    assert_eq!(compress(&[3, 5, 3, 5]), b"3530".to_vec());
    let mut rng = Lcg::new(1);
    for _ in 0..200 {
        let counts: Vec<u32> = (0..1 + rng.next_u64() % 40).map(|_| (rng.next_u64() >> 40) as u32).collect();
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let rle = decompress("t", "s", &compress(&counts), total, 1).unwrap();
        assert_eq!(rle.counts, counts);
    }
}

#[test]
fn decompress_refuses_malformed_strings() {
    assert!(decompress("t", "s", b"3", 2, 2).is_err()); // sums short of h * w
    assert!(decompress("t", "s", b"5", 2, 2).is_err()); // past h * w
    assert!(decompress("t", "s", b"4 ", 2, 2).is_err()); // invalid character
    assert!(decompress("t", "s", b"4p", 2, 2).is_err()); // past 'o'
    assert!(decompress("t", "s", b"0P", 2, 2).is_err()); // ends inside a run
    assert!(decompress("t", "s", b"", 0, 5).is_ok());
    assert!(decompress("t", "s", b"0", 1 << 20, 1 << 20).is_err()); // h * w >= 2**32
}

#[test]
fn encode_decode_area_bbox() {
    let mut rng = Lcg::new(2);
    for &(h, w) in &[(1usize, 1usize), (3, 5), (17, 9), (64, 33)] {
        for density in [0.0, 0.3, 1.0] {
            let data = random_mask(&mut rng, h * w * 3, density, true);
            let rles = encode(&data, h as u64, w as u64, 3, RunRule::ValueChange).unwrap();
            assert_eq!(decode(&rles).unwrap(), data);
            for (i, rle) in rles.iter().enumerate() {
                let mask = &data[i * h * w..(i + 1) * h * w];
                assert_eq!(area(rle) as usize, mask.iter().filter(|&&b| b == 1).count());
                let ys: Vec<usize> = (0..h * w).filter(|&p| mask[p] == 1).map(|p| p % h).collect();
                let xs: Vec<usize> = (0..h * w).filter(|&p| mask[p] == 1).map(|p| p / h).collect();
                if !xs.is_empty() {
                    let (x0, x1) = (*xs.iter().min().unwrap(), *xs.iter().max().unwrap());
                    let (y0, y1) = (*ys.iter().min().unwrap(), *ys.iter().max().unwrap());
                    let bb = to_bbox(rle);
                    assert_eq!(bb[0], x0 as f64);
                    assert_eq!(bb[2], (x1 - x0 + 1) as f64);
                    // A run over two columns takes the full height (pycocotools).
                    assert!(bb[1] <= y0 as f64 && bb[3] >= (y1 - y0 + 1) as f64);
                }
            }
            // Row-major input gives the same runs as its column-major transpose.
            let row_major: Vec<u8> = (0..3)
                .flat_map(|i| {
                    let d = &data;
                    (0..h).flat_map(move |y| (0..w).map(move |x| d[i * h * w + x * h + y]))
                })
                .collect();
            assert_eq!(encode_row_major(&row_major, h as u64, w as u64, 3, RunRule::ValueChange).unwrap(), rles);
        }
    }
}

#[test]
fn nonzero_rule_treats_every_nonzero_byte_as_foreground() {
    let data = [0u8, 2, 7, 1, 0, 0, 255, 3, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0];
    assert_eq!(runs_of(&data, RunRule::NonZero), vec![1, 3, 2, 2, 1, 9, 1]);
    assert_eq!(runs_of(&data, RunRule::ValueChange)[..4], [1, 1, 1, 1]);
}

#[test]
fn merge_and_iou_agree_with_dense_masks_for_any_thread_count() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Lcg::new(3);
    let (h, w, n) = (23usize, 31usize, 12usize);
    let data = random_mask(&mut rng, h * w * n, 0.4, true);
    let rles = encode(&data, h as u64, w as u64, n, RunRule::ValueChange).unwrap();
    let crowd: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    let mut results = Vec::new();
    for threads in [1, 2] {
        crate::parallel::set_num_threads(threads).unwrap();
        results.push(crate::parallel::install(|| iou(&rles, &rles, &crowd)).unwrap());
    }
    assert_eq!(
        results[0].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        results[1].iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    let mask = |i: usize| &data[i * h * w..(i + 1) * h * w];
    for d in 0..n {
        for g in 0..n {
            let inter = mask(d).iter().zip(mask(g)).filter(|(a, b)| **a == 1 && **b == 1).count();
            let union = if crowd[g] {
                mask(d).iter().filter(|&&a| a == 1).count()
            } else {
                mask(d).iter().zip(mask(g)).filter(|(a, b)| **a == 1 || **b == 1).count()
            };
            let want = if inter == 0 { 0.0 } else { inter as f64 / union as f64 };
            assert_eq!(results[0][d * n + g], want);
        }
    }
    for intersect in [false, true] {
        let merged = merge(&rles[..4], intersect).unwrap();
        let dense: Vec<u8> = (0..h * w)
            .map(|p| {
                let bits = (0..4).map(|i| mask(i)[p] == 1);
                u8::from(if intersect { bits.clone().all(|b| b) } else { bits.clone().any(|b| b) })
            })
            .collect();
        assert_eq!(decode(std::slice::from_ref(&merged)).unwrap(), dense);
        assert_eq!(merged, encode(&dense, h as u64, w as u64, 1, RunRule::ValueChange).unwrap()[0]);
    }
}

#[test]
fn rasteriser_matches_the_dense_walk() {
    let mut rng = Lcg::new(4);
    for case in 0..20000 {
        let (h, w) = (1 + (rng.next_u64() % 40) as u32, 1 + (rng.next_u64() % 40) as u32);
        let k = 3 + (rng.next_u64() % 8) as usize;
        // Mostly inside the image, some far outside, some on exact pixel centres.
        let spread = if case % 5 == 0 { 400.0 } else { 50.0 };
        let xy: Vec<f64> = (0..2 * k)
            .map(|_| if case % 7 == 0 { (rng.next_u64() % 45) as f64 - 2.0 } else { rng.signed_f64() * spread + 20.0 })
            .collect();
        let got = from_polygons("t", "p", &xy, &[0, xy.len()], u64::from(h), u64::from(w)).unwrap();
        assert_eq!(got[0].counts, dense_reference(&xy, h, w), "polygon {xy:?} in [{h}, {w}]");
    }
}

#[test]
fn fuzz_never_panics() {
    let mut rng = Lcg::new(5);
    let base = compress(&[5, 3, 0, 2, 7, 1, 12, 4, 2, 3, 1]);
    for _ in 0..20000 {
        // Mutated valid strings and random bytes in and around the alphabet.
        let mut s = base.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let i = (rng.next_u64() % (s.len() as u64 + 1)) as usize;
            let byte = 40 + (rng.next_u64() % 90) as u8;
            match rng.next_u64() % 3 {
                0 if i < s.len() => s[i] = byte,
                1 => s.insert(i, byte),
                _ if i < s.len() => {
                    s.remove(i);
                }
                _ => {}
            }
        }
        let (h, w) = (rng.next_u64() % 12, rng.next_u64() % 12);
        if let Ok(rle) = decompress("t", "s", &s, h, w) {
            assert_eq!(decode(std::slice::from_ref(&rle)).unwrap().len() as u64, h * w);
            let _ = (area(&rle), to_bbox(&rle), rle.to_compressed());
            let other = Rle { h: rle.h, w: rle.w, counts: vec![rle.h * rle.w] };
            let _ = iou(std::slice::from_ref(&rle), std::slice::from_ref(&other), &[true]).unwrap();
            let merged = merge(&[rle, other], false).unwrap();
            assert_eq!(merged.counts.iter().map(|&c| u64::from(c)).sum::<u64>(), h * w);
        }
    }
    for _ in 0..5000 {
        let k = (rng.next_u64() % 7) as usize;
        let xy: Vec<f64> = (0..2 * k + (rng.next_u64() % 2) as usize)
            .map(|_| match rng.next_u64() % 6 {
                0 => f64::NAN,
                1 => rng.signed_f64() * 1e9,
                2 => rng.signed_f64() * 4e8,
                _ => rng.signed_f64() * 30.0,
            })
            .collect();
        let (h, w) = (rng.next_u64() % 20, rng.next_u64() % 20);
        if let Ok(rles) = from_polygons("t", "p", &xy, &[0, xy.len()], h, w) {
            assert_eq!(rles[0].counts.iter().map(|&c| u64::from(c)).sum::<u64>(), h * w);
        }
        let _ = from_boxes("t", "b", &xy[..xy.len() / 4 * 4], h, w);
    }
}
