use super::*;
use crate::interrupt::Cancel;
use crate::test_rng::Lcg;

/// The quadratic reference walk.
fn brute_force(boxes: &[f32], scores: &[f32], threshold: f64) -> Vec<i64> {
    let order = rank_by_score(scores, 0..scores.len() as u32);
    let mut kept: Vec<u32> = Vec::new();
    for &i in &order {
        let b = box_at(boxes, i);
        if kept.iter().all(|&k| (iou(box_at(boxes, k), b) as f64) <= threshold) {
            kept.push(i);
        }
    }
    kept.into_iter().map(i64::from).collect()
}

fn random_boxes(n: usize, seed: u64, extent: f32, size: f32) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Lcg::new(seed);
    let mut next = move || rng.unit_f32();
    let mut boxes = Vec::with_capacity(4 * n);
    let mut scores = Vec::with_capacity(n);
    for k in 0..n {
        let (x, y) = (next() * extent, next() * extent);
        // A few huge boxes exercise the grid's large-box list.
        let scale = if k % 97 == 0 { 20.0 } else { 1.0 };
        let (w, h) = (next() * size * scale, next() * size * scale);
        boxes.extend_from_slice(&[x, y, x + w, y + h]);
        scores.push((next() * 8.0).round() / 8.0); // many ties
    }
    (boxes, scores)
}

#[test]
fn plain_and_grid_walks_equal_brute_force() {
    for n in [GRID_MIN_BOXES - 1, 5000] {
        for (seed, threshold) in [(1, 0.5), (2, 0.0), (3, 0.3), (4, 1.0), (5, 0.7)] {
            let (boxes, scores) = random_boxes(n, seed, 1000.0, 60.0);
            assert_eq!(
                nms(&boxes, &scores, threshold, None, &Cancel::new()).unwrap(),
                brute_force(&boxes, &scores, threshold)
            );
        }
    }
}

#[test]
fn batched_equals_per_class_nms() {
    let (boxes, scores) = random_boxes(3000, 9, 300.0, 40.0);
    let idxs: Vec<i64> = (0..3000).map(|i| (i * 7 % 5) as i64 - 2).collect();
    let got = batched_nms(&boxes, &scores, &idxs, 0.5, None, &Cancel::new()).unwrap();
    let mut want = Vec::new();
    for class in -2..3 {
        let members: Vec<usize> = (0..3000).filter(|&i| idxs[i] == class).collect();
        let sub_boxes: Vec<f32> = members.iter().flat_map(|&i| boxes[4 * i..4 * i + 4].to_vec()).collect();
        let sub_scores: Vec<f32> = members.iter().map(|&i| scores[i]).collect();
        want.extend(
            nms(&sub_boxes, &sub_scores, 0.5, None, &Cancel::new())
                .unwrap()
                .into_iter()
                .map(|k| members[k as usize] as i64),
        );
    }
    want.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
    assert_eq!(got, want);
}

#[test]
fn soft_nms_linear_by_hand() {
    // Box 1 overlaps box 0 with IoU 1/3 (> 0.3): its score 0.9 becomes 0.6.
    let boxes = [0.0f64, 0.0, 2.0, 1.0, 1.0, 0.0, 3.0, 1.0, 10.0, 10.0, 11.0, 11.0];
    let scores = [1.0, 0.9, 0.8];
    let (keep, s) = soft_nms(&boxes, &scores, 0.3, 0.5, 0.001, SoftMethod::Linear, &Cancel::new()).unwrap();
    assert_eq!(keep, vec![0, 2, 1]);
    assert!((s[2] - 0.9 * (2.0 / 3.0)).abs() < 1e-12);
}

#[test]
fn matrix_nms_by_hand() {
    // Box 1 overlaps box 0 with IoU 1/3; box 2 is alone.
    let boxes = [0.0f64, 0.0, 2.0, 1.0, 1.0, 0.0, 3.0, 1.0, 10.0, 10.0, 11.0, 11.0];
    let scores = [1.0, 0.9, 0.8];
    let out = matrix_nms(&boxes, &scores, None, MatrixKernel::Linear, 2.0, &Cancel::new()).unwrap();
    assert_eq!(out[0], 1.0);
    assert!((out[1] - 0.9 * (2.0 / 3.0)).abs() < 1e-12);
    assert_eq!(out[2], 0.8);
    let classes = [0, 1, 1];
    let out = matrix_nms(&boxes, &scores, Some(&classes), MatrixKernel::Gaussian, 2.0, &Cancel::new()).unwrap();
    assert_eq!(out, scores.to_vec());
}

#[test]
fn bad_arguments_are_errors() {
    let boxes = [0.0f32, 0.0, 1.0, 1.0];
    assert!(nms(&boxes, &[0.5, 0.4], 0.5, None, &Cancel::new()).is_err());
    assert!(nms(&boxes, &[f32::NAN], 0.5, None, &Cancel::new()).is_err());
    assert!(nms(&boxes, &[0.5], 1.5, None, &Cancel::new()).is_err());
    assert!(batched_nms(&boxes, &[0.5], &[], 0.5, None, &Cancel::new()).is_err());
    assert!(soft_nms(&boxes, &[0.5], 0.5, 0.0, 0.0, SoftMethod::Gaussian, &Cancel::new()).is_err());
    assert!(SoftMethod::parse("hard").is_err());
    assert!(nms::<f32>(&[], &[], 0.5, None, &Cancel::new()).unwrap().is_empty());
}

/// RUN-INTERRUPT: a raised token stops every NMS function with `Interrupted`
/// naming it (an unraised one changes nothing: the tests above).
#[test]
fn a_raised_token_stops_every_nms() {
    let (boxes, scores) = random_boxes(5000, 12, 1000.0, 60.0);
    let idxs: Vec<i64> = (0..5000).map(|i| i % 3).collect();
    let raised = Cancel::new();
    raised.raise();
    let stopped = |err: FerropsError, function: &str| assert_eq!(err, FerropsError::interrupted(function.to_owned()));
    stopped(nms(&boxes, &scores, 0.5, None, &raised).unwrap_err(), "nms");
    stopped(batched_nms(&boxes, &scores, &idxs, 0.5, None, &raised).unwrap_err(), "batched_nms");
    stopped(soft_nms(&boxes, &scores, 0.5, 0.5, 0.001, SoftMethod::Linear, &raised).unwrap_err(), "soft_nms");
    stopped(matrix_nms(&boxes, &scores, None, MatrixKernel::Linear, 2.0, &raised).unwrap_err(), "matrix_nms");
}

#[test]
fn max_output_is_a_prefix_of_the_full_result() {
    let (boxes, scores) = random_boxes(3000, 11, 400.0, 40.0);
    let full = nms(&boxes, &scores, 0.5, None, &Cancel::new()).unwrap();
    let idxs: Vec<i64> = (0..3000).map(|i| (i % 3) as i64).collect();
    let full_batched = batched_nms(&boxes, &scores, &idxs, 0.5, None, &Cancel::new()).unwrap();
    for k in [0, 1, 7, 100, full.len(), full.len() + 5] {
        assert_eq!(nms(&boxes, &scores, 0.5, Some(k), &Cancel::new()).unwrap(), full[..k.min(full.len())]);
        let got = batched_nms(&boxes, &scores, &idxs, 0.5, Some(k), &Cancel::new()).unwrap();
        assert_eq!(got, full_batched[..k.min(full_batched.len())]);
    }
}
