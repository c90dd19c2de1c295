//! An LVIS ground truth: the COCO part (images, categories, annotations) read by
//! the COCO parser, and the fields only LVIS has, read here: each category's
//! `frequency`, each image's `neg_category_ids` and `not_exhaustive_category_ids`,
//! each annotation's optional `ignore`.
//!
//! A file without the federated fields still loads (lvis-api reads it too, and
//! fails only when evaluating); the first missing or malformed one is kept as a
//! message and [`LvisGroundTruth::federated`] reports it when evaluation needs them.

use rustc_hash::FxHashMap as HashMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::detection::coco::{parse_ground_truth, CocoDataset, Origin};
use crate::error::{FerropsError, Result};

/// LVIS' category frequency groups (`img_count_lbl`), in lvis-api's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Rare = 0,
    Common = 1,
    Frequent = 2,
}

/// The federated labels of one image, as category id lists (file order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageLabels {
    pub neg_category_ids: Vec<i64>,
    pub not_exhaustive_category_ids: Vec<i64>,
}

/// The federated fields, complete and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Federated {
    /// Per category of the file, in file order.
    pub frequency: Vec<Frequency>,
    /// Per image of the file, in file order.
    pub images: Vec<ImageLabels>,
}

/// A parsed LVIS ground truth.
#[derive(Debug, Clone)]
pub struct LvisGroundTruth {
    pub coco: CocoDataset,
    /// Per annotation, in file order: `ignore` set to a true value.
    pub ignore: Vec<bool>,
    /// The federated fields, or the first problem with them (a record named).
    federated: std::result::Result<Federated, String>,
    /// The file name, for messages.
    pub source: String,
}

impl LvisGroundTruth {
    /// The federated fields; a `ValueError` naming `function`, the file and the
    /// first bad record when they are missing or malformed.
    pub fn federated(&self, function: &'static str) -> Result<&Federated> {
        self.federated.as_ref().map_err(|problem| {
            FerropsError::value(
                function,
                "lvis_gt",
                "an LVIS ground truth: 'frequency' ('r', 'c' or 'f') per category, 'neg_category_ids' and \
                 'not_exhaustive_category_ids' (lists of category ids) per image",
                format!("{}: {problem}", self.source),
            )
        })
    }
}

#[derive(Deserialize)]
struct RawImage {
    id: Option<Value>,
    neg_category_ids: Option<Value>,
    not_exhaustive_category_ids: Option<Value>,
}

#[derive(Deserialize)]
struct RawCategory {
    id: Option<Value>,
    frequency: Option<Value>,
}

#[derive(Deserialize)]
struct RawIgnore {
    ignore: Option<Value>,
}

#[derive(Deserialize)]
struct RawLvis<'a> {
    images: Option<Vec<RawImage>>,
    categories: Option<Vec<RawCategory>>,
    /// Read only when some record may hold `ignore`: LVIS files have none.
    #[serde(borrow)]
    annotations: Option<&'a RawValue>,
}

/// Python's truth value of a JSON value, as lvis-api tests `if g["ignore"]`.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn record(what: &str, i: usize, id: Option<&Value>) -> String {
    match id {
        Some(id) => format!("{what}[{i}] (id {id})"),
        None => format!("{what}[{i}]"),
    }
}

/// A list of integer category ids.
fn id_list(v: Option<&Value>, name: impl Fn() -> String, key: &str) -> std::result::Result<Vec<i64>, String> {
    let Some(v) = v else { return Err(format!("{} has no '{key}'", name())) };
    let Value::Array(items) = v else { return Err(format!("{} has a '{key}' that is not a list: {v}", name())) };
    items
        .iter()
        .enumerate()
        .map(|(j, item)| {
            item.as_i64().ok_or_else(|| format!("{} has '{key}'[{j}] = {item}, not an integer id", name()))
        })
        .collect()
}

fn federated_fields(images: &[RawImage], categories: &[RawCategory]) -> std::result::Result<Federated, String> {
    let frequency = categories
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = || record("categories", i, c.id.as_ref());
            match c.frequency.as_ref().and_then(Value::as_str) {
                Some("r") => Ok(Frequency::Rare),
                Some("c") => Ok(Frequency::Common),
                Some("f") => Ok(Frequency::Frequent),
                _ => Err(match &c.frequency {
                    None => format!("{} has no 'frequency'", name()),
                    Some(f) => format!("{} has 'frequency' {f}, not one of \"r\", \"c\", \"f\"", name()),
                }),
            }
        })
        .collect::<std::result::Result<_, _>>()?;
    let images = images
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let name = || record("images", i, m.id.as_ref());
            Ok(ImageLabels {
                neg_category_ids: id_list(m.neg_category_ids.as_ref(), name, "neg_category_ids")?,
                not_exhaustive_category_ids: id_list(
                    m.not_exhaustive_category_ids.as_ref(),
                    name,
                    "not_exhaustive_category_ids",
                )?,
            })
        })
        .collect::<std::result::Result<_, String>>()?;
    Ok(Federated { frequency, images })
}

/// Parses an LVIS ground-truth file: the COCO parser's checks and messages for
/// what LVIS shares with COCO, integer ids only, and the LVIS fields.
pub fn parse_lvis_ground_truth(json: &[u8], origin: &Origin) -> Result<LvisGroundTruth> {
    // The LVIS fields are read beside the COCO parse (serde, one thread), which
    // judges the file first: its errors are reported before serde's.
    let (coco, raw) = rayon::join(|| parse_ground_truth(json, origin), || serde_json::from_slice::<RawLvis>(json));
    let coco = coco?;
    if let Some(s) = coco.id_strings.strings().first() {
        return Err(FerropsError::value(
            origin.function,
            origin.argument,
            "integer image, category and annotation ids (as LVIS files have)",
            format!("{}: the string id {s:?}", origin.source),
        ));
    }
    // The COCO parser accepted the JSON, so serde reads it too.
    let raw = raw.map_err(|e| {
        FerropsError::value(origin.function, origin.argument, "LVIS JSON", format!("{}: {e}", origin.source))
    })?;
    let mut ignore = vec![false; coco.annotations.len()];
    if let Some(text) = raw.annotations.map(RawValue::get).filter(|text| text.contains("\"ignore\"")) {
        let records: Vec<RawIgnore> = serde_json::from_str(text).map_err(|e| {
            FerropsError::value(origin.function, origin.argument, "LVIS JSON", format!("{}: {e}", origin.source))
        })?;
        for (flag, record) in ignore.iter_mut().zip(&records) {
            *flag = record.ignore.as_ref().is_some_and(truthy);
        }
    }
    let federated = federated_fields(&raw.images.unwrap_or_default(), &raw.categories.unwrap_or_default());
    Ok(LvisGroundTruth { coco, ignore, federated, source: origin.source.to_string() })
}

/// The federated labels of each image id (the last image record of an id, as
/// lvis-api's dict keeps it).
pub(super) fn labels_by_image<'a>(gt: &'a CocoDataset, federated: &'a Federated) -> HashMap<i64, &'a ImageLabels> {
    gt.image_ids.iter().copied().zip(&federated.images).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin = Origin { function: "LVIS", argument: "annotation_path", source: "gt.json" };

    #[test]
    fn reads_the_federated_fields_and_names_the_first_bad_record() {
        let json = br#"{"images":[{"id":1,"neg_category_ids":[2],"not_exhaustive_category_ids":[]}],
            "categories":[{"id":1,"frequency":"r"},{"id":2,"frequency":"f"}],
            "annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[0,0,2,2],"area":4,"ignore":1},
                           {"id":2,"image_id":1,"category_id":1,"bbox":[0,0,2,2],"area":4}]}"#;
        let gt = parse_lvis_ground_truth(json, &ORIGIN).unwrap();
        assert_eq!(gt.ignore, vec![true, false]);
        let f = gt.federated("LVISEval").unwrap();
        assert_eq!(f.frequency, vec![Frequency::Rare, Frequency::Frequent]);
        assert_eq!(f.images[0].neg_category_ids, vec![2]);

        let json = br#"{"images":[{"id":1,"neg_category_ids":[]},{"id":5}],"categories":[],"annotations":[]}"#;
        let gt = parse_lvis_ground_truth(json, &ORIGIN).unwrap();
        let err = gt.federated("LVISEval").unwrap_err().to_string();
        assert!(err.contains("gt.json: images[0] (id 1) has no 'not_exhaustive_category_ids'"), "{err}");

        let json = br#"{"images":[],"categories":[{"id":3},{"id":4,"frequency":"x"}],"annotations":[]}"#;
        let err = parse_lvis_ground_truth(json, &ORIGIN).unwrap().federated("LVISEval").unwrap_err().to_string();
        assert!(err.contains("categories[0] (id 3) has no 'frequency'"), "{err}");

        let json = br#"{"images":[{"id":"a"}],"categories":[],"annotations":[]}"#;
        assert!(parse_lvis_ground_truth(json, &ORIGIN).unwrap_err().to_string().contains("string id \"a\""));
    }
}
