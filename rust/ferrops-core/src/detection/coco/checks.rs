//! What every COCO record must satisfy, and the error messages that name the
//! file and the record when one does not.

use super::ids::FIRST_INTEGER_ID;
use crate::error::{FerropsError, Result};

/// What the public function and argument are called, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub function: &'static str,
    pub argument: &'static str,
    /// The file name, or a description such as `"<dict>"`.
    pub source: &'a str,
}

impl Origin<'_> {
    pub(super) fn error(&self, expected: &str, got: String) -> FerropsError {
        FerropsError::value(self.function, self.argument, expected, format!("{}: {got}", self.source))
    }
}

pub(super) const GT_EXPECTED: &str = "a COCO JSON object with 'images', 'annotations' and 'categories'";
pub(super) const RES_EXPECTED: &str = "a JSON list of {'image_id', 'category_id', 'bbox', 'score'} records";

pub(super) fn json_error(origin: &Origin, expected: &str, err: serde_json::Error) -> FerropsError {
    origin.error(expected, format!("invalid JSON ({err})"))
}

/// The strict reader's verdict on a text the fast scanner declined (serde alone
/// would accept invalid UTF-8 or any nesting in values it skips).
pub(super) fn check_json(json: &[u8], origin: &Origin, expected: &str) -> Result<()> {
    super::json_tokens::check_json(json).map_err(|e| origin.error(expected, format!("invalid JSON ({e})")))
}

pub(super) fn record_name(i: usize, id: Option<impl std::fmt::Display>) -> String {
    match id {
        Some(id) => format!("annotations[{i}] (id {id})"),
        None => format!("annotations[{i}]"),
    }
}

/// An integer id is at least [`FIRST_INTEGER_ID`] (smaller values are the codes
/// of string ids); `what` names the record and key, formatted only for an error.
pub(super) fn check_integer_id(origin: &Origin, expected: &str, id: i64, what: impl Fn() -> String) -> Result<i64> {
    if id >= FIRST_INTEGER_ID {
        return Ok(id);
    }
    Err(origin
        .error(expected, format!("{} is {id}, below -2**62 (the integer ids ferrops supports start there)", what())))
}

/// Four finite numbers, width and height >= 0.
pub(super) fn valid_bbox(b: &[f64]) -> bool {
    b.len() == 4 && b.iter().all(|v| v.is_finite()) && b[2] >= 0.0 && b[3] >= 0.0
}

/// Checks a `[x, y, w, h]` box: four finite numbers, width and height >= 0.
pub(super) fn check_bbox(origin: &Origin, expected: &str, record: &str, bbox: &[f64]) -> Result<[f64; 4]> {
    let b: [f64; 4] = bbox
        .try_into()
        .map_err(|_| origin.error(expected, format!("{record} has a 'bbox' of {} numbers instead of 4", bbox.len())))?;
    if b.iter().any(|v| !v.is_finite()) {
        return Err(origin.error(expected, format!("{record} has a non-finite 'bbox' {b:?}")));
    }
    if b[2] < 0.0 || b[3] < 0.0 {
        return Err(origin.error(expected, format!("{record} has a negative width or height in 'bbox' {b:?}")));
    }
    Ok(b)
}
