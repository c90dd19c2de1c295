use super::histogram::{run_starts, GROUP};
use super::*;
use crate::simd::{detected, set_level, SimdLevel};
use crate::test_rng::Lcg;

/// The definition, one pixel at a time.
fn reference(target: &[i64], pred: &[i64], c: usize, ignore: Option<i64>) -> Vec<i64> {
    let mut m = vec![0i64; c * c];
    for (&t, &p) in target.iter().zip(pred) {
        if Some(t) != ignore {
            m[t as usize * c + p as usize] += 1;
        }
    }
    m
}

fn lcg_labels(n: usize, c: u64, seed: u64) -> Vec<i64> {
    let mut rng = Lcg::new(seed);
    (0..n).map(|_| rng.below(c) as i64).collect()
}

#[test]
fn small_matrix_by_hand() {
    let target: [u8; 6] = [0, 0, 1, 2, 2, 2];
    let pred: [i64; 6] = [0, 1, 1, 2, 0, 2];
    let m = confusion_matrix(Labels::U8(&target), Labels::I64(&pred), 3, None).unwrap();
    assert_eq!(m, vec![1, 1, 0, 0, 1, 0, 1, 0, 2]);
    // ignore_index inside [0, C): row 2 is skipped, its predictions too.
    let m = confusion_matrix(Labels::U8(&target), Labels::I64(&pred), 3, Some(2)).unwrap();
    assert_eq!(m, vec![1, 1, 0, 0, 1, 0, 0, 0, 0]);
}

#[test]
fn every_label_type_pair_matches_the_definition() {
    let c = 7usize;
    let t = lcg_labels(5000, 8, 1); // label 7 plays ignore_index
    let p = lcg_labels(5000, 7, 2);
    let want = reference(&t, &p, c, Some(7));
    macro_rules! typed {
        ($v:expr, $ty:ty, $variant:ident) => {
            Labels::$variant(&*Box::leak($v.iter().map(|&x| x as $ty).collect::<Vec<$ty>>().into_boxed_slice()))
        };
    }
    let all = |v: &Vec<i64>| -> Vec<Labels<'static>> {
        vec![
            typed!(v, u8, U8),
            typed!(v, i8, I8),
            typed!(v, u16, U16),
            typed!(v, i16, I16),
            typed!(v, u32, U32),
            typed!(v, i32, I32),
            typed!(v, u64, U64),
            typed!(v, i64, I64),
        ]
    };
    for tl in all(&t) {
        for pl in all(&p) {
            let got = confusion_matrix(tl, pl, c, Some(7)).unwrap();
            assert_eq!(got, want, "{} / {}", tl.dtype_name(), pl.dtype_name());
        }
    }
}

#[test]
fn shared_and_private_paths_agree() {
    // 200 classes: 202 * 256 cells rounded up to 2^16; over 100k pixels (fewer
    // than 8 per cell) the shared path, over 600k private histograms.
    for (c, n) in [(200usize, 100_000usize), (200, 600_000), (1500, 50_000), (19, 100), (19, 300_000)] {
        let t = lcg_labels(n, c as u64 + 1, 3);
        let p = lcg_labels(n, c as u64, 4);
        let got = confusion_matrix(Labels::I64(&t), Labels::I64(&p), c, Some(c as i64)).unwrap();
        assert_eq!(got, reference(&t, &p, c, Some(c as i64)), "C = {c}");
        // Runs of equal pairs (as in segmentation maps), counted run by run.
        let runs = |v: &[i64]| -> Vec<i64> { v.iter().take(n / 37).flat_map(|&x| [x; 37]).collect() };
        let (t, mut p) = (runs(&t), runs(&p));
        p.iter_mut().step_by(101).for_each(|x| *x = (*x + 1) % c as i64);
        let got = confusion_matrix(Labels::I64(&t), Labels::I64(&p), c, Some(c as i64)).unwrap();
        assert_eq!(got, reference(&t, &p, c, Some(c as i64)), "C = {c}, runs");
    }
}

#[test]
fn every_simd_level_and_thread_count_gives_the_same_matrix() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let t: Vec<u8> = lcg_labels(300_001, 20, 5).iter().map(|&v| if v == 19 { 255 } else { v as u8 }).collect();
    let p: Vec<u8> = lcg_labels(300_001, 19, 6).iter().map(|&v| v as u8).collect();
    let mut seen = Vec::new();
    for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
        set_level(level);
        for threads in [1, 2] {
            crate::parallel::set_num_threads(threads).unwrap();
            for c in [19usize, 700] {
                seen.push((c, crate::parallel::install(|| {
                    confusion_matrix(Labels::U8(&t), Labels::U8(&p), c, Some(255)).unwrap()
                })));
            }
        }
    }
    set_level(detected());
    let t64: Vec<i64> = t.iter().map(|&v| v as i64).collect();
    let p64: Vec<i64> = p.iter().map(|&v| v as i64).collect();
    for (c, m) in seen {
        assert_eq!(m, reference(&t64, &p64, c, Some(255)), "C = {c}");
    }
}

#[test]
fn uint8_runs_at_every_level() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Runs of random length (1..90) of random pairs, bad labels included, and
    // lengths that end mid-group.
    for (c, n, ignore) in [(19usize, 100_003usize, Some(255i64)), (7, 70_001, Some(3)), (7, 63, None), (3, 129, None)] {
        let mut rng = Lcg::new(c as u64);
        let mut next = move |m: u64| rng.below(m);
        let (mut t, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
        while t.len() < n {
            let len = 1 + next(90) as usize;
            let tv = if next(10) == 0 { 255u8 } else { next(c as u64) as u8 };
            let pv = next(c as u64) as u8;
            t.extend(std::iter::repeat_n(tv, len));
            p.extend(std::iter::repeat_n(pv, len));
        }
        t.truncate(n);
        p.truncate(n);
        let t64: Vec<i64> = t.iter().map(|&v| v as i64).collect();
        let p64: Vec<i64> = p.iter().map(|&v| v as i64).collect();
        let first_bad = t.iter().position(|&v| Some(v as i64) != ignore && v as usize >= c);
        for level in [SimdLevel::Scalar, SimdLevel::Avx2] {
            set_level(level);
            let got = confusion_matrix(Labels::U8(&t), Labels::U8(&p), c, ignore);
            match first_bad {
                None => assert_eq!(got.unwrap(), reference(&t64, &p64, c, ignore), "C = {c}, {level:?}"),
                // 255 targets that are not ignored: the first one is reported.
                Some(first) => {
                    assert!(got.unwrap_err().to_string().contains(&format!("255 at flat index {first}")));
                }
            }
            let clean: Vec<u8> = t.iter().map(|&v| if v == 255 { 0 } else { v }).collect();
            let clean64: Vec<i64> = clean.iter().map(|&v| v as i64).collect();
            let got = confusion_matrix(Labels::U8(&clean), Labels::U8(&p), c, ignore).unwrap();
            assert_eq!(got, reference(&clean64, &p64, c, ignore), "C = {c}, {level:?}, clean");
        }
        set_level(detected());
    }
}

#[test]
fn uint8_run_across_the_end_of_a_busy_block() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Busy labels up to just before the end of the block that the first busy
    // group hands to the general path (64 + 2048), then one long run across it.
    let busy = GROUP + BLOCK - 10;
    let mut rng = Lcg::new(11);
    let mut next = move || rng.below(5) as u8;
    let (mut t, mut p): (Vec<u8>, Vec<u8>) = (0..busy).map(|_| (next(), next())).unzip();
    t.extend([3u8; 300]);
    p.extend([4u8; 300]);
    let t64: Vec<i64> = t.iter().map(|&v| v as i64).collect();
    let p64: Vec<i64> = p.iter().map(|&v| v as i64).collect();
    for level in [SimdLevel::Scalar, SimdLevel::Avx2] {
        set_level(level);
        let got = confusion_matrix(Labels::U8(&t), Labels::U8(&p), 5, None).unwrap();
        assert_eq!(got, reference(&t64, &p64, 5, None), "{level:?}");
    }
    set_level(detected());
}

#[test]
fn bad_labels_are_reported_with_value_and_index() {
    let t: [i16; 4] = [0, 255, 1, -3];
    let p: [u8; 4] = [0, 9, 1, 0];
    // The ignored pixel's prediction (9) is not read.
    let err = confusion_matrix(Labels::I16(&t), Labels::U8(&p), 2, Some(255)).unwrap_err();
    assert!(err.to_string().contains("argument 'target'") && err.to_string().contains("-3 at flat index 3"), "{err}");
    let p2: [u8; 4] = [0, 0, 5, 0];
    let err = confusion_matrix(Labels::I16(&t[..3]), Labels::U8(&p2[..3]), 2, Some(255)).unwrap_err();
    assert!(err.to_string().contains("argument 'pred'") && err.to_string().contains("5 at flat index 2"), "{err}");
    let big: [u64; 1] = [u64::MAX];
    let err = confusion_matrix(Labels::U64(&big), Labels::U64(&[0]), 3, None).unwrap_err();
    assert!(err.to_string().contains(&u64::MAX.to_string()), "{err}");
    // Same on the shared path.
    let err = confusion_matrix(Labels::I16(&t), Labels::U8(&p), 1000, Some(255)).unwrap_err();
    assert!(err.to_string().contains("-3 at flat index 3"), "{err}");
}

#[test]
fn run_starts_match_the_definition() {
    let mut rng = Lcg::new(7);
    for _ in 0..200 {
        let states: Vec<u64> = (0..GROUP).map(|_| rng.next_u64()).collect();
        let g: Vec<u32> = states.iter().map(|&s| ((s >> 33) % 3) as u32).collect();
        // Other bits of the last state, so that it often equals g[0].
        let previous = (states[GROUP - 1] >> 40) as u32 % 3;
        let want = (0..GROUP).fold(0u64, |m, j| {
            let before = if j == 0 { previous } else { g[j - 1] };
            m | (((g[j] != before) as u64) << j)
        });
        let g: &[u32; GROUP] = g.as_slice().try_into().unwrap();
        assert_eq!(run_starts(g, previous, false), want);
        if detected() >= SimdLevel::Avx2 {
            assert_eq!(run_starts(g, previous, true), want);
        }
    }
}

#[test]
fn edge_cases() {
    assert!(confusion_matrix(Labels::U8(&[]), Labels::U8(&[]), 0, None).is_err());
    assert!(confusion_matrix(Labels::U8(&[0, 1]), Labels::U8(&[0]), 2, None).is_err());
    assert_eq!(confusion_matrix(Labels::U8(&[]), Labels::I32(&[]), 3, None).unwrap(), vec![0; 9]);
    assert_eq!(confusion_matrix(Labels::U8(&[0, 0, 0]), Labels::U8(&[0, 0, 0]), 1, None).unwrap(), vec![3]);
    // ignore_index beyond the label type's range matches nothing.
    assert_eq!(confusion_matrix(Labels::I8(&[1]), Labels::I8(&[0]), 2, Some(1000)).unwrap(), vec![0, 0, 1, 0]);
    // C beyond the label type's range: every non-negative label is a class.
    assert_eq!(confusion_matrix(Labels::U8(&[255]), Labels::U8(&[0]), 300, None).unwrap()[255 * 300], 1);
    let err = confusion_matrix(Labels::U8(&[0]), Labels::U8(&[0]), usize::MAX / 2, None).unwrap_err();
    assert!(err.to_string().contains("fits in memory"), "{err}");
}
