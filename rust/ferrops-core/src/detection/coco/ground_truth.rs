//! Ground truth: a COCO annotation file (pycocotools' `COCO(path)`) or columns,
//! checked record by record into a [`CocoDataset`].

use super::checks::{check_bbox, check_integer_id, check_json, json_error, record_name, Origin, GT_EXPECTED};
use super::dataset::{has_box, Annotations, CocoDataset, NO_BOX};
use super::ids::{IdStrings, IdValue, StringsAt, STRING_CODE_BASE};
use super::json_pieces::{as_parsed, ground_truth_direct, in_order, parse_records, with_offsets, RecordPieces};
use super::keypoints::{check_keypoints, Keypoints};
use super::raw::{RawAnnotation, RawGroundTruth, RawId};
use crate::error::Result;

fn ids(origin: &Origin, what: &str, raw: Option<Vec<RawId>>, strings: &mut IdStrings) -> Result<Vec<i64>> {
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r.id {
            None => Err(origin.error(GT_EXPECTED, format!("{what}[{i}] has no 'id'"))),
            Some(IdValue::Int(v)) => check_integer_id(origin, GT_EXPECTED, v, || format!("{what}[{i}]'s 'id'")),
            Some(IdValue::Str(s)) => Ok(strings.intern(&s)),
        })
        .collect()
}

/// The string ids of a piece's records, by record index, coded after the
/// parallel pass (in file order, so the codes do not depend on the pieces).
#[derive(Default)]
struct PendingStrings {
    id: StringsAt,
    image_id: StringsAt,
    category_id: StringsAt,
}

/// An id's code: the integer itself, or a placeholder until the string is coded.
fn id_code(
    origin: &Origin,
    value: IdValue,
    row: usize,
    pending: &mut StringsAt,
    what: impl Fn() -> String,
) -> Result<i64> {
    match value {
        IdValue::Int(v) => check_integer_id(origin, GT_EXPECTED, v, what),
        IdValue::Str(s) => {
            pending.push((row, s));
            Ok(STRING_CODE_BASE)
        }
    }
}

/// A piece of ground-truth records as columns, with the first one without a
/// score and the string ids still to code.
type GroundTruthPiece = (Annotations, Option<usize>, PendingStrings);

/// Ground-truth records `offset..` checked and as columns, with the first one
/// without a score and the string ids still to code.
fn ground_truth_piece(records: Vec<RawAnnotation>, offset: usize, origin: &Origin) -> Result<GroundTruthPiece> {
    let mut annotations = Annotations::with_capacity(records.len());
    let mut keypoints_column = Keypoints::default();
    if records.iter().any(|r| r.keypoints.is_some()) {
        keypoints_column.reserve(records.len());
    }
    let mut first_without_score = None;
    let mut pending = PendingStrings::default();
    for (i, r) in (offset..).zip(records) {
        let RawAnnotation {
            id,
            image_id,
            category_id,
            bbox,
            area,
            iscrowd,
            score,
            segmentation,
            keypoints,
            num_keypoints,
        } = r;
        // Formatted only for an error: most records have none.
        let name = || record_name(i, id.as_ref());
        let missing = |key: &str| origin.error(GT_EXPECTED, format!("{} has no '{key}'", name()));
        if id.is_none() {
            return Err(missing("id"));
        }
        let image_id = image_id.ok_or_else(|| missing("image_id"))?;
        let category_id = category_id.ok_or_else(|| missing("category_id"))?;
        // pycocotools loads records without a box (mask-only ground truth,
        // evaluated as segm); evaluating boxes or keypoints refuses them.
        let bbox = match bbox {
            Some(b) => b.checked(origin, GT_EXPECTED, name)?,
            None => NO_BOX,
        };
        let area = match area {
            Some(a) => a,
            None if has_box(&bbox) => bbox[2] * bbox[3],
            None => return Err(origin.error(GT_EXPECTED, format!("{} has neither 'bbox' nor 'area'", name()))),
        };
        if !area.is_finite() {
            return Err(origin.error(GT_EXPECTED, format!("{} has a non-finite 'area' {area}", name())));
        }
        if let Some(k) = &keypoints {
            check_keypoints(origin, GT_EXPECTED, &name, k)?;
        }
        let image_id = id_code(origin, image_id, i, &mut pending.image_id, || format!("{}'s 'image_id'", name()))?;
        let category_id =
            id_code(origin, category_id, i, &mut pending.category_id, || format!("{}'s 'category_id'", name()))?;
        let id =
            id_code(origin, id.expect("checked above"), i, &mut pending.id, || format!("annotations[{i}]'s 'id'"))?;
        keypoints_column.push(i - offset, keypoints, num_keypoints);
        if score.is_none() && first_without_score.is_none() {
            first_without_score = Some(i);
        }
        annotations.id.push(id);
        annotations.image_id.push(image_id);
        annotations.category_id.push(category_id);
        annotations.bbox.push(bbox);
        annotations.area.push(area);
        annotations.iscrowd.push(iscrowd.is_some_and(|f| f.0));
        annotations.score.push(score.unwrap_or(f64::NAN));
        annotations.segmentation.push(segmentation);
    }
    annotations.keypoints = std::sync::Arc::new(keypoints_column);
    Ok((annotations, first_without_score, pending))
}

/// A ground-truth piece converted with its records numbered from 0, as if
/// numbered from `offset`.
fn shifted(piece: GroundTruthPiece, offset: usize) -> GroundTruthPiece {
    let (annotations, first_without_score, mut pending) = piece;
    for list in [&mut pending.id, &mut pending.image_id, &mut pending.category_id] {
        for (row, _) in list.iter_mut() {
            *row += offset;
        }
    }
    (annotations, first_without_score.map(|first| first + offset), pending)
}

/// A ground-truth file's images, categories and annotation records as written.
type GroundTruthRecords = (Option<Vec<RawId>>, Option<Vec<RawId>>, RecordPieces);

/// A ground-truth file's images, categories and annotation records as
/// written: read directly, or by serde where the direct reader declines.
fn ground_truth_records(json: &[u8], origin: &Origin) -> Result<GroundTruthRecords> {
    if let Some((images, categories, pieces)) = ground_truth_direct(json, &as_parsed) {
        return Ok((images, categories, pieces.into_iter().map(|p| p.value).collect()));
    }
    check_json(json, origin, GT_EXPECTED)?;
    // serde would read a struct from an array too; pycocotools wants an object.
    if json.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        return Err(origin.error(GT_EXPECTED, "a JSON document that is not an object".to_string()));
    }
    let raw: RawGroundTruth = serde_json::from_slice(json).map_err(|e| json_error(origin, GT_EXPECTED, e))?;
    let records = match raw.annotations {
        Some(text) => parse_records(text.get().as_bytes(), origin, GT_EXPECTED)?,
        None => RecordPieces::new(),
    };
    Ok((raw.images, raw.categories, records))
}

/// Parses a ground-truth file (the object pycocotools' `COCO(path)` loads). A
/// missing `area` is the box area and a missing `iscrowd` is 0 (pycocotools
/// would fail on either); `score` is kept when present. Ids are integers or
/// strings (see [`super::ids`]).
pub fn parse_ground_truth(json: &[u8], origin: &Origin) -> Result<CocoDataset> {
    // Each piece of records converted as soon as it is parsed, numbered from
    // 0, then moved to its place; with a bad record, everything again in order
    // (the error is then the first bad record's, numbered in the file).
    let convert = |records: Vec<RawAnnotation>| ground_truth_piece(records, 0, origin);
    let direct = ground_truth_direct(json, &convert)
        .and_then(|(images, categories, pieces)| Some((images, categories, with_offsets(pieces)?)));
    let (images, categories, parts) = match direct {
        Some((images, categories, parts)) => {
            (images, categories, parts.into_iter().map(|(part, offset)| shifted(part, offset)).collect())
        }
        None => {
            let (images, categories, records) = ground_truth_records(json, origin)?;
            let parts = in_order(records, |records, offset| ground_truth_piece(records, offset, origin))?;
            (images, categories, parts)
        }
    };
    let mut strings = IdStrings::default();
    let image_sizes: Vec<Option<[i64; 2]>> = images.iter().flatten().map(RawId::size).collect();
    let image_ids = ids(origin, "images", images, &mut strings)?;
    let category_ids = ids(origin, "categories", categories, &mut strings)?;
    let first_without_score = parts.iter().find_map(|(_, first, _)| *first);
    let mut pending = Vec::with_capacity(parts.len());
    let mut annotations = Annotations::concat(
        parts
            .into_iter()
            .map(|(part, _, strings)| {
                pending.push(strings);
                part
            })
            .collect(),
    );
    for piece in pending {
        for (column, list) in [
            (&mut annotations.id, piece.id),
            (&mut annotations.image_id, piece.image_id),
            (&mut annotations.category_id, piece.category_id),
        ] {
            for (row, s) in list {
                column[row] = strings.intern(&s);
            }
        }
    }
    let mut dataset = CocoDataset::new(image_ids, category_ids, annotations, first_without_score, strings);
    dataset.image_sizes = image_sizes;
    dataset.source = origin.source.into();
    Ok(dataset)
}

/// Ground truth as columns (`bbox` `[N, 4]` row-major `[x, y, w, h]`), for
/// callers that hold arrays rather than JSON.
pub struct GroundTruthColumns<'a> {
    pub image_ids: &'a [i64],
    pub category_ids: &'a [i64],
    pub id: &'a [i64],
    pub image_id: &'a [i64],
    pub category_id: &'a [i64],
    pub bbox: &'a [f64],
    pub area: &'a [f64],
    pub iscrowd: &'a [bool],
}

/// Builds a ground-truth dataset from columns, checked like a parsed file.
pub fn ground_truth_from_columns(columns: &GroundTruthColumns, origin: &Origin) -> Result<CocoDataset> {
    let n = columns.id.len();
    if [columns.image_id.len(), columns.category_id.len(), columns.area.len(), columns.iscrowd.len()]
        .iter()
        .any(|&len| len != n)
        || columns.bbox.len() != 4 * n
    {
        return Err(origin.error(GT_EXPECTED, "columns of different lengths".to_string()));
    }
    let mut annotations = Annotations::with_capacity(n);
    for i in 0..n {
        let name = record_name(i, Some(columns.id[i]));
        let bbox = check_bbox(origin, GT_EXPECTED, &name, &columns.bbox[4 * i..4 * i + 4])?;
        let area = columns.area[i];
        if !area.is_finite() {
            return Err(origin.error(GT_EXPECTED, format!("{name} has a non-finite 'area' {area}")));
        }
        annotations.id.push(columns.id[i]);
        annotations.image_id.push(columns.image_id[i]);
        annotations.category_id.push(columns.category_id[i]);
        annotations.bbox.push(bbox);
        annotations.area.push(area);
        annotations.iscrowd.push(columns.iscrowd[i]);
        annotations.score.push(f64::NAN);
        annotations.segmentation.push(None);
    }
    let (image_ids, category_ids) = (columns.image_ids, columns.category_ids);
    for (what, ids) in [("image_ids", image_ids), ("category_ids", category_ids), ("image_id", columns.image_id)]
        .into_iter()
        .chain([("category_id", columns.category_id), ("id", columns.id)])
    {
        for (i, &id) in ids.iter().enumerate() {
            check_integer_id(origin, GT_EXPECTED, id, || format!("{what}[{i}]"))?;
        }
    }
    Ok(CocoDataset::new(
        image_ids.to_vec(),
        category_ids.to_vec(),
        annotations,
        (n > 0).then_some(0),
        IdStrings::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin = Origin { function: "COCO", argument: "annotation_file", source: "gt.json" };

    #[test]
    fn parses_ground_truth_with_defaults() {
        let json = br#"{"images":[{"id":1,"file_name":"a.jpg"},{"id":2}],
            "categories":[{"id":3,"name":"cat"}],
            "annotations":[{"id":7,"image_id":1,"category_id":3,"bbox":[1,2,3,4],"iscrowd":true,
                            "segmentation":[[1,2,3,4]]},
                           {"id":8,"image_id":2,"category_id":3,"bbox":[0,0,2,2],"area":3.5,"iscrowd":0}]}"#;
        let d = parse_ground_truth(json, &ORIGIN).unwrap();
        assert_eq!(d.image_ids, vec![1, 2]);
        assert_eq!(d.category_ids, vec![3]);
        assert_eq!(d.annotations.area, vec![12.0, 3.5]);
        assert_eq!(d.annotations.iscrowd, vec![true, false]);
        assert_eq!(d.first_without_score, Some(0));
    }

    #[test]
    fn ground_truth_without_a_box_needs_an_area() {
        let json = br#"{"images":[{"id":1}],"annotations":[{"id":1,"image_id":1,"category_id":1,"area":5}]}"#;
        let d = parse_ground_truth(json, &ORIGIN).unwrap();
        assert!(!has_box(&d.annotations.bbox[0]) && !has_box(&d.packed[0].bbox));
        assert_eq!(d.annotations.area, vec![5.0]);
        let json = br#"{"images":[{"id":1}],"annotations":[{"id":4,"image_id":1,"category_id":1}]}"#;
        let err = parse_ground_truth(json, &ORIGIN).unwrap_err().to_string();
        assert!(err.contains("annotations[0] (id 4) has neither 'bbox' nor 'area'"), "{err}");
    }

    #[test]
    fn names_the_file_and_record() {
        let json = br#"{"images":[],"annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[0,0,1,1]},
                                                  {"id":2,"image_id":1,"category_id":1,"bbox":[0,0,-1,1]}]}"#;
        let err = parse_ground_truth(json, &ORIGIN).unwrap_err().to_string();
        assert!(err.contains("gt.json: annotations[1] (id 2) has a negative width"), "{err}");
        let err = parse_ground_truth(br#"{"annotations":[{"id":1}]}"#, &ORIGIN).unwrap_err().to_string();
        assert!(err.contains("annotations[0] (id 1) has no 'image_id'"), "{err}");
        let err = parse_ground_truth(b"{", &ORIGIN).unwrap_err().to_string();
        assert!(err.contains("gt.json: invalid JSON"), "{err}");
    }
}
