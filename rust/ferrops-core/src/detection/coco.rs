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

    /// The parts one after the other (the one part itself, without a copy).
    fn concat(mut parts: Vec<Annotations>) -> Self {
        if parts.len() == 1 {
            return parts.pop().expect("one part");
        }
        let mut all = Annotations::with_capacity(parts.iter().map(Annotations::len).sum());
        for part in parts {
            all.id.extend_from_slice(&part.id);
            all.image_id.extend_from_slice(&part.image_id);
            all.category_id.extend_from_slice(&part.category_id);
            all.bbox.extend_from_slice(&part.bbox);
            all.area.extend_from_slice(&part.area);
            all.iscrowd.extend_from_slice(&part.iscrowd);
            all.score.extend_from_slice(&part.score);
        }
        all
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
    /// The box if valid; otherwise the error naming `record()`, formatted only then.
    fn checked(&self, origin: &Origin, expected: &str, record: impl Fn() -> String) -> Result<[f64; 4]> {
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

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Bytes per piece when an array's records are parsed in parallel.
const SPLIT_PIECE: usize = 1 << 20;

/// Annotation records in file order, in the pieces they were parsed in.
type RecordPieces = Vec<Vec<RawAnnotation>>;

/// The annotation records of the JSON array opening at `json[open]`, parsed in
/// parallel pieces of about `piece` bytes, and the index just past its `]`;
/// `None` if the text is not such an array (serde then reports the error).
///
/// A piece after the first starts at a guessed record start (just past a `,`
/// between `}` and `{`, which may be inside a string or a nested list), and is
/// kept only if the piece before it, itself confirmed, stopped exactly there;
/// from the first unconfirmed guess on, the rest is parsed serially. So the
/// records are those of one serial parse whatever the guesses.
fn records_in_pieces(json: &[u8], open: usize, piece: usize) -> Option<(RecordPieces, usize)> {
    if *json.get(open)? != b'[' {
        return None;
    }
    let body = open + 1;
    let mut starts = vec![body];
    while let Some(next) = guess_element_start(json, starts[starts.len() - 1].saturating_add(piece)) {
        starts.push(next);
    }
    let parsed: Vec<Option<(Vec<RawAnnotation>, Stop)>> = (0..starts.len())
        .into_par_iter()
        .map(|j| scan::records_from(json, starts[j], starts.get(j + 1).copied().unwrap_or(usize::MAX), j == 0))
        .collect();
    let mut pieces = Vec::with_capacity(starts.len());
    let mut at = body;
    for (&start, parsed) in starts.iter().zip(parsed) {
        if start != at {
            break;
        }
        match parsed? {
            (records, Stop::Next(next)) => {
                pieces.push(records);
                at = next;
            }
            (records, Stop::Closed(end)) => {
                pieces.push(records);
                return Some((pieces, end));
            }
        }
    }
    // Past the first piece, so past the first element: `]` cannot follow directly.
    match scan::records_from(json, at, usize::MAX, false)? {
        (records, Stop::Closed(end)) => {
            pieces.push(records);
            Some((pieces, end))
        }
        (_, Stop::Next(_)) => None,
    }
}

/// From `from` on, the index just past the first `,` that sits between a `}` and
/// a `{` (whitespace aside): where an element of an array of objects may start.
fn guess_element_start(json: &[u8], from: usize) -> Option<usize> {
    let next_solid = |i: usize| (i..json.len()).find(|&k| !is_space(json[k]));
    let mut i = from;
    loop {
        let close = i + json.get(i..)?.iter().position(|&c| c == b'}')?;
        if let Some(comma) = next_solid(close + 1).filter(|&k| json[k] == b',') {
            if next_solid(comma + 1).is_some_and(|k| json[k] == b'{') {
                return Some(comma + 1);
            }
        }
        i = close + 1;
    }
}

/// Where [`scan::records_from`] stopped.
enum Stop {
    /// At the start of an element (just past its `,`) at or beyond the limit.
    Next(usize),
    /// Past the array's `]`.
    Closed(usize),
}

/// A ground-truth file's images, categories and annotation records.
type GroundTruthParts = (Option<Vec<RawId>>, Option<Vec<RawId>>, RecordPieces);

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
    for (key, start, end, pieces) in members {
        match key {
            b"images" => images = serde_json::from_slice(&json[start..end]).ok()?,
            b"categories" => categories = serde_json::from_slice(&json[start..end]).ok()?,
            b"annotations" => records = pieces?,
            _ => {}
        }
    }
    Some((images, categories, records))
}

/// Parses a JSON array of annotation records in parallel pieces. Any failure
/// re-parses serially, so the error is serde_json's, with its line and column
/// in the whole text.
fn parse_records(json: &[u8]) -> std::result::Result<RecordPieces, serde_json::Error> {
    let open = json.iter().position(|&b| !is_space(b));
    if let Some((pieces, end)) = open.and_then(|open| records_in_pieces(json, open, SPLIT_PIECE)) {
        if json[end..].iter().all(|&c| is_space(c)) {
            return Ok(pieces);
        }
    }
    serde_json::from_slice(json).map(|records| vec![records])
}

/// A direct scanner for the common shape of annotation records: a flat object
/// whose known keys hold numbers (and `bbox` a list of numbers). It returns
/// `None` for anything else (escaped keys, `null`, a repeated key, a float where
/// an integer belongs, malformed JSON...), and the caller then uses serde_json,
/// which accepts or reports exactly as before. Numbers are read in the same pass
/// and correctly rounded, as serde_json's `float_roundtrip` reads them: exactly
/// by Clinger's fast path when the digits and the power of ten are exact
/// doubles (nearly every number in COCO files), by the standard library's
/// parser otherwise.
mod scan {
    use super::{Flag, RawAnnotation, RawBox, RecordPieces, Stop};

    /// A scanned JSON number: its text, and its decimal digits as `significand *
    /// 10^exponent` (`exact` when no significant digit was dropped).
    struct Number<'a> {
        text: &'a [u8],
        negative: bool,
        integer: bool,
        significand: u64,
        exponent: i32,
        exact: bool,
    }

    /// 10^0 ..= 10^22, every one an exact double.
    const POWERS_OF_TEN: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22,
    ];

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

        /// `{` after whitespace: `Some(true)` when members follow, `Some(false)`
        /// for an empty object; anything else is malformed (`None`).
        fn object_opened(&mut self) -> Option<bool> {
            self.ws();
            self.eat(b'{')?;
            self.ws();
            Some(self.eat(b'}').is_none())
        }

        /// A member's key and its `:`, with the whitespace around them.
        fn member_key(&mut self) -> Option<&'a [u8]> {
            self.ws();
            let key = self.key()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            Some(key)
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

        /// A JSON number, validated by its grammar, read in one pass.
        fn number(&mut self) -> Option<Number<'a>> {
            let start = self.i;
            let negative = self.eat(b'-').is_some();
            let mut n = Number { text: &[], negative, integer: true, significand: 0, exponent: 0, exact: true };
            match self.peek()? {
                b'0' => self.i += 1,
                b'1'..=b'9' => self.digits(&mut n, false),
                _ => return None,
            }
            if self.peek() == Some(b'.') {
                self.i += 1;
                n.integer = false;
                if !self.peek()?.is_ascii_digit() {
                    return None;
                }
                self.digits(&mut n, true);
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.i += 1;
                n.integer = false;
                let negative_exponent = match self.peek() {
                    Some(b'-') => (self.i += 1, true).1,
                    Some(b'+') => (self.i += 1, false).1,
                    _ => false,
                };
                if !self.peek()?.is_ascii_digit() {
                    return None;
                }
                let mut e: i32 = 0;
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    // Saturates far beyond any exponent the fast path takes.
                    e = (e * 10 + i32::from(c - b'0')).min(100_000);
                    self.i += 1;
                }
                n.exponent += if negative_exponent { -e } else { e };
            }
            n.text = &self.b[start..self.i];
            Some(n)
        }

        /// Digits into the significand (19 at most, leading zeros aside); after
        /// the decimal point each digit lowers the exponent.
        fn digits(&mut self, n: &mut Number, fraction: bool) {
            while let Some(c @ b'0'..=b'9') = self.peek() {
                if n.significand < 1_000_000_000_000_000_000 {
                    n.significand = n.significand * 10 + u64::from(c - b'0');
                    n.exponent -= i32::from(fraction);
                } else {
                    n.exact = false;
                }
                self.i += 1;
            }
        }

        fn int(&mut self) -> Option<i64> {
            let n = self.number()?;
            if !n.integer {
                return None;
            }
            if !n.exact {
                return std::str::from_utf8(n.text).ok()?.parse().ok();
            }
            if n.negative {
                0i64.checked_sub_unsigned(n.significand)
            } else {
                i64::try_from(n.significand).ok()
            }
        }

        fn float(&mut self) -> Option<f64> {
            let n = self.number()?;
            if n.exact && n.integer {
                // As serde_json converts integers: "-0" is 0.0, not -0.0; u64 and
                // i64 conversions round to nearest even, symmetric in the sign.
                let magnitude = n.significand as f64;
                return Some(if n.negative && n.significand != 0 { -magnitude } else { magnitude });
            }
            // Clinger's fast path: a significand below 2^53 and a power of ten up
            // to 10^22 are exact doubles, so one multiplication or division is
            // the correctly rounded value, the one the standard parser gives.
            if n.exact && n.significand <= 1 << 53 && (-22..=22).contains(&n.exponent) {
                let power = POWERS_OF_TEN[n.exponent.unsigned_abs() as usize];
                let magnitude = n.significand as f64;
                let value = if n.exponent < 0 { magnitude / power } else { magnitude * power };
                return Some(if n.negative { -value } else { value });
            }
            let text = std::str::from_utf8(n.text).ok()?;
            // Integers convert as serde_json converts them.
            if n.integer {
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
                _ => self.number().map(|_| ()),
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
    /// array its records (parsed while finding its end, not in a second pass).
    type Member<'a> = (&'a [u8], usize, usize, Option<RecordPieces>);

    /// The members of the JSON object that is the whole of `json`.
    pub(super) fn object_members(json: &[u8]) -> Option<Vec<Member<'_>>> {
        let mut c = Cursor { b: json, i: 0 };
        let mut members = Vec::new();
        if c.object_opened()? {
            loop {
                let key = c.member_key()?;
                let start = c.i;
                let mut records = None;
                if key == b"annotations" && c.peek()? == b'[' {
                    let (pieces, end) = super::records_in_pieces(json, start, super::SPLIT_PIECE)?;
                    records = Some(pieces);
                    c.i = end;
                } else {
                    c.skip(0)?;
                }
                members.push((key, start, c.i, records));
                if c.object_closed()? {
                    break;
                }
            }
        }
        c.ws();
        (c.i == json.len()).then_some(members)
    }

    impl Cursor<'_> {
        /// One flat annotation object at the cursor (see the module's note).
        fn record(&mut self) -> Option<RawAnnotation> {
            let mut r = RawAnnotation::default();
            let mut seen = 0u8;
            if self.object_opened()? {
                loop {
                    let key = self.member_key()?;
                    let bit = match key {
                        b"id" => (r.id = Some(self.int()?), 1).1,
                        b"image_id" => (r.image_id = Some(self.int()?), 2).1,
                        b"category_id" => (r.category_id = Some(self.int()?), 4).1,
                        b"bbox" => (r.bbox = Some(self.numbers()?), 8).1,
                        b"area" => (r.area = Some(self.float()?), 16).1,
                        b"iscrowd" => (r.iscrowd = Some(self.flag()?), 32).1,
                        b"score" => (r.score = Some(self.float()?), 64).1,
                        _ => {
                            self.skip(0)?;
                            0
                        }
                    };
                    // serde rejects a repeated field; let it say so.
                    if seen & bit != 0 {
                        return None;
                    }
                    seen |= bit;
                    if self.object_closed()? {
                        break;
                    }
                }
            }
            Some(r)
        }
    }

    /// The scanner on one whole record (the tests compare it with serde).
    #[cfg(test)]
    pub(super) fn record(bytes: &[u8]) -> Option<RawAnnotation> {
        let mut c = Cursor { b: bytes, i: 0 };
        c.ws();
        let r = c.record()?;
        c.ws();
        (c.i == bytes.len()).then_some(r)
    }

    /// The records of an array from `from`, the start of an element (just past
    /// the `[`, `first`, or a `,`), while they start before `limit`. An element
    /// this scanner declines is delimited by [`Cursor::skip`] and read by serde;
    /// `None` if serde rejects it or the array is malformed.
    pub(super) fn records_from(
        json: &[u8],
        from: usize,
        limit: usize,
        first: bool,
    ) -> Option<(Vec<RawAnnotation>, Stop)> {
        let mut c = Cursor { b: json, i: from };
        let mut records = Vec::new();
        c.ws();
        if first && c.eat(b']').is_some() {
            return Some((records, Stop::Closed(c.i)));
        }
        loop {
            c.ws();
            let start = c.i;
            match c.record() {
                Some(record) => records.push(record),
                None => {
                    c.i = start;
                    c.skip(0)?;
                    records.push(serde_json::from_slice(&json[start..c.i]).ok()?);
                }
            }
            c.ws();
            match c.peek()? {
                b',' => {
                    c.i += 1;
                    if c.i >= limit {
                        return Some((records, Stop::Next(c.i)));
                    }
                }
                b']' => return Some((records, Stop::Closed(c.i + 1))),
                _ => return None,
            }
        }
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

/// Four finite numbers, width and height >= 0.
fn valid_bbox(b: &[f64]) -> bool {
    b.len() == 4 && b.iter().all(|v| v.is_finite()) && b[2] >= 0.0 && b[3] >= 0.0
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

/// Converts record pieces in parallel, each with the index of its first record;
/// on failure, the error of the first bad record in file order.
fn in_order<T: Send>(
    pieces: RecordPieces,
    convert: impl Fn(Vec<RawAnnotation>, usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let offsets: Vec<usize> = pieces
        .iter()
        .scan(0, |next, piece| {
            let offset = *next;
            *next += piece.len();
            Some(offset)
        })
        .collect();
    let converted: Vec<Result<T>> =
        pieces.into_par_iter().zip(offsets).map(|(piece, offset)| convert(piece, offset)).collect();
    converted.into_iter().collect()
}

/// Ground-truth records `offset..` checked and as columns, with the first one
/// without a score.
fn ground_truth_piece(
    records: Vec<RawAnnotation>,
    offset: usize,
    origin: &Origin,
) -> Result<(Annotations, Option<usize>)> {
    let mut annotations = Annotations::with_capacity(records.len());
    let mut first_without_score = None;
    for (i, r) in (offset..).zip(records) {
        // Formatted only for an error: most records have none.
        let name = || record_name(i, r.id);
        let missing = |key: &str| origin.error(GT_EXPECTED, format!("{} has no '{key}'", name()));
        let id = r.id.ok_or_else(|| missing("id"))?;
        let image_id = r.image_id.ok_or_else(|| missing("image_id"))?;
        let category_id = r.category_id.ok_or_else(|| missing("category_id"))?;
        let bbox = r.bbox.ok_or_else(|| missing("bbox"))?.checked(origin, GT_EXPECTED, name)?;
        let area = r.area.unwrap_or(bbox[2] * bbox[3]);
        if !area.is_finite() {
            return Err(origin.error(GT_EXPECTED, format!("{} has a non-finite 'area' {area}", name())));
        }
        if r.score.is_none() && first_without_score.is_none() {
            first_without_score = Some(i);
        }
        annotations.id.push(id);
        annotations.image_id.push(image_id);
        annotations.category_id.push(category_id);
        annotations.bbox.push(bbox);
        annotations.area.push(area);
        annotations.iscrowd.push(r.iscrowd.is_some_and(|f| f.0));
        annotations.score.push(r.score.unwrap_or(f64::NAN));
    }
    Ok((annotations, first_without_score))
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
                None => RecordPieces::new(),
            };
            (raw.images, raw.categories, records)
        }
    };
    let image_ids = ids(origin, "images", images)?;
    let category_ids = ids(origin, "categories", categories)?;
    let parts = in_order(records, |records, offset| ground_truth_piece(records, offset, origin))?;
    let first_without_score = parts.iter().find_map(|(_, first)| *first);
    let annotations = Annotations::concat(parts.into_iter().map(|(part, _)| part).collect());
    Ok(CocoDataset::new(image_ids, category_ids, annotations, first_without_score))
}

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
    let pieces = parse_records(json).map_err(|e| json_error(origin, RES_EXPECTED, e))?;
    let known_images: ImageSet = ground_truth.image_ids.iter().copied().collect();
    let parts = in_order(pieces, |records, offset| results_piece(records, offset, &known_images, origin))?;
    let annotations = Annotations::concat(parts);
    Ok(CocoDataset::new(ground_truth.image_ids.clone(), ground_truth.category_ids.clone(), annotations, None))
}

/// Result records `offset..` checked and as `loadRes` stores them: ids counting
/// from 1 in file order, `area = w * h`, not crowd.
fn results_piece(
    records: Vec<RawAnnotation>,
    offset: usize,
    known_images: &ImageSet,
    origin: &Origin,
) -> Result<Annotations> {
    let mut annotations = Annotations::with_capacity(records.len());
    for (i, r) in (offset..).zip(records) {
        let missing = |key: &str| origin.error(RES_EXPECTED, format!("results[{i}] has no '{key}'"));
        let image_id = r.image_id.ok_or_else(|| missing("image_id"))?;
        let category_id = r.category_id.ok_or_else(|| missing("category_id"))?;
        let b = r.bbox.ok_or_else(|| missing("bbox"))?;
        if b.len != 4 {
            return Err(
                origin.error(RES_EXPECTED, format!("results[{i}] has a 'bbox' of {} numbers instead of 4", b.len))
            );
        }
        let score = r.score.ok_or_else(|| missing("score"))?;
        check_result(origin, known_images, i, image_id, &b.values, score)?;
        annotations.id.push(i as i64 + 1);
        annotations.image_id.push(image_id);
        annotations.category_id.push(category_id);
        annotations.bbox.push(b.values);
        annotations.area.push(b.values[2] * b.values[3]);
        annotations.iscrowd.push(false);
        annotations.score.push(score);
    }
    Ok(annotations)
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

    /// The records as text, to compare parses (missing scores are NaN, never `==`).
    fn describe(pieces: &RecordPieces) -> Vec<String> {
        pieces
            .iter()
            .flatten()
            .map(|r| {
                let bbox = r.bbox.map(|b| (b.values.map(f64::to_bits), b.len));
                format!(
                    "{:?} {:?} {:?} {bbox:?} {:?} {:?} {:?}",
                    r.id,
                    r.image_id,
                    r.category_id,
                    r.area.map(f64::to_bits),
                    r.iscrowd.map(|f| f.0),
                    r.score.map(f64::to_bits)
                )
            })
            .collect()
    }

    #[test]
    fn parallel_pieces_parse_like_one_serial_pass() {
        // Guessed starts inside strings, in nested lists of objects and at the
        // very end; records the scanner declines (read by serde): every piece
        // size gives serde's records, or fails where serde fails.
        let texts: &[&[u8]] = &[
            br#"[{"id": 1, "s": "}, {\"x\": 1}, {"}, {"id": 2, "seg": [{"c": 1}, {"c": 2}], "bbox": [1, 2, 3, 4]}, {}, {"z": "]"} ]"#,
            br#" [ {"a": [{}, {}, {"b": "}, {"}]} , {"score": 0.5} ,{"d":{"e":{}}},{"area": null}] "#,
            br#"[{}, {}, {}]"#,
            br#"[ ]"#,
            br#"[{"score": null}, {"sc\u006fre": 1}, {"id": 3}]"#,
        ];
        for text in texts {
            let serial: Vec<RawAnnotation> = serde_json::from_slice(text).unwrap();
            let expected = describe(&vec![serial]);
            let open = text.iter().position(|&c| c == b'[').unwrap();
            for piece in 1..text.len() + 2 {
                let (pieces, end) = records_in_pieces(text, open, piece).expect("parsed");
                assert_eq!(describe(&pieces), expected, "piece {piece}");
                assert!(text[end..].iter().all(|&c| is_space(c)));
            }
        }
        let malformed: &[&[u8]] = &[
            br#"[{"a": 1}, {"b": 2},, {"c": 3}]"#,
            br#"[{"a": 1}, {"b": 2}, ]"#,
            br#"[{"a": 1}, {"b": 2}"#,
            br#"[{"a": 1}, {"id": "x"}, {"c": 3}]"#,
            br#"[{"a": 1}, 2, {"c": 3}]"#,
            br#"[{"id": 2}, {"id": 1.0}]"#,
            br#"[{"id": 2}, {"bbox": [1e400]}]"#,
        ];
        for text in malformed {
            for piece in 1..text.len() + 2 {
                assert!(records_in_pieces(text, 0, piece).is_none(), "piece {piece}");
            }
            assert!(parse_records(text).is_err());
        }
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
    fn scanned_numbers_are_the_standard_parser_s() {
        // Random decimals of 1..=22 digits, point anywhere, optional exponent and
        // sign: the fast path, the fallback and serde_json give the same bits.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..20_000 {
            let digits: String = (0..1 + next(22)).map(|_| char::from(b'0' + next(10) as u8)).collect();
            let digits = digits.trim_start_matches('0');
            let digits = if digits.is_empty() { "0" } else { digits };
            let point = next(digits.len() as u64) as usize;
            let mut text = if next(2) == 0 { String::new() } else { "-".to_string() };
            text.push_str(&digits[..=point]);
            if point + 1 < digits.len() {
                text.push('.');
                text.push_str(&digits[point + 1..]);
            }
            if next(3) == 0 {
                text.push_str(&format!("e{}", next(70) as i64 - 35));
            }
            if text == "-0" {
                continue; // read as Python's json reads it (0.0), checked in scanner_agrees_with_serde
            }
            let json = format!(r#"{{"score": {text}, "area": {text}}}"#);
            let fast = scan::record(json.as_bytes()).expect("scanned");
            let slow: RawAnnotation = serde_json::from_slice(json.as_bytes()).unwrap();
            assert_eq!(fast.score.map(f64::to_bits), slow.score.map(f64::to_bits), "{text}");
            assert_eq!(fast.score.map(f64::to_bits), text.parse::<f64>().ok().map(f64::to_bits), "{text}");
        }
        for text in
            ["9007199254740993", "-9223372036854775808", "18446744073709551615", "0.1e1", "123456789012345678e-40"]
        {
            let json = format!(r#"{{"score": {text}}}"#);
            let fast = scan::record(json.as_bytes()).unwrap().score.map(f64::to_bits);
            let slow = serde_json::from_slice::<RawAnnotation>(json.as_bytes()).unwrap().score.map(f64::to_bits);
            assert_eq!(fast, slow, "{text}");
        }
        let ids = [("-9223372036854775808", Some(i64::MIN)), ("9223372036854775807", Some(i64::MAX))];
        for (text, id) in ids {
            assert_eq!(scan::record(format!(r#"{{"id": {text}}}"#).as_bytes()).unwrap().id, id);
        }
        assert!(scan::record(br#"{"id": 9223372036854775808}"#).is_none());
        assert!(scan::record(br#"{"id": -9223372036854775809}"#).is_none());
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
