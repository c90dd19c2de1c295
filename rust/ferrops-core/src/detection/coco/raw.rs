//! Records as written in COCO JSON, every key optional, read by serde (and by the
//! direct scanner of [`super::json_scan`], which fills the same types).

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::checks::{check_bbox, valid_bbox, Origin};
use super::ids::IdValue;
use super::segmentation::Segmentation;
use crate::error::Result;

/// `iscrowd` as written by COCO tools: 0/1 or false/true.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flag(pub(super) bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct FlagVisitor;
        impl Visitor<'_> for FlagVisitor {
            type Value = Flag;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("0, 1, false or true")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Flag, E> {
                Ok(Flag(v != 0))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Flag, E> {
                Ok(Flag(v != 0))
            }
        }
        deserializer.deserialize_any(FlagVisitor)
    }
}

/// A JSON list of numbers read into a fixed array (no allocation per record);
/// `len` counts every element, so a wrong length is reported as written.
#[derive(Debug, Clone, Copy)]
pub(super) struct RawBox {
    pub(super) values: [f64; 4],
    pub(super) len: usize,
}

impl<'de> Deserialize<'de> for RawBox {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct BoxVisitor;
        impl<'de> Visitor<'de> for BoxVisitor {
            type Value = RawBox;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of 4 numbers")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<RawBox, A::Error> {
                let mut out = RawBox { values: [0.0; 4], len: 0 };
                while let Some(v) = seq.next_element::<f64>()? {
                    if out.len < 4 {
                        out.values[out.len] = v;
                    }
                    out.len += 1;
                }
                Ok(out)
            }
        }
        deserializer.deserialize_seq(BoxVisitor)
    }
}

impl RawBox {
    /// The box if valid; otherwise the error naming `record()`, formatted only then.
    pub(super) fn checked(&self, origin: &Origin, expected: &str, record: impl Fn() -> String) -> Result<[f64; 4]> {
        if self.len == 4 && valid_bbox(&self.values) {
            return Ok(self.values);
        }
        if self.len != 4 {
            return Err(
                origin.error(expected, format!("{} has a 'bbox' of {} numbers instead of 4", record(), self.len))
            );
        }
        check_bbox(origin, expected, &record(), &self.values)
    }
}

/// One annotation as written; every key optional so that a missing one is
/// reported with the record's index rather than a line and column.
#[derive(Deserialize, Default)]
pub(super) struct RawAnnotation {
    pub(super) id: Option<IdValue>,
    pub(super) image_id: Option<IdValue>,
    pub(super) category_id: Option<IdValue>,
    pub(super) bbox: Option<RawBox>,
    pub(super) area: Option<f64>,
    pub(super) iscrowd: Option<Flag>,
    pub(super) score: Option<f64>,
    pub(super) segmentation: Option<Box<Segmentation>>,
    pub(super) keypoints: Option<Vec<f64>>,
    pub(super) num_keypoints: Option<f64>,
}

#[derive(Deserialize)]
pub(super) struct RawId {
    pub(super) id: Option<IdValue>,
    /// An image's size, needed only to rasterise its polygons: any JSON value
    /// is accepted here and judged then.
    pub(super) height: Option<serde_json::Value>,
    pub(super) width: Option<serde_json::Value>,
}

impl RawId {
    /// `[height, width]` when both are integers (integral numbers).
    pub(super) fn size(&self) -> Option<[i64; 2]> {
        let integer = |v: &Option<serde_json::Value>| {
            let v = v.as_ref()?;
            v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
        };
        Some([integer(&self.height)?, integer(&self.width)?])
    }
}

/// The top level of a ground-truth file; the annotations are kept as raw JSON
/// and parsed in parallel by [`super::json_pieces::parse_records`].
#[derive(Deserialize)]
pub(super) struct RawGroundTruth<'a> {
    pub(super) images: Option<Vec<RawId>>,
    #[serde(borrow)]
    pub(super) annotations: Option<&'a RawValue>,
    pub(super) categories: Option<Vec<RawId>>,
}
