//! COCO ids as files write them: integers or strings. pycocotools keys its
//! indexes by any hashable id, and real datasets use string image ids, so a
//! string id is kept as an integer code the evaluation compares like any other
//! id, and the strings are kept to turn codes back into ids.
//!
//! String `k` of a dataset has code `STRING_CODE_BASE + k`; integer ids below
//! [`FIRST_INTEGER_ID`] are refused (a clear error), so codes never equal an
//! integer id. Python gives ids unknown to a dataset codes counting down from
//! `FIRST_INTEGER_ID - 1`, which match no record.

use rustc_hash::FxHashMap;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The code of a dataset's first string id.
pub const STRING_CODE_BASE: i64 = i64::MIN;

/// The smallest integer id a file may use (-2^62): the ones below are codes.
pub const FIRST_INTEGER_ID: i64 = -(1 << 62);

/// An id as written: an integer (as `i64`) or a string.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum IdValue {
    Int(i64),
    Str(Box<str>),
}

impl<'de> Deserialize<'de> for IdValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = IdValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer (i64) or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<IdValue, E> {
                Ok(IdValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<IdValue, E> {
                i64::try_from(v).map(IdValue::Int).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<IdValue, E> {
                Ok(IdValue::Str(v.into()))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

impl std::fmt::Display for IdValue {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            IdValue::Int(v) => write!(f, "{v}"),
            IdValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// String ids met in records, by record index, to be coded after a parallel pass.
pub(super) type StringsAt = Vec<(usize, Box<str>)>;

/// The string ids of a dataset, in order of first appearance, and their codes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdStrings {
    strings: Vec<Box<str>>,
    codes: FxHashMap<Box<str>, i64>,
}

impl IdStrings {
    /// The strings, string `k` having code `STRING_CODE_BASE + k`.
    pub fn strings(&self) -> &[Box<str>] {
        &self.strings
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// The code of `s`, given the next code when `s` is new.
    pub(super) fn intern(&mut self, s: &str) -> i64 {
        if let Some(&code) = self.codes.get(s) {
            return code;
        }
        let code = STRING_CODE_BASE + self.strings.len() as i64;
        self.strings.push(s.into());
        self.codes.insert(s.into(), code);
        code
    }

    /// The code of `s` if it is one of these strings.
    pub(super) fn code(&self, s: &str) -> Option<i64> {
        self.codes.get(s).copied()
    }

    /// The index of the string `code` stands for, `None` for an integer id.
    pub(super) fn string_index(code: i64) -> Option<usize> {
        Self::is_string_code(code).then(|| code.wrapping_sub(STRING_CODE_BASE) as usize)
    }

    /// Whether `code` stands for a string id.
    pub fn is_string_code(code: i64) -> bool {
        code < FIRST_INTEGER_ID
    }

    /// The id `code` stands for, for messages.
    pub fn describe(&self, code: i64) -> String {
        match Self::string_index(code).and_then(|k| self.strings.get(k)) {
            Some(s) => format!("{s:?}"),
            None => code.to_string(),
        }
    }
}
