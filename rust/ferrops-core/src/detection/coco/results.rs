//! Detection results as pycocotools' `loadRes` builds them for bbox results, from
//! a results file or from columns, checked against their ground truth.

use rayon::prelude::*;

use super::checks::{check_bbox, check_integer_id, valid_bbox, Origin, RES_EXPECTED};
use super::dataset::{Annotations, CocoDataset};
use super::ids::{IdStrings, IdValue, StringsAt, STRING_CODE_BASE};
use super::json_pieces::{in_order, parse_records};
use super::keypoints::{check_keypoints, keypoint_box};
use super::raw::RawAnnotation;
use crate::error::Result;

/// The image ids of a ground truth, for checking results.
type ImageSet = rustc_hash::FxHashSet<i64>;

/// What `loadRes` requires of result `i`: an image of the ground truth, a valid
/// box and a finite score; the error names the record.
fn check_result(
    origin: &Origin,
    known_images: &ImageSet,
    i: usize,
    image_id: i64,
    bbox: &[f64],
    score: f64,
) -> Result<()> {
    let known = known_images.contains(&image_id);
    if known && valid_bbox(bbox) && score.is_finite() {
        return Ok(());
    }
    let name = format!("results[{i}]");
    if !known {
        return Err(origin.error(
            RES_EXPECTED,
            format!("{name} has image_id {image_id}, which is not an image of the ground truth"),
        ));
    }
    check_bbox(origin, RES_EXPECTED, &name, bbox)?;
    Err(origin.error(RES_EXPECTED, format!("{name} has a non-finite 'score' {score}")))
}

/// Detection results as columns: `bbox` is `[N, 4]` row-major `[x, y, w, h]`.
pub struct ResultColumns<'a> {
    pub image_id: &'a [i64],
    pub category_id: &'a [i64],
    pub bbox: &'a [f64],
    pub score: &'a [f64],
    /// The area of each box when the caller computed it (pycocotools computes
    /// it in the input's precision for arrays); `w * h` in float64 otherwise.
    pub area: Option<&'a [f64]>,
}

/// Builds the dataset pycocotools' `loadRes` makes from bbox results: ids
/// `1..=N` in input order, `area = w * h`, `iscrowd = 0`, the images and
/// categories of the ground truth. Every result must name an image of the
/// ground truth, have a valid box and a finite score.
pub fn results_from_columns(
    columns: &ResultColumns,
    ground_truth: &CocoDataset,
    origin: &Origin,
) -> Result<CocoDataset> {
    let n = columns.image_id.len();
    if columns.category_id.len() != n
        || columns.score.len() != n
        || columns.bbox.len() != 4 * n
        || columns.area.is_some_and(|a| a.len() != n)
    {
        return Err(origin.error(RES_EXPECTED, "columns of different lengths".to_string()));
    }
    let known_images: ImageSet = ground_truth.image_ids.iter().copied().collect();
    let check = |i: usize| {
        check_integer_id(origin, RES_EXPECTED, columns.image_id[i], || format!("results[{i}]'s image_id"))?;
        check_integer_id(origin, RES_EXPECTED, columns.category_id[i], || format!("results[{i}]'s category_id"))?;
        check_result(origin, &known_images, i, columns.image_id[i], &columns.bbox[4 * i..4 * i + 4], columns.score[i])
    };
    // Checked in parallel; the error reported is the first bad record's.
    if let Some(Err(e)) = (0..n).into_par_iter().with_min_len(4096).map(check).find_first(Result::is_err) {
        return Err(e);
    }
    let bbox: Vec<[f64; 4]> = columns.bbox.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect();
    let area = match columns.area {
        Some(a) => a.to_vec(),
        None => bbox.iter().map(|b| b[2] * b[3]).collect(),
    };
    let annotations = Annotations {
        id: (1..=n as i64).collect(),
        image_id: columns.image_id.to_vec(),
        category_id: columns.category_id.to_vec(),
        bbox,
        area,
        iscrowd: vec![false; n],
        score: columns.score.to_vec(),
        keypoints: Default::default(),
    };
    Ok(CocoDataset::new(
        ground_truth.image_ids.clone(),
        ground_truth.category_ids.clone(),
        annotations,
        None,
        ground_truth.id_strings.clone(),
    ))
}

/// Parses a results file (a JSON list of bbox detections) against its ground
/// truth, as pycocotools' `loadRes(path)` does for bbox results. A string
/// `image_id` names the ground truth's image of that string id; a string
/// `category_id` is coded like the ground truth's (a new one gets a new code).
pub fn parse_results(json: &[u8], ground_truth: &CocoDataset, origin: &Origin) -> Result<CocoDataset> {
    let pieces = parse_records(json, origin, RES_EXPECTED)?;
    let known_images: ImageSet = ground_truth.image_ids.iter().copied().collect();
    let gt_strings = &ground_truth.id_strings;
    // pycocotools' loadRes picks its branch by the first result: keypoint
    // results are those whose first record has keypoints and no box.
    let keypoint_results =
        pieces.iter().flatten().next().is_some_and(|r| r.bbox.is_none_or(|b| b.len == 0) && r.keypoints.is_some());
    let parts = in_order(pieces, |records, offset| {
        results_piece(records, offset, &known_images, gt_strings, origin, keypoint_results)
    })?;
    let mut strings = gt_strings.clone();
    let mut pending = Vec::with_capacity(parts.len());
    let mut annotations = Annotations::concat(
        parts
            .into_iter()
            .map(|(part, new_categories)| {
                pending.push(new_categories);
                part
            })
            .collect(),
    );
    for (row, s) in pending.into_iter().flatten() {
        annotations.category_id[row] = strings.intern(&s);
    }
    Ok(CocoDataset::new(ground_truth.image_ids.clone(), ground_truth.category_ids.clone(), annotations, None, strings))
}

/// Result records `offset..` checked and as `loadRes` stores them: ids counting
/// from 1 in file order, `area = w * h`, not crowd; with the string category
/// ids the ground truth does not have, by record index, coded afterwards.
/// `keypoint_results`: the box and area are the keypoints' extent (pycocotools'
/// keypoints branch); otherwise keypoints are kept beside the box.
fn results_piece(
    records: Vec<RawAnnotation>,
    offset: usize,
    known_images: &ImageSet,
    gt_strings: &IdStrings,
    origin: &Origin,
    keypoint_results: bool,
) -> Result<(Annotations, StringsAt)> {
    let mut annotations = Annotations::with_capacity(records.len());
    let mut new_categories = Vec::new();
    for (i, r) in (offset..).zip(records) {
        let missing = |key: &str| origin.error(RES_EXPECTED, format!("results[{i}] has no '{key}'"));
        let image_id = match r.image_id.ok_or_else(|| missing("image_id"))? {
            IdValue::Int(v) => check_integer_id(origin, RES_EXPECTED, v, || format!("results[{i}]'s image_id"))?,
            IdValue::Str(s) => gt_strings.code(&s).ok_or_else(|| {
                origin.error(
                    RES_EXPECTED,
                    format!("results[{i}] has image_id {s:?}, which is not an image of the ground truth"),
                )
            })?,
        };
        let category_id = match r.category_id.ok_or_else(|| missing("category_id"))? {
            IdValue::Int(v) => check_integer_id(origin, RES_EXPECTED, v, || format!("results[{i}]'s category_id"))?,
            IdValue::Str(s) => gt_strings.code(&s).unwrap_or_else(|| {
                new_categories.push((i, s));
                STRING_CODE_BASE
            }),
        };
        if let Some(k) = &r.keypoints {
            check_keypoints(origin, RES_EXPECTED, &|| format!("results[{i}]"), k)?;
        }
        let (bbox, area) = if keypoint_results {
            match &r.keypoints {
                Some(k) if !k.is_empty() => keypoint_box(k),
                Some(_) => return Err(origin.error(RES_EXPECTED, format!("results[{i}] has empty 'keypoints'"))),
                None => return Err(missing("keypoints")),
            }
        } else {
            let b = r.bbox.ok_or_else(|| missing("bbox"))?;
            if b.len != 4 {
                return Err(
                    origin.error(RES_EXPECTED, format!("results[{i}] has a 'bbox' of {} numbers instead of 4", b.len))
                );
            }
            (b.values, b.values[2] * b.values[3])
        };
        let score = r.score.ok_or_else(|| missing("score"))?;
        check_result(origin, known_images, i, image_id, &bbox, score)?;
        annotations.keypoints.push(i - offset, r.keypoints, r.num_keypoints);
        annotations.id.push(i as i64 + 1);
        annotations.image_id.push(image_id);
        annotations.category_id.push(category_id);
        annotations.bbox.push(bbox);
        annotations.area.push(area);
        annotations.iscrowd.push(false);
        annotations.score.push(score);
    }
    Ok((annotations, new_categories))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::coco::parse_ground_truth;

    const ORIGIN: Origin = Origin { function: "COCO", argument: "annotation_file", source: "gt.json" };

    #[test]
    fn results_follow_load_res() {
        let gt = parse_ground_truth(br#"{"images":[{"id":1}],"categories":[{"id":1}]}"#, &ORIGIN).unwrap();
        let origin = Origin { function: "COCO.loadRes", argument: "resFile", source: "dt.json" };
        let res =
            parse_results(br#"[{"image_id":1,"category_id":1,"bbox":[0,0,2,3],"score":0.5,"id":99}]"#, &gt, &origin)
                .unwrap();
        assert_eq!(res.annotations.id, vec![1]);
        assert_eq!(res.annotations.area, vec![6.0]);
        let err = parse_results(br#"[{"image_id":2,"category_id":1,"bbox":[0,0,2,3],"score":0.5}]"#, &gt, &origin)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dt.json: results[0] has image_id 2"), "{err}");
        let err = parse_results(br#"[{"image_id":1,"category_id":1,"bbox":[0,0,2,3]}]"#, &gt, &origin)
            .unwrap_err()
            .to_string();
        assert!(err.contains("results[0] has no 'score'"), "{err}");
    }
}
