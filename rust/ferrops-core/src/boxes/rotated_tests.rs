use super::*;
use crate::test_rng::Lcg;

fn ccw_degrees() -> Convention {
    Convention::parse("test", "deg", false).unwrap()
}

#[test]
fn axis_aligned_boxes_match_the_plain_iou() {
    // Centred 2x2 and a 2x2 shifted by 1: overlap 2, union 6.
    let a = [0.0f64, 0.0, 2.0, 2.0, 0.0];
    let b = [1.0f64, 0.0, 2.0, 2.0, 0.0];
    let got = box_iou_rotated(&a, &b, OverlapMode::Iou, false, ccw_degrees()).unwrap();
    assert!((got[0] - 2.0 / 6.0).abs() < 1e-15, "{got:?}");
    let iof = box_iou_rotated(&a, &b, OverlapMode::Iof, false, ccw_degrees()).unwrap();
    assert!((iof[0] - 0.5).abs() < 1e-15);
    // A square turned by 90 degrees is itself; by 45 its overlap is the octagon.
    let turned = [0.0f64, 0.0, 2.0, 2.0, 90.0];
    assert_eq!(box_iou_rotated(&a, &turned, OverlapMode::Iou, false, ccw_degrees()).unwrap(), vec![1.0]);
    let diamond = [0.0f64, 0.0, 2.0, 2.0, 45.0];
    let octagon = 8.0 * (2.0f64.sqrt() - 1.0);
    let want = octagon / (8.0 - octagon);
    let got = box_iou_rotated(&a, &diamond, OverlapMode::Iou, true, ccw_degrees()).unwrap();
    assert!((got[0] - want).abs() < 1e-14, "{got:?} vs {want}");
}

#[test]
fn direction_and_unit_follow_the_convention() {
    // A 4x1 box at 30 degrees CCW (y down) is the same as at -30 clockwise and
    // at pi/6 radians CCW.
    let a = [0.0f64, 0.0, 4.0, 1.0, 0.0];
    let b_ccw = [1.0f64, -0.5, 4.0, 1.0, 30.0];
    let b_rad = [1.0f64, -0.5, 4.0, 1.0, std::f64::consts::PI / 6.0];
    let b_cw = [1.0f64, -0.5, 4.0, 1.0, -30.0];
    let ccw = box_iou_rotated(&a, &b_ccw, OverlapMode::Iou, false, ccw_degrees()).unwrap()[0];
    let rad = box_iou_rotated(&a, &b_rad, OverlapMode::Iou, false, Convention::parse("t", "rad", false).unwrap());
    let cw = box_iou_rotated(&a, &b_cw, OverlapMode::Iou, false, Convention::parse("t", "deg", true).unwrap());
    assert!((ccw - rad.unwrap()[0]).abs() < 1e-15);
    assert!((ccw - cw.unwrap()[0]).abs() < 1e-15);
    // CCW on screen turns the box's right end up (towards -y), towards (1, -0.5).
    let mirrored = [1.0f64, -0.5, 4.0, 1.0, -30.0];
    assert!(ccw > box_iou_rotated(&a, &mirrored, OverlapMode::Iou, false, ccw_degrees()).unwrap()[0]);
}

#[test]
fn degenerate_and_invalid_boxes() {
    let a = [0.0f32, 0.0, 0.0, 2.0, 10.0];
    assert_eq!(box_iou_rotated(&a, &a, OverlapMode::Iou, false, ccw_degrees()).unwrap(), vec![0.0]);
    assert!(box_iou_rotated(&[0.0f32, 0.0, -1.0, 2.0, 0.0], &a, OverlapMode::Iou, false, ccw_degrees()).is_err());
    assert!(box_iou_rotated(&[0.0f32, 0.0, 1.0, 2.0, f32::NAN], &a, OverlapMode::Iou, false, ccw_degrees()).is_err());
    assert!(box_iou_rotated(&[0.0f32; 4], &a, OverlapMode::Iou, false, ccw_degrees()).is_err());
    assert!(box_iou_rotated(&a, &[a, a].concat(), OverlapMode::Iou, true, ccw_degrees()).is_err());
    assert!(Convention::parse("f", "grad", false).is_err());
}

fn random_rotated(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Lcg::new(seed);
    let mut next = move || f64::from(rng.unit_f32());
    let mut boxes = Vec::new();
    let mut scores = Vec::new();
    for _ in 0..n {
        boxes.extend_from_slice(&[
            next() * 300.0,
            next() * 300.0,
            5.0 + next() * 40.0,
            5.0 + next() * 40.0,
            next() * 720.0,
        ]);
        scores.push((next() * 16.0).round() / 16.0);
    }
    (boxes, scores)
}

#[test]
fn grid_walk_equals_the_quadratic_walk() {
    let (boxes, scores) = random_rotated(2000, 3);
    let rects = rects(&boxes, ccw_degrees());
    for threshold in [0.0, 0.1, 0.5, 1.0] {
        let order = rank_by_score(&scores, 0..2000);
        let mut want: Vec<u32> = Vec::new();
        for &i in &order {
            let r = &rects[i as usize];
            if threshold <= 0.0 && !want.is_empty() {
                continue;
            }
            if want.iter().all(|&k| overlap(&rects[k as usize], r, OverlapMode::Iou) < threshold) {
                want.push(i);
            }
        }
        let got = nms_rotated(&boxes, &scores, threshold, ccw_degrees(), &Cancel::new()).unwrap();
        assert_eq!(got, want.into_iter().map(i64::from).collect::<Vec<_>>(), "threshold {threshold}");
    }
}

#[test]
fn batched_equals_per_class() {
    let (boxes, scores) = random_rotated(1500, 5);
    let idxs: Vec<i64> = (0..1500).map(|i| (i * 7 % 4) as i64).collect();
    let got = batched_nms_rotated(&boxes, &scores, &idxs, 0.3, ccw_degrees(), &Cancel::new()).unwrap();
    let mut want: Vec<i64> = Vec::new();
    for class in 0..4 {
        let members: Vec<usize> = (0..1500).filter(|&i| idxs[i] == class).collect();
        let sub: Vec<f64> = members.iter().flat_map(|&i| boxes[5 * i..5 * i + 5].to_vec()).collect();
        let sub_scores: Vec<f64> = members.iter().map(|&i| scores[i]).collect();
        let kept = nms_rotated(&sub, &sub_scores, 0.3, ccw_degrees(), &Cancel::new()).unwrap();
        want.extend(kept.into_iter().map(|k| members[k as usize] as i64));
    }
    want.sort_by(|&p, &q| scores[q as usize].total_cmp(&scores[p as usize]).then(p.cmp(&q)));
    assert_eq!(got, want);
}
