//! Detection results as pycocotools' `loadRes` builds them for box and mask results, from
//! a results file or from columns, checked against their ground truth.

use std::sync::Arc;

use rayon::prelude::*;

use super::checks::{check_bbox, check_integer_id, valid_bbox, Origin, RES_EXPECTED};
use super::dataset::{Annotations, CocoDataset, IdPositions};
use super::ids::{IdStrings, IdValue, StringsAt, STRING_CODE_BASE};
use super::json_pieces::{converted_records, first_record, in_order, parse_records};
use super::keypoints::{check_keypoints, keypoint_box, Keypoints};
use super::raw::RawAnnotation;
use crate::error::Result;
use crate::mask::prepared::PreparedMask;

/// The image ids of a ground truth, for checking results.
type ImageSet = IdPositions;

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
    let known = known_images.contains(image_id);
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
    let known_images = ImageSet::new(&ground_truth.image_ids);
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
        segmentation: vec![None; n],
        keypoints: Default::default(),
    };
    let mut dataset = CocoDataset::new(
        ground_truth.image_ids.clone(),
        ground_truth.category_ids.clone(),
        annotations,
        None,
        ground_truth.id_strings.clone(),
    );
    dataset.image_sizes = ground_truth.image_sizes.clone();
    dataset.box_segmentation = true;
    dataset.source = origin.source.into();
    Ok(dataset)
}

/// Parses a results file (a JSON list of detections) against its ground
/// truth, as pycocotools' `loadRes(path)` does. As there, the first record
/// decides: with a non-empty `bbox` every record is a box result (`area = w *
/// h`; a `segmentation`, if any, is kept for `segm` evaluation, else the box's
/// polygon stands for it); otherwise, with a `segmentation`, every record is a
/// mask result whose `area` is the mask's and whose `bbox`, where missing, the
/// mask's box (the masks are converted here, once). A string `image_id` names
/// the ground truth's image of that string id; a string `category_id` is coded
/// like the ground truth's (a new one gets a new code).
pub fn parse_results(json: &[u8], ground_truth: &CocoDataset, origin: &Origin) -> Result<CocoDataset> {
    let images = Images {
        known: ImageSet::new(&ground_truth.image_ids),
        sizes: ground_truth.image_ids.iter().copied().zip(ground_truth.image_sizes.iter().copied()).collect(),
    };
    let gt_strings = &ground_truth.id_strings;
    // Each piece of records converted as soon as it is parsed, numbered from
    // 0, then moved to its place; with a bad record (or text the direct
    // scanner declines), everything again in order, for the first bad
    // record's error.
    let converted = first_record(json).and_then(|first| {
        let branch = first.as_ref().map_or(Branch::Boxes, Branch::of_first);
        let convert = |records: Vec<RawAnnotation>| results_piece(records, 0, &images, gt_strings, branch, origin);
        let parts = converted_records(json, &convert)?;
        Some((branch, parts.into_iter().map(|(part, offset)| shifted(part, offset)).collect::<Vec<_>>()))
    });
    let (branch, parts) = match converted {
        Some(converted) => converted,
        None => {
            let pieces = parse_records(json, origin, RES_EXPECTED)?;
            let branch = pieces.iter().flatten().next().map_or(Branch::Boxes, Branch::of_first);
            let convert = |records, offset| results_piece(records, offset, &images, gt_strings, branch, origin);
            (branch, in_order(pieces, convert)?)
        }
    };
    let mut strings = gt_strings.clone();
    let mut pending = Vec::with_capacity(parts.len());
    let mut masks = Vec::new();
    let mut annotations = Annotations::concat(
        parts
            .into_iter()
            .map(|(part, new_categories, part_masks)| {
                pending.push(new_categories);
                masks.extend(part_masks.into_iter().map(Ok));
                part
            })
            .collect(),
    );
    for (row, s) in pending.into_iter().flatten() {
        annotations.category_id[row] = strings.intern(&s);
    }
    let mut dataset =
        CocoDataset::new(ground_truth.image_ids.clone(), ground_truth.category_ids.clone(), annotations, None, strings);
    dataset.image_sizes = ground_truth.image_sizes.clone();
    dataset.source = origin.source.into();
    match branch {
        Branch::Masks => _ = dataset.masks.get_or_init(|| Arc::new(masks)),
        // pycocotools' keypoints branch writes no segmentation.
        Branch::Keypoints => {}
        Branch::Boxes => dataset.box_segmentation = true,
    }
    Ok(dataset)
}

/// A piece of results as columns, with the string category ids the ground
/// truth does not have and the masks of mask results.
type ResultsPiece = (Annotations, StringsAt, Vec<PreparedMask>);

/// A results piece converted with its records numbered from 0, as if
/// numbered from `offset` (ids count from 1 in file order).
fn shifted(piece: ResultsPiece, offset: usize) -> ResultsPiece {
    let (mut annotations, mut new_categories, masks) = piece;
    for id in &mut annotations.id {
        *id += offset as i64;
    }
    for (row, _) in &mut new_categories {
        *row += offset;
    }
    (annotations, new_categories, masks)
}

/// The `loadRes` branch, picked by the first result as pycocotools picks it:
/// a non-empty `bbox` first, then `segmentation`, then `keypoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    Boxes,
    Masks,
    Keypoints,
}

impl Branch {
    fn of_first(r: &RawAnnotation) -> Branch {
        if r.bbox.is_some_and(|b| b.len > 0) {
            Branch::Boxes
        } else if r.segmentation.is_some() {
            Branch::Masks
        } else if r.keypoints.is_some() {
            Branch::Keypoints
        } else {
            Branch::Boxes
        }
    }
}

/// The ground truth's images: their ids, and their sizes for polygons.
struct Images {
    known: ImageSet,
    sizes: rustc_hash::FxHashMap<i64, Option<[i64; 2]>>,
}

/// Result records `offset..` checked and as `loadRes` stores them: ids counting
/// from 1 in file order, not crowd; with the string category ids the ground
/// truth does not have, by record index, coded afterwards, and the masks of
/// mask results. The box and area are as `branch` says; keypoints, where
/// records have them, are kept beside.
fn results_piece(
    records: Vec<RawAnnotation>,
    offset: usize,
    images: &Images,
    gt_strings: &IdStrings,
    branch: Branch,
    origin: &Origin,
) -> Result<ResultsPiece> {
    let mut annotations = Annotations::with_capacity(records.len());
    let mut keypoints_column = Keypoints::default();
    if records.iter().any(|r| r.keypoints.is_some()) {
        keypoints_column.reserve(records.len());
    }
    let mut new_categories = Vec::new();
    let mut masks = Vec::with_capacity(if branch == Branch::Masks { records.len() } else { 0 });
    for (i, mut r) in (offset..).zip(records) {
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
        let score = r.score.ok_or_else(|| missing("score"))?;
        if let Some(k) = &r.keypoints {
            check_keypoints(origin, RES_EXPECTED, &|| format!("results[{i}]"), k)?;
        }
        let (bbox, area) = if branch == Branch::Masks {
            let segmentation = r.segmentation.take().ok_or_else(|| missing("segmentation"))?;
            if !images.known.contains(image_id) {
                // The same message as for box results.
                check_result(origin, &images.known, i, image_id, &[0.0; 4], score)?;
            }
            let size = images.sizes.get(&image_id).copied().flatten();
            let prepared = (*segmentation)
                .into_prepared(size)
                .map_err(|e| origin.error(RES_EXPECTED, format!("results[{i}] has a bad 'segmentation': {e}")))?;
            // pycocotools keeps a given box (an empty one is treated as absent here).
            let bbox = match r.bbox {
                Some(b) if b.len > 0 => {
                    b.checked(origin, RES_EXPECTED, || format!("results[{i}]"))?;
                    b.values
                }
                _ => prepared.bbox,
            };
            let area = f64::from(prepared.area);
            masks.push(prepared);
            (bbox, area)
        } else if branch == Branch::Keypoints {
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
        check_result(origin, &images.known, i, image_id, &bbox, score)?;
        keypoints_column.push(i - offset, r.keypoints, r.num_keypoints);
        annotations.id.push(i as i64 + 1);
        annotations.image_id.push(image_id);
        annotations.category_id.push(category_id);
        annotations.bbox.push(bbox);
        annotations.area.push(area);
        annotations.iscrowd.push(false);
        annotations.score.push(score);
        // Mask results keep their converted masks only; box results their
        // segmentation as written, converted if segm evaluation asks.
        annotations.segmentation.push(if branch == Branch::Masks { None } else { r.segmentation });
    }
    annotations.keypoints = Arc::new(keypoints_column);
    Ok((annotations, new_categories, masks))
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

    #[test]
    fn the_first_result_picks_the_branch_as_load_res() {
        let gt = br#"{"images":[{"id":1,"height":4,"width":4}],"categories":[{"id":1}]}"#;
        let gt = parse_ground_truth(gt, &ORIGIN).unwrap();
        let origin = Origin { function: "COCO.loadRes", argument: "resFile", source: "dt.json" };
        let kp = r#""keypoints":[1,1,2,3,2,2],"score":0.5"#;
        // A box first: box results, keypoints kept beside.
        let res = parse_results(
            format!(r#"[{{"image_id":1,"category_id":1,"bbox":[0,0,2,3],{kp}}}]"#).as_bytes(),
            &gt,
            &origin,
        )
        .unwrap();
        assert_eq!((res.annotations.area[0], res.box_segmentation), (6.0, true));
        assert_eq!(res.annotations.keypoints.get(0), Some(&[1.0, 1.0, 2.0, 3.0, 2.0, 2.0][..]));
        // A segmentation before keypoints: mask results (area of the mask).
        let res = parse_results(
            format!(r#"[{{"image_id":1,"category_id":1,"segmentation":[[0,0,0,2,2,2,2,0]],{kp}}}]"#).as_bytes(),
            &gt,
            &origin,
        )
        .unwrap();
        assert!(res.masks.get().is_some_and(|m| m.len() == 1));
        // Keypoints alone: their extent is the box.
        let res =
            parse_results(format!(r#"[{{"image_id":1,"category_id":1,{kp}}}]"#).as_bytes(), &gt, &origin).unwrap();
        assert_eq!(res.annotations.bbox[0], [1.0, 1.0, 2.0, 1.0]);
        assert_eq!((res.annotations.area[0], res.box_segmentation), (2.0, false));
    }
}
