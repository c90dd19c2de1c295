//! A deterministic fuzzer for the two mask kernels that read caller data byte by
//! byte: the compressed-RLE decoder (`codec::decompress`) and the polygon
//! rasteriser (`polygon::from_polygons` / `from_boxes`). Strings are random bytes
//! in and around the alphabet, valid strings with flips, insertions, deletions
//! and long runs, or truncations; sizes are small, huge (past `2**32` pixels),
//! and "negative" ones as the binding would pass them after a cast. Polygons hold
//! NaN, infinities, values past the C `int` range, points far outside the image,
//! degenerate edges and odd lengths, on images from 0 to 65535 pixels a side.
//!
//! Every case must give `Ok` with runs summing to `h * w` (and decodable, and
//! usable by area/bbox/IoU/merge/compress) or an `Err`: never a panic. The
//! default budget is a few seconds; `FERROPS_MASK_FUZZ_CASES=N` runs N cases of
//! each kind and `FERROPS_MASK_FUZZ_SEED=S` another sequence, e.g.
//! `FERROPS_MASK_FUZZ_CASES=5000000 cargo test -p ferrops-core --profile dev-opt --test mask_fuzz`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferrops_core::mask::codec::{compress, decompress};
use ferrops_core::mask::polygon::{from_boxes, from_polygons};
use ferrops_core::mask::rle::{area, decode, iou, merge, to_bbox};
use ferrops_core::mask::Rle;

/// xorshift64*: a fixed sequence per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn signed(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn budget(default: u64) -> (u64, u64) {
    let cases = std::env::var("FERROPS_MASK_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let seed = std::env::var("FERROPS_MASK_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed);
    (cases, seed)
}

/// A size the binding can pass: small, on the `2**32` edge, huge, or a negative
/// value cast to `u64`.
fn size(rng: &mut Rng) -> (u64, u64) {
    match rng.below(8) {
        0 => (65536, 65536),
        1 => (65535, 65537),
        2 => (1 << 40, rng.below(3)),
        3 => ((-3i64) as u64, 4),
        4 => (rng.below(70_000), rng.below(70_000)),
        _ => (rng.below(14), rng.below(14)),
    }
}

fn random_string(rng: &mut Rng) -> Vec<u8> {
    let runs: Vec<u32> = (0..rng.below(12))
        .map(|_| match rng.below(6) {
            0 => u32::MAX - rng.below(4) as u32,
            1 => rng.below(1 << 31) as u32,
            _ => rng.below(20) as u32,
        })
        .collect();
    let mut s = compress(&runs);
    match rng.below(5) {
        0 => s = (0..rng.below(40)).map(|_| rng.below(256) as u8).collect(),
        1 => s.extend(std::iter::repeat_n(b'o', rng.below(30) as usize)),
        2 => s.truncate(rng.below(s.len() as u64 + 1) as usize),
        _ => {
            for _ in 0..rng.below(4) {
                let i = rng.below(s.len() as u64 + 1) as usize;
                let byte = 40 + rng.below(90) as u8;
                match rng.below(3) {
                    0 if i < s.len() => s[i] = byte,
                    1 => s.insert(i, byte),
                    _ if i < s.len() => {
                        s.remove(i);
                    }
                    _ => {}
                }
            }
        }
    }
    s
}

/// Everything a decoded RLE may be used for; `dense` when it is small enough to
/// decode here.
fn exercise(rle: Rle) {
    let pixels = rle.pixels();
    assert_eq!(rle.counts.iter().map(|&c| u64::from(c)).sum::<u64>(), pixels);
    if pixels <= 1 << 16 {
        let mask = decode(std::slice::from_ref(&rle)).unwrap();
        assert_eq!(mask.len() as u64, pixels);
        assert_eq!(mask.iter().map(|&b| u64::from(b)).sum::<u64>(), u64::from(area(&rle)));
    }
    let bbox = to_bbox(&rle);
    assert!(bbox.iter().all(|v| v.is_finite() && *v >= 0.0), "{bbox:?}");
    assert_eq!(decompress("t", "s", &rle.to_compressed(), u64::from(rle.h), u64::from(rle.w)).unwrap(), rle);
    let full = Rle { h: rle.h, w: rle.w, counts: vec![0, rle.h * rle.w] };
    let ious = iou(std::slice::from_ref(&rle), std::slice::from_ref(&full), &[false]).unwrap();
    assert!(ious[0].is_nan() || (0.0..=1.0).contains(&ious[0]), "{ious:?}");
    let merged = merge(&[rle, full], true).unwrap();
    assert_eq!(merged.counts.iter().map(|&c| u64::from(c)).sum::<u64>(), pixels);
}

#[test]
fn rle_decoder_never_panics() {
    let (cases, seed) = budget(40_000);
    let mut rng = Rng(seed);
    for case in 0..cases {
        let s = random_string(&mut rng);
        let (h, w) = size(&mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if let Ok(rle) = decompress("t", "s", &s, h, w) {
                exercise(rle);
            }
        }));
        assert!(outcome.is_ok(), "case {case}: decompress({:?}, {h}, {w}) panicked", String::from_utf8_lossy(&s));
    }
}

fn coordinate(rng: &mut Rng, w: f64) -> f64 {
    match rng.below(12) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => rng.signed() * 1e300,
        4 => rng.signed() * 4.3e8,
        5 => 1e7 + rng.signed() * 10.0,
        6 => (rng.below(9) as f64) * 0.2 - 0.5,
        _ => rng.signed() * w * 1.5 + w / 2.0,
    }
}

#[test]
fn rasteriser_never_panics() {
    let (cases, seed) = budget(20_000);
    let mut rng = Rng(seed.wrapping_add(1));
    for case in 0..cases {
        let (h, w) = match rng.below(6) {
            0 => size(&mut rng),
            1 => (rng.below(65536), rng.below(65536)),
            _ => (rng.below(40), rng.below(40)),
        };
        let span = (w.min(1 << 20)) as f64;
        let polygons = 1 + rng.below(3) as usize;
        let mut coords = Vec::new();
        let mut offsets = vec![0];
        for _ in 0..polygons {
            let n = rng.below(14) as usize;
            coords.extend((0..n).map(|_| coordinate(&mut rng, span)));
            offsets.push(coords.len());
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if let Ok(rles) = from_polygons("t", "p", &coords, &offsets, h, w) {
                assert_eq!(rles.len(), polygons);
                rles.into_iter().for_each(exercise);
            }
            if let Ok(rles) = from_boxes("t", "b", &coords[..coords.len() / 4 * 4], h, w) {
                rles.into_iter().for_each(exercise);
            }
        }));
        assert!(outcome.is_ok(), "case {case}: polygons {coords:?} / {offsets:?} in [{h}, {w}] panicked");
    }
}
