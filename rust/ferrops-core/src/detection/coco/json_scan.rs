//! A direct scanner for the common shape of annotation records: a flat object
//! whose known keys hold numbers (and `bbox` a list of numbers). It returns
//! `None` for anything else (escaped keys, `null`, a repeated key, a float where
//! an integer belongs, malformed JSON...), and the caller then uses serde_json,
//! which accepts or reports exactly as before. Numbers are read in the same pass
//! and correctly rounded, as serde_json's `float_roundtrip` reads them: exactly
//! by Clinger's fast path when the digits and the power of ten are exact
//! doubles (nearly every number in COCO files), by the standard library's
//! parser otherwise.

use super::ids::IdValue;
use super::json_pieces::{records_in_pieces, Convert, Piece, SPLIT_PIECE};
use super::json_tokens::scan_string;
use super::raw::{Flag, RawAnnotation, RawBox};
use super::segmentation::Segmentation;

/// Where [`records_from`] stopped.
pub(super) enum Stop {
    /// At the start of an element (just past its `,`) at or beyond the limit.
    Next(usize),
    /// Past the array's `]`.
    Closed(usize),
}

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
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
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

    /// A valid string without escapes (UTF-8 checked), its text between the quotes.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        if self.peek()? != b'"' {
            return None;
        }
        let (end, escaped) = scan_string(self.b, self.i).ok()?;
        if escaped {
            return None;
        }
        let text = &self.b[self.i + 1..end - 1];
        self.i = end;
        Some(text)
    }

    /// A key without escapes.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.plain_string()
    }

    /// An id: an integer, or a string without escapes.
    fn id(&mut self) -> Option<IdValue> {
        if self.peek()? == b'"' {
            let text = std::str::from_utf8(self.plain_string()?).ok()?;
            return Some(IdValue::Str(text.into()));
        }
        self.int().map(IdValue::Int)
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

    /// The common number of COCO files, `-?digits(.digits)?` with at most 15
    /// digits in all, in one tight pass; `None` (the cursor left where it was)
    /// for any other text, which [`Cursor::number`] then judges. The value is
    /// [`Cursor::float`]'s: an exact significand below 2^53 divided once by an
    /// exact power of ten is correctly rounded.
    #[inline]
    fn short_decimal(&mut self) -> Option<f64> {
        let b = self.b;
        let mut i = self.i;
        let negative = b.get(i) == Some(&b'-');
        i += usize::from(negative);
        let start = i;
        let mut significand = 0u64;
        while let Some(&c @ b'0'..=b'9') = b.get(i) {
            significand = significand * 10 + u64::from(c - b'0');
            i += 1;
            if i - start > 15 {
                return None;
            }
        }
        let integer_digits = i - start;
        // No digits, or a leading zero before more digits (not JSON).
        if integer_digits == 0 || (integer_digits > 1 && b[start] == b'0') {
            return None;
        }
        let mut fraction_digits = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                significand = significand * 10 + u64::from(c - b'0');
                i += 1;
                fraction_digits += 1;
                if integer_digits + fraction_digits > 15 {
                    return None;
                }
            }
            if fraction_digits == 0 {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            return None;
        }
        self.i = i;
        let magnitude = significand as f64 / POWERS_OF_TEN[fraction_digits];
        // An integer "-0" is 0.0 (serde_json's reading); "-0.0" is -0.0.
        Some(if negative && (significand != 0 || fraction_digits > 0) { -magnitude } else { magnitude })
    }

    fn float(&mut self) -> Option<f64> {
        if let Some(value) = self.short_decimal() {
            return Some(value);
        }
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

    /// A list of numbers of any length (`keypoints`).
    fn number_list(&mut self) -> Option<Vec<f64>> {
        self.eat(b'[')?;
        // COCO's 17 keypoints are 51 numbers: one allocation.
        let mut out = Vec::with_capacity(64);
        self.ws();
        if self.eat(b']').is_some() {
            return Some(out);
        }
        loop {
            self.ws();
            out.push(self.float()?);
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
                // Escapes and UTF-8 checked: this scanner judges what it skips.
                self.i = scan_string(self.b, self.i).ok()?.0;
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
/// array its records (parsed while finding its end, not in a second pass,
/// and converted by the caller's `convert`).
type Member<'a, T> = (&'a [u8], usize, usize, Option<Vec<Piece<T>>>);

/// The members of the JSON object that is the whole of `json`.
pub(super) fn object_members<'a, T: Send>(json: &'a [u8], convert: Convert<T>) -> Option<Vec<Member<'a, T>>> {
    let mut c = Cursor { b: json, i: 0 };
    let mut members = Vec::new();
    if c.object_opened()? {
        loop {
            let key = c.member_key()?;
            let start = c.i;
            let mut records = None;
            if key == b"annotations" && c.peek()? == b'[' {
                let (pieces, end) = records_in_pieces(json, start, SPLIT_PIECE, convert)?;
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
        let mut seen = 0u16;
        if self.object_opened()? {
            loop {
                let key = self.member_key()?;
                let bit = match key {
                    b"id" => (r.id = Some(self.id()?), 1).1,
                    b"image_id" => (r.image_id = Some(self.id()?), 2).1,
                    b"category_id" => (r.category_id = Some(self.id()?), 4).1,
                    b"bbox" => (r.bbox = Some(self.numbers()?), 8).1,
                    b"area" => (r.area = Some(self.float()?), 16).1,
                    b"iscrowd" => (r.iscrowd = Some(self.flag()?), 32).1,
                    b"score" => (r.score = Some(self.float()?), 64).1,
                    b"segmentation" => (r.segmentation = Some(Box::new(self.segmentation()?)), 128).1,
                    b"keypoints" => (r.keypoints = Some(self.number_list()?), 256).1,
                    b"num_keypoints" => (r.num_keypoints = Some(self.float()?), 512).1,
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

impl Cursor<'_> {
    /// Items of a JSON list, each read by `item`, up to and past its `]`.
    fn list_of(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.ws();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A compressed `counts` string: its characters ('0' to 'o') include the
    /// backslash, which JSON writes escaped, so `\\` (and `\"`, `\/`) are read
    /// here; other escapes are declined (serde reads them).
    fn counts_string(&mut self) -> Option<Vec<u8>> {
        let (end, escaped) = scan_string(self.b, self.i).ok()?;
        let text = &self.b[self.i + 1..end - 1];
        self.i = end;
        if !escaped {
            return Some(text.to_vec());
        }
        let mut out = Vec::with_capacity(text.len());
        let mut bytes = text.iter();
        while let Some(&c) = bytes.next() {
            if c != b'\\' {
                out.push(c);
                continue;
            }
            match bytes.next()? {
                &e @ (b'\\' | b'"' | b'/') => out.push(e),
                _ => return None,
            }
        }
        Some(out)
    }

    /// A `segmentation` of the shapes COCO tools write: a list of polygon
    /// lists, or `{"size": [h, w], "counts": "..." | [...]}`. Anything else
    /// (escapes included) is declined and read by serde.
    fn segmentation(&mut self) -> Option<Segmentation> {
        if self.peek()? == b'[' {
            let (mut coords, mut ends) = (Vec::new(), Vec::new());
            self.list_of(|c| {
                c.list_of(|c| {
                    coords.push(c.float()?);
                    Some(())
                })?;
                ends.push(u32::try_from(coords.len()).ok()?);
                Some(())
            })?;
            return Some(Segmentation::Polygons { coords, ends });
        }
        let (mut size, mut compressed, mut runs) = (None, None, None);
        if self.object_opened()? {
            loop {
                match self.member_key()? {
                    b"size" if size.is_none() => {
                        let mut values = Vec::with_capacity(2);
                        self.list_of(|c| {
                            values.push(c.int()?);
                            Some(())
                        })?;
                        size = Some(<[i64; 2]>::try_from(values).ok()?);
                    }
                    b"counts" if compressed.is_none() && runs.is_none() => {
                        if self.peek()? == b'"' {
                            compressed = Some(self.counts_string()?);
                        } else {
                            let mut values = Vec::new();
                            self.list_of(|c| {
                                values.push(c.int()?);
                                Some(())
                            })?;
                            runs = Some(values);
                        }
                    }
                    b"size" | b"counts" => return None,
                    _ => self.skip(0)?,
                }
                if self.object_closed()? {
                    break;
                }
            }
        }
        match (size?, compressed, runs) {
            (size, Some(counts), None) => Some(Segmentation::Compressed { size, counts }),
            (size, None, Some(counts)) => Some(Segmentation::Uncompressed { size, counts }),
            _ => None,
        }
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
pub(super) fn records_from(json: &[u8], from: usize, limit: usize, first: bool) -> Option<(Vec<RawAnnotation>, Stop)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Lcg;

    #[test]
    fn scanner_agrees_with_serde() {
        let accepted: &[&[u8]] = &[
            br#"{"image_id": 3, "category_id": -2, "bbox": [1.5, 2e3, 0.1, 7], "score": 0.30000000000000004}"#,
            br#" {"id":1,"iscrowd":true,"area":12.25,"keypoints_extra":[[1,2.5],{"a":[null,"x\"]"]}],"bbox":[]} "#,
            br#"{}"#,
            br#"{"bbox": [1, 2, 3, 4, 5], "iscrowd": 0, "extra": -0.0e-5}"#,
            br#"{"score": 0, "area": 18446744073709551617, "bbox": [-0.0, 9007199254740993, 1e-320, 0]}"#,
        ];
        for text in accepted {
            let fast = record(text).expect("scanned");
            let slow: RawAnnotation = serde_json::from_slice(text).unwrap();
            assert_eq!((fast.id, fast.image_id, fast.category_id), (slow.id, slow.image_id, slow.category_id));
            assert_eq!(fast.area.map(f64::to_bits), slow.area.map(f64::to_bits));
            assert_eq!(fast.score.map(f64::to_bits), slow.score.map(f64::to_bits));
            assert_eq!(fast.iscrowd.map(|f| f.0), slow.iscrowd.map(|f| f.0));
            assert_eq!(fast.bbox.map(|b| (b.values, b.len)), slow.bbox.map(|b| (b.values, b.len)));
        }
        // Python's json reads "-0" as the integer 0, so the score is +0.0 (serde_json: -0.0).
        assert_eq!(record(br#"{"score": -0}"#).unwrap().score.map(f64::to_bits), Some(0));
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
            assert!(record(text).is_none(), "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn scanned_segmentations_are_serde_s() {
        let scanned: &[&[u8]] = &[
            br#"{"segmentation": [[1, 2.5, 3e1, 4, 5, 6], [], [7, 8, 9, 10]]}"#,
            br#"{"segmentation": []}"#,
            br#"{"segmentation": {"size": [2, 3], "counts": [1, 2, 3]}}"#,
            br#"{"segmentation": {"counts": "0a1", "extra": {"x": [1]}, "size": [20, 30]}}"#,
        ];
        for text in scanned {
            let fast = record(text).expect("scanned").segmentation;
            let slow = serde_json::from_slice::<RawAnnotation>(text).unwrap().segmentation;
            assert_eq!(fast, slow, "{}", String::from_utf8_lossy(text));
        }
        let escaped = br#"{"segmentation": {"size": [2, 3], "counts": "\\a\/\\"}}"#;
        let counts = Segmentation::Compressed { size: [2, 3], counts: br"\a/\".to_vec() };
        assert_eq!(record(escaped).unwrap().segmentation.map(|s| *s), Some(counts));
        // Declined (serde reads them, keeping what no COCO tool writes as invalid).
        let declined: &[&[u8]] = &[
            br#"{"segmentation": {"size": [2, 3], "counts": "a\u0030"}}"#,
            br#"{"segmentation": {"size": [2, 3, 4], "counts": "0"}}"#,
            br#"{"segmentation": {"size": [2, 3], "counts": [1.5]}}"#,
            br#"{"segmentation": {"size": [2, 3], "size": [2, 3], "counts": "0"}}"#,
            br#"{"segmentation": [1, 2, 3]}"#,
            br#"{"segmentation": null}"#,
        ];
        for text in declined {
            assert!(record(text).is_none(), "{}", String::from_utf8_lossy(text));
        }
        let read =
            |text: &[u8]| serde_json::from_slice::<RawAnnotation>(text).ok().and_then(|r| r.segmentation.map(|s| *s));
        assert_eq!(
            read(br#"{"segmentation": {"size": [2, 3], "counts": "a\u0030"}}"#),
            Some(Segmentation::Compressed { size: [2, 3], counts: b"a0".to_vec() })
        );
        assert!(matches!(read(br#"{"segmentation": [1, 2, 3]}"#), Some(Segmentation::Invalid(_))));
        assert!(matches!(read(br#"{"segmentation": {"counts": "0"}}"#), Some(Segmentation::Invalid(_))));
    }

    #[test]
    fn scanned_numbers_are_the_standard_parser_s() {
        // Random decimals of 1..=22 digits, point anywhere, optional exponent and
        // sign: the fast path, the fallback and serde_json give the same bits.
        let mut rng = Lcg::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move |bound: u64| rng.below(bound);
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
            let fast = record(json.as_bytes()).expect("scanned");
            let slow: RawAnnotation = serde_json::from_slice(json.as_bytes()).unwrap();
            assert_eq!(fast.score.map(f64::to_bits), slow.score.map(f64::to_bits), "{text}");
            assert_eq!(fast.score.map(f64::to_bits), text.parse::<f64>().ok().map(f64::to_bits), "{text}");
        }
        for text in
            ["9007199254740993", "-9223372036854775808", "18446744073709551615", "0.1e1", "123456789012345678e-40"]
        {
            let json = format!(r#"{{"score": {text}}}"#);
            let fast = record(json.as_bytes()).unwrap().score.map(f64::to_bits);
            let slow = serde_json::from_slice::<RawAnnotation>(json.as_bytes()).unwrap().score.map(f64::to_bits);
            assert_eq!(fast, slow, "{text}");
        }
        // Not JSON numbers: declined by the short path and the full grammar alike.
        for text in ["01", "-01.5", "1.", "-", ".5", "1.5e", "1.5e+", "--1", "-.5", "0x10"] {
            assert!(record(format!(r#"{{"score": {text}}}"#).as_bytes()).is_none(), "{text}");
            assert!(record(format!(r#"{{"keypoints": [1, {text}]}}"#).as_bytes()).is_none(), "{text}");
        }
        for (text, value) in [("-0.0", -0.0f64), ("0.05", 0.05), ("123456789012345", 123456789012345.0)] {
            let json = format!(r#"{{"keypoints": [{text}, 2]}}"#);
            let keypoints = record(json.as_bytes()).unwrap().keypoints.unwrap();
            assert_eq!(keypoints.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), [value.to_bits(), 2f64.to_bits()]);
        }
        let ids = [("-9223372036854775808", Some(i64::MIN)), ("9223372036854775807", Some(i64::MAX))];
        for (text, id) in ids {
            assert_eq!(record(format!(r#"{{"id": {text}}}"#).as_bytes()).unwrap().id, id.map(IdValue::Int));
        }
        assert!(record(br#"{"id": 9223372036854775808}"#).is_none());
        assert!(record(br#"{"id": -9223372036854775809}"#).is_none());
    }
}
