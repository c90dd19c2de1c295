//! An annotation's `segmentation` as written (polygons, an uncompressed RLE, a
//! compressed RLE), kept as read and turned into a mask only when `segm`
//! evaluation asks, as pycocotools' `annToRLE` does then: a dataset evaluated by
//! box never pays for (or fails on) its masks.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::mask::prepared::PreparedMask;
use crate::mask::{codec, polygon, rle, Rle};

/// A `segmentation` value as written. Shapes no COCO tool writes are kept as
/// [`Segmentation::Invalid`] with what was found, and refused only when the
/// mask is needed.
#[derive(Debug, Clone, PartialEq)]
pub enum Segmentation {
    /// Parts `[x0, y0, x1, y1, ...]`: part `k` is `coords[ends[k - 1]..ends[k]]`.
    Polygons { coords: Vec<f64>, ends: Vec<u32> },
    /// `{"size": [h, w], "counts": "..."}`.
    Compressed { size: [i64; 2], counts: Vec<u8> },
    /// `{"size": [h, w], "counts": [run, run, ...]}` (crowd regions).
    Uncompressed { size: [i64; 2], counts: Vec<i64> },
    /// Anything else, described.
    Invalid(String),
}

impl<'de> Deserialize<'de> for Segmentation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Ok(Segmentation::from_value(&Value::deserialize(deserializer)?))
    }
}

/// A JSON integer as `i64`.
fn integer(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn size_of(object: &serde_json::Map<String, Value>) -> Option<[i64; 2]> {
    match object.get("size")?.as_array()?.as_slice() {
        [h, w] => Some([integer(h)?, integer(w)?]),
        _ => None,
    }
}

impl Segmentation {
    /// The segmentation a JSON value holds (read by serde, where the direct
    /// scanner declined the record).
    pub(super) fn from_value(v: &Value) -> Segmentation {
        match v {
            Value::Array(parts) => {
                let mut coords = Vec::new();
                let mut ends = Vec::with_capacity(parts.len());
                for (k, part) in parts.iter().enumerate() {
                    let Some(values) = part.as_array() else {
                        return Segmentation::Invalid(format!("a 'segmentation' list whose part {k} is not a list"));
                    };
                    for value in values {
                        match value.as_f64() {
                            Some(c) => coords.push(c),
                            None => {
                                return Segmentation::Invalid(format!("a polygon part {k} holding {value}"));
                            }
                        }
                    }
                    ends.push(coords.len() as u32);
                }
                Segmentation::Polygons { coords, ends }
            }
            Value::Object(object) => {
                let Some(size) = size_of(object) else {
                    return Segmentation::Invalid("an RLE without a 'size' of two integers".into());
                };
                match object.get("counts") {
                    Some(Value::String(s)) => Segmentation::Compressed { size, counts: s.as_bytes().to_vec() },
                    Some(Value::Array(runs)) => match runs.iter().map(integer).collect::<Option<Vec<i64>>>() {
                        Some(counts) => Segmentation::Uncompressed { size, counts },
                        None => Segmentation::Invalid("an RLE whose 'counts' list holds a non-integer".into()),
                    },
                    _ => Segmentation::Invalid("an RLE without 'counts' (a string or a list of integers)".into()),
                }
            }
            other => Segmentation::Invalid(format!("a 'segmentation' that is {}", kind_of(other))),
        }
    }

    /// The polygon of a box `[x, y, w, h]`, as `loadRes` writes it for box
    /// results without a segmentation.
    pub fn of_box(b: &[f64; 4]) -> Segmentation {
        let (x1, x2, y1, y2) = (b[0], b[0] + b[2], b[1], b[1] + b[3]);
        Segmentation::Polygons { coords: vec![x1, y1, x1, y2, x2, y2, x2, y1], ends: vec![8] }
    }

    /// Whether [`Segmentation::to_rle`] surely succeeds, judged without
    /// rasterising: polygons (not boxes) of whole points, at least 3 a part, with
    /// finite coordinates in range, on an image of a valid size. `false` means
    /// "not sure": only `to_rle` itself says.
    pub fn surely_converts(&self, image_size: Option<[i64; 2]>) -> bool {
        let (Segmentation::Polygons { coords, ends }, Some([h, w])) = (self, image_size) else {
            return false;
        };
        let pixels = u64::try_from(h).ok().zip(u64::try_from(w).ok()).and_then(|(h, w)| h.checked_mul(w));
        if pixels.is_none_or(|p| p > u64::from(u32::MAX)) || ends.first().is_none_or(|&e| e == 4) {
            return false;
        }
        let mut start = 0;
        for &end in ends {
            let n = end.wrapping_sub(start);
            if end < start || n < 6 || n % 2 == 1 {
                return false;
            }
            start = end;
        }
        coords.iter().all(|c| c.is_finite() && c.abs() <= polygon::MAX_ABS_COORDINATE)
    }

    /// pycocotools' `annToRLE`: the mask of this segmentation in an image of
    /// `image_size` (`[height, width]`, `None` when the image has none).
    /// Polygons are rasterised and their parts merged (a first part of 4
    /// numbers makes every part a box `[x, y, w, h]`, pycocotools' reading);
    /// an RLE must have the image's size. The error is what is wrong, for the
    /// caller to prefix with the record.
    pub fn to_rle(&self, image_size: Option<[i64; 2]>) -> std::result::Result<Rle, String> {
        let image = |what: &str| -> std::result::Result<(u64, u64), String> {
            let [h, w] = image_size.ok_or_else(|| format!("{what} on an image without 'height' and 'width'"))?;
            if h < 0 || w < 0 {
                return Err(format!("{what} on an image of negative size [{h}, {w}]"));
            }
            Ok((h as u64, w as u64))
        };
        let rle_size = |size: [i64; 2]| -> std::result::Result<(u64, u64), String> {
            if size[0] < 0 || size[1] < 0 {
                return Err(format!("an RLE of negative 'size' {size:?}"));
            }
            if let Some(expected) = image_size.filter(|s| *s != size) {
                return Err(format!("an RLE of 'size' {size:?}, not the image's [height, width] {expected:?}"));
            }
            Ok((size[0] as u64, size[1] as u64))
        };
        let message = |e: crate::FerropsError| match e {
            crate::FerropsError::InvalidValue { expected, got, .. } => format!("{got} (expected {expected})"),
            other => other.to_string(),
        };
        match self {
            Segmentation::Invalid(what) => Err(what.clone()),
            Segmentation::Compressed { size, counts } => {
                let (h, w) = rle_size(*size)?;
                codec::decompress("annToRLE", "counts", counts, h, w).map_err(|e| format!("'counts' {}", message(e)))
            }
            Segmentation::Uncompressed { size, counts } => {
                let (h, w) = rle_size(*size)?;
                let runs = counts
                    .iter()
                    .map(|&c| u32::try_from(c).map_err(|_| format!("an RLE run length {c} outside [0, 2**32)")))
                    .collect::<std::result::Result<Vec<u32>, String>>()?;
                Rle::new("annToRLE", "counts", h, w, runs).map_err(|e| format!("'counts' {}", message(e)))
            }
            Segmentation::Polygons { coords, ends } => {
                let (h, w) = image("polygons")?;
                let Some(&first_end) = ends.first() else {
                    return Err("an empty polygon list".into());
                };
                let offsets: Vec<usize> = std::iter::once(0).chain(ends.iter().map(|&e| e as usize)).collect();
                let part_lengths = || offsets.windows(2).map(|p| p[1] - p[0]);
                let mut rles = if first_end == 4 {
                    if let Some((k, n)) = part_lengths().enumerate().find(|&(_, n)| n != 4) {
                        return Err(format!("boxes (a first part of 4 numbers) and a part {k} of {n}"));
                    }
                    polygon::from_boxes("annToRLE", "segmentation", coords, h, w).map_err(message)?
                } else {
                    if let Some((k, n)) = part_lengths().enumerate().find(|&(_, n)| n < 6 || n % 2 == 1) {
                        return Err(format!("a polygon part {k} of {n} numbers (at least 3 points, an even count)"));
                    }
                    polygon::from_polygons("annToRLE", "segmentation", coords, &offsets, h, w).map_err(message)?
                };
                // One part is its own union (`merge` would copy it).
                if rles.len() == 1 {
                    return Ok(rles.pop().expect("one part"));
                }
                rle::merge(&rles, false).map_err(message)
            }
        }
    }
}

impl Segmentation {
    /// [`Segmentation::to_rle`] prepared for IoU; a compressed string is kept
    /// as the mask's compressed form, and measured without decoding where it
    /// allows ([`PreparedMask::from_compressed`]).
    pub fn into_prepared(self, image_size: Option<[i64; 2]>) -> std::result::Result<PreparedMask, String> {
        let segmentation = match self {
            Segmentation::Compressed { size, counts }
                if size[0] >= 0 && size[1] >= 0 && image_size.is_none_or(|s| s == size) =>
            {
                match PreparedMask::from_compressed(counts, size[0] as u64, size[1] as u64) {
                    Ok(prepared) => return Ok(prepared),
                    Err(counts) => Segmentation::Compressed { size, counts },
                }
            }
            other => other,
        };
        let mask = segmentation.to_rle(image_size)?;
        Ok(match segmentation {
            // The string the mask came from is its compressed form.
            Segmentation::Compressed { counts, .. } => PreparedMask::with_compressed(&mask, counts),
            _ => PreparedMask::new(&mask),
        })
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
