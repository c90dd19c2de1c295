//! COCO datasets for bbox evaluation: the JSON of a ground-truth file or of a
//! results file parsed into columns, each record checked, so evaluation never
//! meets a missing key or a non-finite number.
//!
//! Records keep their file order: pycocotools' results depend on it (ties in
//! score, the order of ground truth in an image).

use rayon::prelude::*;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{FerropsError, Result};

/// The annotations of a dataset, one entry per record, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub id: Vec<i64>,
    pub image_id: Vec<i64>,
    pub category_id: Vec<i64>,
    /// `[x, y, width, height]`.
    pub bbox: Vec<[f64; 4]>,
    pub area: Vec<f64>,
    pub iscrowd: Vec<bool>,
    /// NaN where a ground-truth record has no score.
    pub score: Vec<f64>,
}

impl Annotations {
    pub fn len(&self) -> usize {
        self.id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    fn with_capacity(n: usize) -> Self {
        Annotations {
            id: Vec::with_capacity(n),
            image_id: Vec::with_capacity(n),
            category_id: Vec::with_capacity(n),
            bbox: Vec::with_capacity(n),
            area: Vec::with_capacity(n),
            iscrowd: Vec::with_capacity(n),
            score: Vec::with_capacity(n),
        }
    }
}

/// The fields evaluation reads of one annotation, in one cache line: matching
/// visits annotations in image order, not file order, and one line per record
/// costs one miss where the columns cost five.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C, align(64))]
pub struct Packed {
    pub bbox: [f64; 4],
    pub area: f64,
    pub score: f64,
    pub id: i64,
    pub crowd: bool,
}

/// A parsed dataset: image and category ids in file order, and the annotations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CocoDataset {
    pub image_ids: Vec<i64>,
    pub category_ids: Vec<i64>,
    pub annotations: Annotations,
    /// The annotations' evaluation fields, record by record.
    pub packed: Vec<Packed>,
    /// The first annotation without a score, if any (such a dataset cannot be
    /// evaluated as detections).
    pub first_without_score: Option<usize>,
}

impl CocoDataset {
    fn new(
        image_ids: Vec<i64>,
        category_ids: Vec<i64>,
        annotations: Annotations,
        first_without_score: Option<usize>,
    ) -> Self {
        let a = &annotations;
        let packed = (0..a.len())
            .into_par_iter()
            .with_min_len(4096)
            .map(|j| Packed { bbox: a.bbox[j], area: a.area[j], score: a.score[j], id: a.id[j], crowd: a.iscrowd[j] })
            .collect();
        CocoDataset { image_ids, category_ids, annotations, packed, first_without_score }
    }
}

/// `iscrowd` as written by COCO tools: 0/1 or false/true.
#[derive(Debug, Clone, Copy)]
struct Flag(bool);

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
struct RawBox {
    values: [f64; 4],
    len: usize,
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
    fn checked(&self, origin: &Origin, expected: &str, record: &str) -> Result<[f64; 4]> {
        if self.len != 4 {
            return Err(origin.error(expected, format!("{record} has a 'bbox' of {} numbers instead of 4", self.len)));
        }
        check_bbox(origin, expected, record, &self.values)
    }
}

/// One annotation as written; every key optional so that a missing one is
/// reported with the record's index rather than a line and column.
#[derive(Deserialize, Default)]
struct RawAnnotation {
    id: Option<i64>,
    image_id: Option<i64>,
    category_id: Option<i64>,
    bbox: Option<RawBox>,
    area: Option<f64>,
    iscrowd: Option<Flag>,
    score: Option<f64>,
}

#[derive(Deserialize)]
struct RawId {
    id: Option<i64>,
}

/// The top level of a ground-truth file; the annotations are kept as raw JSON
/// and parsed in parallel by [`parse_records`].
#[derive(Deserialize)]
struct RawGroundTruth<'a> {
    images: Option<Vec<RawId>>,
    #[serde(borrow)]
    annotations: Option<&'a RawValue>,
    categories: Option<Vec<RawId>>,
}

/// Whether a byte can change [`array_elements`]' state inside an element
/// (quotes and brackets); most bytes cannot and are skipped in a tight loop.
const NESTED_STOP: [bool; 256] = {
    let mut stop = [false; 256];
    stop[b'"' as usize] = true;
    stop[b'[' as usize] = true;
    stop[b'{' as usize] = true;
    stop[b']' as usize] = true;
    stop[b'}' as usize] = true;
    stop
};

/// The byte ranges of the elements of a JSON array (`[...]`, surrounding
/// whitespace allowed), found by tracking strings and nesting; `None` if the
/// text is not a well-formed array at this level (the serial parser then reports
/// the error).
fn array_elements(json: &[u8]) -> Option<Vec<(usize, usize)>> {
    let open = json.iter().position(|&b| !is_space(b))?;
    let (elements, end) = array_span(json, open)?;
    json[end..].iter().all(|&c| is_space(c)).then_some(elements)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The elements of the array opening at `json[open]`, and the index just past
/// its closing bracket.
fn array_span(json: &[u8], open: usize) -> Option<(Vec<(usize, usize)>, usize)> {
    if *json.get(open)? != b'[' {
        return None;
    }
    let trimmed = |from: usize, to: usize| -> Option<(usize, usize)> {
        let element = &json[from..to];
        let first = element.iter().position(|&c| !is_space(c))?;
        let last = element.iter().rposition(|&c| !is_space(c))?;
        Some((from + first, from + last + 1))
    };
    let mut elements = Vec::new();
    let (mut depth, mut start, mut i) = (0usize, open + 1, open + 1);
    while i < json.len() {
        if depth > 0 {
            while i < json.len() && !NESTED_STOP[json[i] as usize] {
                i += 1;
            }
        }
        match *json.get(i)? {
            b'"' => {
                // Skip the string: to the next quote not escaped.
                i += 1;
                loop {
                    match json.get(i)? {
                        b'"' => break,
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' if depth > 0 => depth -= 1,
            b'}' => return None,
            close @ (b',' | b']') if depth == 0 => {
                match trimmed(start, i) {
                    Some(range) => elements.push(range),
                    None if close == b']' && elements.is_empty() => {}
                    None => return None,
                }
                if close == b']' {
                    return Some((elements, i + 1));
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses the given elements of `json` as annotation records, in parallel
/// (fixed chunks, results in order); `None` if any fails.
fn parse_elements(json: &[u8], elements: &[(usize, usize)]) -> Option<Vec<RawAnnotation>> {
    let parsed: std::result::Result<Vec<Vec<RawAnnotation>>, serde_json::Error> = elements
        .par_chunks(2048)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&(s, e)| match scan::record(&json[s..e]) {
                    Some(record) => Ok(record),
                    None => serde_json::from_slice(&json[s..e]),
                })
                .collect()
        })
        .collect();
    parsed.ok().map(|chunks| chunks.into_iter().flatten().collect())
}

/// A ground-truth file's images, categories and annotation records.
type GroundTruthParts = (Option<Vec<RawId>>, Option<Vec<RawId>>, Vec<RawAnnotation>);

/// A ground-truth file read without serde's pass over the annotations: the top
/// level is walked directly and the annotations parsed in parallel. `None` for
/// anything unusual (escaped or repeated keys, annotations that are not an
/// array, a record that does not parse); the caller then parses with serde.
fn ground_truth_direct(json: &[u8]) -> Option<GroundTruthParts> {
    let members = scan::object_members(json)?;
    let mut keys: Vec<&[u8]> = members.iter().map(|m| m.0).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let (mut images, mut categories, mut records) = (None, None, Vec::new());
    for (key, start, end, elements) in members {
        match key {
            b"images" => images = serde_json::from_slice(&json[start..end]).ok()?,
            b"categories" => categories = serde_json::from_slice(&json[start..end]).ok()?,
            b"annotations" => records = parse_elements(json, &elements?)?,
            _ => {}
        }
    }
    Some((images, categories, records))
}

/// Parses a JSON array of annotation records, elements in parallel (fixed
/// chunks, results in order). Any failure re-parses serially, so the error is
/// serde_json's, with its line and column in the whole text.
fn parse_records(json: &[u8]) -> std::result::Result<Vec<RawAnnotation>, serde_json::Error> {
    if let Some(records) = array_elements(json).and_then(|elements| parse_elements(json, &elements)) {
        return Ok(records);
    }
    serde_json::from_slice(json)
}

/// A direct scanner for the common shape of annotation records: a flat object
/// whose known keys hold numbers (and `bbox` a list of numbers). It returns
/// `None` for anything else (escaped keys, `null`, a repeated key, a float where
/// an integer belongs, malformed JSON...), and the caller then uses serde_json,
/// which accepts or reports exactly as before. Numbers go through the standard
/// library's correctly rounded parser, as serde_json's `float_roundtrip` does.
mod scan {
    use super::{Flag, RawAnnotation, RawBox};

    struct Cursor<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl<'a> Cursor<'a> {
        fn ws(&mut self) {
            while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }

        /// After an object member: `,` (more members follow, `false`) or `}` (the
        /// object is closed, `true`); anything else is malformed (`None`).
        fn object_closed(&mut self) -> Option<bool> {
            self.ws();
            let closed = match self.peek()? {
                b',' => false,
                b'}' => true,
                _ => return None,
            };
            self.i += 1;
            Some(closed)
        }

        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            (self.peek()? == c).then(|| self.i += 1)
        }

        fn literal(&mut self, word: &[u8]) -> Option<()> {
            self.b[self.i..].starts_with(word).then(|| self.i += word.len())
        }

        /// A key without escapes.
        fn key(&mut self) -> Option<&'a [u8]> {
            self.eat(b'"')?;
            let start = self.i;
            loop {
                match self.peek()? {
                    b'"' => break,
                    b'\\' => return None,
                    c if c < 0x20 => return None,
                    _ => self.i += 1,
                }
            }
            self.i += 1;
            Some(&self.b[start..self.i - 1])
        }

        /// The text of a JSON number (validated by its grammar) and whether it is
        /// an integer.
        fn number_text(&mut self) -> Option<(&'a str, bool)> {
            let start = self.i;
            let _ = self.eat(b'-');
            match self.peek()? {
                b'0' => self.i += 1,
                b'1'..=b'9' => self.digits(),
                _ => return None,
            }
            let mut integer = true;
            if self.peek() == Some(b'.') {
                self.i += 1;
                integer = false;
                if !self.peek()?.is_ascii_digit() {
                    return None;
                }
                self.digits();
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.i += 1;
                integer = false;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                if !self.peek()?.is_ascii_digit() {
                    return None;
                }
                self.digits();
            }
            Some((std::str::from_utf8(&self.b[start..self.i]).ok()?, integer))
        }

        fn digits(&mut self) {
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }

        fn int(&mut self) -> Option<i64> {
            match self.number_text()? {
                (text, true) => text.parse().ok(),
                _ => None,
            }
        }

        fn float(&mut self) -> Option<f64> {
            let (text, integer) = self.number_text()?;
            // Integers convert as serde_json converts them (so "-0" is 0.0, not -0.0).
            if integer {
                if let Ok(v) = text.parse::<u64>() {
                    return Some(v as f64);
                }
                if let Ok(v) = text.parse::<i64>() {
                    return Some(v as f64);
                }
            }
            let value: f64 = text.parse().ok()?;
            // serde_json rejects numbers beyond f64's range.
            value.is_finite().then_some(value)
        }

        fn flag(&mut self) -> Option<Flag> {
            match self.peek()? {
                b't' => self.literal(b"true").map(|_| Flag(true)),
                b'f' => self.literal(b"false").map(|_| Flag(false)),
                _ => self.int().map(|v| Flag(v != 0)),
            }
        }

        fn numbers(&mut self) -> Option<RawBox> {
            self.eat(b'[')?;
            let mut out = RawBox { values: [0.0; 4], len: 0 };
            self.ws();
            if self.eat(b']').is_some() {
                return Some(out);
            }
            loop {
                self.ws();
                let v = self.float()?;
                if out.len < 4 {
                    out.values[out.len] = v;
                }
                out.len += 1;
                self.ws();
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        return Some(out);
                    }
                    _ => return None,
                }
            }
        }

        /// Skips any JSON value, checking its grammar.
        fn skip(&mut self, depth: usize) -> Option<()> {
            if depth > 64 {
                return None;
            }
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    loop {
                        match self.peek()? {
                            b'"' => break,
                            b'\\' => self.i += 2,
                            c if c < 0x20 => return None,
                            _ => self.i += 1,
                        }
                    }
                    self.i += 1;
                    Some(())
                }
                open @ (b'[' | b'{') => {
                    let close = if open == b'[' { b']' } else { b'}' };
                    self.i += 1;
                    self.ws();
                    if self.eat(close).is_some() {
                        return Some(());
                    }
                    loop {
                        self.ws();
                        if open == b'{' {
                            self.skip_string_key()?;
                            self.ws();
                            self.eat(b':')?;
                            self.ws();
                        }
                        self.skip(depth + 1)?;
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            c if c == close => {
                                self.i += 1;
                                return Some(());
                            }
                            _ => return None,
                        }
                    }
                }
                b't' => self.literal(b"true"),
                b'f' => self.literal(b"false"),
                b'n' => self.literal(b"null"),
                _ => self.number_text().map(|_| ()),
            }
        }

        fn skip_string_key(&mut self) -> Option<()> {
            if self.peek()? != b'"' {
                return None;
            }
            self.skip(0)
        }
    }

    /// A top-level object member: key, value range, and for an `annotations`
    /// array its elements (found by the array splitter, not a second pass).
    type Member<'a> = (&'a [u8], usize, usize, Option<Vec<(usize, usize)>>);

    /// The members of the JSON object that is the whole of `json`.
    pub(super) fn object_members(json: &[u8]) -> Option<Vec<Member<'_>>> {
        let mut c = Cursor { b: json, i: 0 };
        let mut members = Vec::new();
        c.ws();
        c.eat(b'{')?;
        c.ws();
        if c.eat(b'}').is_none() {
            loop {
                c.ws();
                let key = c.key()?;
                c.ws();
                c.eat(b':')?;
                c.ws();
                let start = c.i;
                let mut elements = None;
                if key == b"annotations" && c.peek()? == b'[' {
                    let (found, end) = super::array_span(json, start)?;
                    elements = Some(found);
                    c.i = end;
                } else {
                    c.skip(0)?;
                }
                members.push((key, start, c.i, elements));
                if c.object_closed()? {
                    break;
                }
            }
        }
        c.ws();
        (c.i == json.len()).then_some(members)
    }

    pub(super) fn record(bytes: &[u8]) -> Option<RawAnnotation> {
        let mut c = Cursor { b: bytes, i: 0 };
        let mut r = RawAnnotation::default();
        let mut seen = 0u8;
        c.ws();
        c.eat(b'{')?;
        c.ws();
        if c.eat(b'}').is_none() {
            loop {
                c.ws();
                let key = c.key()?;
                c.ws();
                c.eat(b':')?;
                c.ws();
                let bit = match key {
                    b"id" => (r.id = Some(c.int()?), 1).1,
                    b"image_id" => (r.image_id = Some(c.int()?), 2).1,
                    b"category_id" => (r.category_id = Some(c.int()?), 4).1,
                    b"bbox" => (r.bbox = Some(c.numbers()?), 8).1,
                    b"area" => (r.area = Some(c.float()?), 16).1,
                    b"iscrowd" => (r.iscrowd = Some(c.flag()?), 32).1,
                    b"score" => (r.score = Some(c.float()?), 64).1,
                    _ => {
                        c.skip(0)?;
                        0
                    }
                };
                // serde rejects a repeated field; let it say so.
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                if c.object_closed()? {
                    break;
                }
            }
        }
        c.ws();
        (c.i == bytes.len()).then_some(r)
    }
}

/// What the public function and argument are called, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub function: &'static str,
    pub argument: &'static str,
    /// The file name, or a description such as "<dict>".
    pub source: &'a str,
}

impl Origin<'_> {
    fn error(&self, expected: &str, got: String) -> FerropsError {
        FerropsError::value(self.function, self.argument, expected, format!("{}: {got}", self.source))
    }
}

const GT_EXPECTED: &str = "a COCO JSON object with 'images', 'annotations' and 'categories'";
const RES_EXPECTED: &str = "a JSON list of {'image_id', 'category_id', 'bbox', 'score'} records";

fn json_error(origin: &Origin, expected: &str, err: serde_json::Error) -> FerropsError {
    origin.error(expected, format!("invalid JSON ({err})"))
}

fn record_name(i: usize, id: Option<i64>) -> String {
    match id {
        Some(id) => format!("annotations[{i}] (id {id})"),
        None => format!("annotations[{i}]"),
    }
}

/// Checks a `[x, y, w, h]` box: four finite numbers, width and height >= 0.
fn check_bbox(origin: &Origin, expected: &str, record: &str, bbox: &[f64]) -> Result<[f64; 4]> {
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

fn ids(origin: &Origin, what: &str, raw: Option<Vec<RawId>>) -> Result<Vec<i64>> {
    raw.unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.id.ok_or_else(|| origin.error(GT_EXPECTED, format!("{what}[{i}] has no 'id'"))))
        .collect()
}

/// Parses a ground-truth file (the object pycocotools' `COCO(path)` loads). A
/// missing `area` is the box area and a missing `iscrowd` is 0 (pycocotools
/// would fail on either); `score` is kept when present.
pub fn parse_ground_truth(json: &[u8], origin: &Origin) -> Result<CocoDataset> {
    let (images, categories, records) = match ground_truth_direct(json) {
        Some(parsed) => parsed,
        None => {
            let raw: RawGroundTruth = serde_json::from_slice(json).map_err(|e| json_error(origin, GT_EXPECTED, e))?;
            let records = match raw.annotations {
                Some(text) => parse_records(text.get().as_bytes()).map_err(|e| json_error(origin, GT_EXPECTED, e))?,
                None => Vec::new(),
            };
            (raw.images, raw.categories, records)
        }
    };
    let image_ids = ids(origin, "images", images)?;
    let category_ids = ids(origin, "categories", categories)?;
    let mut annotations = Annotations::with_capacity(records.len());
    let mut first_without_score = None;
    for (i, r) in records.into_iter().enumerate() {
        let name = record_name(i, r.id);
        let missing = |key: &str| origin.error(GT_EXPECTED, format!("{name} has no '{key}'"));
        let id = r.id.ok_or_else(|| missing("id"))?;
        let image_id = r.image_id.ok_or_else(|| missing("image_id"))?;
        let category_id = r.category_id.ok_or_else(|| missing("category_id"))?;
        let bbox = r.bbox.ok_or_else(|| missing("bbox"))?.checked(origin, GT_EXPECTED, &name)?;
        let area = r.area.unwrap_or(bbox[2] * bbox[3]);
        if !area.is_finite() {
            return Err(origin.error(GT_EXPECTED, format!("{name} has a non-finite 'area' {area}")));
        }
        let score = r.score.unwrap_or(f64::NAN);
        if r.score.is_none() && first_without_score.is_none() {
            first_without_score = Some(i);
        }
        annotations.id.push(id);
        annotations.image_id.push(image_id);
        annotations.category_id.push(category_id);
        annotations.bbox.push(bbox);
        annotations.area.push(area);
        annotations.iscrowd.push(r.iscrowd.is_some_and(|f| f.0));
        annotations.score.push(score);
    }
    Ok(CocoDataset::new(image_ids, category_ids, annotations, first_without_score))
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
    let known_images: rustc_hash::FxHashSet<i64> = ground_truth.image_ids.iter().copied().collect();
    let problem = |i: usize| -> Option<FerropsError> {
        let name = format!("results[{i}]");
        let image_id = columns.image_id[i];
        if !known_images.contains(&image_id) {
            return Some(origin.error(
                RES_EXPECTED,
                format!("{name} has image_id {image_id}, which is not an image of the ground truth"),
            ));
        }
        if let Err(e) = check_bbox(origin, RES_EXPECTED, &name, &columns.bbox[4 * i..4 * i + 4]) {
            return Some(e);
        }
        let score = columns.score[i];
        (!score.is_finite()).then(|| origin.error(RES_EXPECTED, format!("{name} has a non-finite 'score' {score}")))
    };
    // Checked in parallel; the error reported is the first bad record's.
    let cheap_ok = |i: usize| {
        let b = &columns.bbox[4 * i..4 * i + 4];
        known_images.contains(&columns.image_id[i])
            && b.iter().all(|v| v.is_finite())
            && b[2] >= 0.0
            && b[3] >= 0.0
            && columns.score[i].is_finite()
    };
    if let Some(i) = (0..n).into_par_iter().with_min_len(4096).find_first(|&i| !cheap_ok(i)) {
        return Err(problem(i).expect("a record failing the check has a problem"));
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
    };
    Ok(CocoDataset::new(ground_truth.image_ids.clone(), ground_truth.category_ids.clone(), annotations, None))
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
    }
    Ok(CocoDataset::new(columns.image_ids.to_vec(), columns.category_ids.to_vec(), annotations, (n > 0).then_some(0)))
}

/// Parses a results file (a JSON list of bbox detections) against its ground
/// truth, as pycocotools' `loadRes(path)` does for bbox results.
pub fn parse_results(json: &[u8], ground_truth: &CocoDataset, origin: &Origin) -> Result<CocoDataset> {
    let records = parse_records(json).map_err(|e| json_error(origin, RES_EXPECTED, e))?;
    let n = records.len();
    let mut image_id = Vec::with_capacity(n);
    let mut category_id = Vec::with_capacity(n);
    let mut bbox = Vec::with_capacity(4 * n);
    let mut score = Vec::with_capacity(n);
    for (i, r) in records.into_iter().enumerate() {
        let missing = |key: &str| origin.error(RES_EXPECTED, format!("results[{i}] has no '{key}'"));
        image_id.push(r.image_id.ok_or_else(|| missing("image_id"))?);
        category_id.push(r.category_id.ok_or_else(|| missing("category_id"))?);
        let b = r.bbox.ok_or_else(|| missing("bbox"))?;
        if b.len != 4 {
            return Err(
                origin.error(RES_EXPECTED, format!("results[{i}] has a 'bbox' of {} numbers instead of 4", b.len))
            );
        }
        bbox.extend_from_slice(&b.values);
        score.push(r.score.ok_or_else(|| missing("score"))?);
    }
    let columns =
        ResultColumns { image_id: &image_id, category_id: &category_id, bbox: &bbox, score: &score, area: None };
    results_from_columns(&columns, ground_truth, origin)
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

    #[test]
    fn splits_arrays_like_a_parser() {
        let text = br#" [ {"a": "x,]}\"", "b": [1, {"c": 2}]} ,{}, 3 ] "#;
        let parts: Vec<&[u8]> = array_elements(text).unwrap().into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(parts, vec![&br#"{"a": "x,]}\"", "b": [1, {"c": 2}]}"#[..], b"{}", b"3"]);
        assert_eq!(array_elements(b"[]").unwrap(), vec![]);
        assert!(array_elements(b"[1,,2]").is_none());
        assert!(array_elements(b"[1, 2").is_none());
        assert!(array_elements(b"[1] x").is_none());
        assert!(array_elements(b"{}").is_none());
    }

    #[test]
    fn direct_and_serde_ground_truth_agree() {
        let direct = br#"{"info": {"x": [1, "]"]}, "images": [{"id": 2, "file_name": "a\"b.jpg"}],
            "annotations": [{"id": 5, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2], "segmentation": [[1, 2]]}],
            "categories": [{"id": 1}]}"#;
        // An escaped key makes the direct reader decline; serde reads the same data.
        let escaped = br#"{"info": {"x": [1, "]"]}, "images": [{"id": 2, "file_name": "a\"b.jpg"}],
            "annot\u0061tions": [{"id": 5, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2], "segmentation": [[1, 2]]}],
            "categories": [{"id": 1}]}"#;
        assert!(ground_truth_direct(direct).is_some());
        assert!(ground_truth_direct(escaped).is_none());
        const O: Origin = Origin { function: "COCO", argument: "annotation_file", source: "gt.json" };
        // Compared as text: the missing scores are NaN, which `==` never equates.
        let read = |json: &[u8]| format!("{:?}", parse_ground_truth(json, &O).unwrap());
        assert_eq!(read(direct), read(escaped));
        assert!(ground_truth_direct(br#"{"images": [], "images": []}"#).is_none());
        assert!(ground_truth_direct(br#"{"annotations": null}"#).is_none());
        assert_eq!(parse_ground_truth(br#"{"annotations": null}"#, &O).unwrap().annotations.len(), 0);
    }

    #[test]
    fn scanner_agrees_with_serde() {
        let accepted: &[&[u8]] = &[
            br#"{"image_id": 3, "category_id": -2, "bbox": [1.5, 2e3, 0.1, 7], "score": 0.30000000000000004}"#,
            br#" {"id":1,"iscrowd":true,"area":12.25,"segmentation":[[1,2.5],{"a":[null,"x\"]"]}],"bbox":[]} "#,
            br#"{}"#,
            br#"{"bbox": [1, 2, 3, 4, 5], "iscrowd": 0, "extra": -0.0e-5}"#,
            br#"{"score": 0, "area": 18446744073709551617, "bbox": [-0.0, 9007199254740993, 1e-320, 0]}"#,
        ];
        for text in accepted {
            let fast = scan::record(text).expect("scanned");
            let slow: RawAnnotation = serde_json::from_slice(text).unwrap();
            assert_eq!((fast.id, fast.image_id, fast.category_id), (slow.id, slow.image_id, slow.category_id));
            assert_eq!(fast.area.map(f64::to_bits), slow.area.map(f64::to_bits));
            assert_eq!(fast.score.map(f64::to_bits), slow.score.map(f64::to_bits));
            assert_eq!(fast.iscrowd.map(|f| f.0), slow.iscrowd.map(|f| f.0));
            assert_eq!(fast.bbox.map(|b| (b.values, b.len)), slow.bbox.map(|b| (b.values, b.len)));
        }
        // Python's json reads "-0" as the integer 0, so the score is +0.0 (serde_json: -0.0).
        assert_eq!(scan::record(br#"{"score": -0}"#).unwrap().score.map(f64::to_bits), Some(0));
        let declined: &[&[u8]] = &[
            br#"{"id": 1.0}"#,
            br#"{"id": 1, "id": 2}"#,
            br#"{"score": null}"#,
            br#"{"sc\u006fre": 1}"#,
            br#"{"bbox": [1,,2]}"#,
            br#"{"x": [1,}"#,
            br#"{"score": 01}"#,
            br#"{"score": 1.}"#,
            br#"{"score": 1e400}"#,
            br#"{"score": 1} x"#,
        ];
        for text in declined {
            assert!(scan::record(text).is_none(), "{}", String::from_utf8_lossy(text));
        }
    }

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
