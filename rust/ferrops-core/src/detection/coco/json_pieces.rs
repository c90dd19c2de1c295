//! JSON arrays of annotation records parsed in parallel pieces, with the same
//! records (or the same error) as one serial serde parse; and a ground-truth
//! file's top level walked directly so that its annotations take that path.

use rayon::prelude::*;

use super::checks::{check_json, json_error, Origin};
use super::json_scan::{self, Stop};
use super::raw::{RawAnnotation, RawId};
use crate::error::Result;

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Bytes per piece when an array's records are parsed in parallel.
pub(super) const SPLIT_PIECE: usize = 1 << 20;

/// Annotation records in file order, in the pieces they were parsed in.
pub(super) type RecordPieces = Vec<Vec<RawAnnotation>>;

/// What a piece of an array's records becomes as soon as it is parsed (the
/// records themselves, or the dataset columns they convert to), so that the
/// records as written never all exist at once: at a million records they are
/// a few hundred megabytes, several times their columns.
pub(super) type Convert<'c, T> = &'c (dyn Fn(Vec<RawAnnotation>) -> T + Sync);

/// One piece of an array's records, converted, and how many records it holds.
pub(super) struct Piece<T> {
    pub(super) value: T,
    pub(super) len: usize,
}

/// The records themselves (no conversion).
pub(super) fn as_parsed(records: Vec<RawAnnotation>) -> Vec<RawAnnotation> {
    records
}

fn into_record_pieces(pieces: Vec<Piece<Vec<RawAnnotation>>>) -> RecordPieces {
    pieces.into_iter().map(|p| p.value).collect()
}

/// The annotation records of the JSON array opening at `json[open]`, parsed in
/// parallel pieces of about `piece` bytes, and the index just past its `]`;
/// `None` if the text is not such an array (serde then reports the error).
///
/// A piece after the first starts at a guessed record start (just past a `,`
/// between `}` and `{`, which may be inside a string or a nested list), and is
/// kept only if the piece before it, itself confirmed, stopped exactly there;
/// from the first unconfirmed guess on, the rest is parsed serially. So the
/// records are those of one serial parse whatever the guesses.
pub(super) fn records_in_pieces<T: Send>(
    json: &[u8],
    open: usize,
    piece: usize,
    convert: Convert<T>,
) -> Option<(Vec<Piece<T>>, usize)> {
    if *json.get(open)? != b'[' {
        return None;
    }
    let body = open + 1;
    let mut starts = vec![body];
    while let Some(next) = guess_element_start(json, starts[starts.len() - 1].saturating_add(piece)) {
        starts.push(next);
    }
    let converted =
        |(records, stop): (Vec<RawAnnotation>, Stop)| (Piece { len: records.len(), value: convert(records) }, stop);
    let parsed: Vec<Option<(Piece<T>, Stop)>> = (0..starts.len())
        .into_par_iter()
        .map(|j| {
            let limit = starts.get(j + 1).copied().unwrap_or(usize::MAX);
            json_scan::records_from(json, starts[j], limit, j == 0).map(converted)
        })
        .collect();
    let mut pieces = Vec::with_capacity(starts.len());
    let mut at = body;
    for (&start, parsed) in starts.iter().zip(parsed) {
        if start != at {
            break;
        }
        match parsed? {
            (piece, Stop::Next(next)) => {
                pieces.push(piece);
                at = next;
            }
            (piece, Stop::Closed(end)) => {
                pieces.push(piece);
                return Some((pieces, end));
            }
        }
    }
    // Past the first piece, so past the first element: `]` cannot follow directly.
    match json_scan::records_from(json, at, usize::MAX, false).map(converted)? {
        (piece, Stop::Closed(end)) => {
            pieces.push(piece);
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

/// A ground-truth file's images, categories and annotation records (converted).
type GroundTruthParts<T> = (Option<Vec<RawId>>, Option<Vec<RawId>>, Vec<Piece<T>>);

/// A ground-truth file read without serde's pass over the annotations: the top
/// level is walked directly and the annotations parsed in parallel. `None` for
/// anything unusual (escaped or repeated keys, annotations that are not an
/// array, a record that does not parse); the caller then parses with serde.
pub(super) fn ground_truth_direct<T: Send>(json: &[u8], convert: Convert<T>) -> Option<GroundTruthParts<T>> {
    let members = json_scan::object_members(json, convert)?;
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
/// checks the text with the strict reader and re-parses it serially, so the
/// error is the reader's or serde_json's, with its line and column in the
/// whole text.
pub(super) fn parse_records(json: &[u8], origin: &Origin, expected: &str) -> Result<RecordPieces> {
    let open = json.iter().position(|&b| !is_space(b));
    if let Some((pieces, end)) = open.and_then(|open| records_in_pieces(json, open, SPLIT_PIECE, &as_parsed)) {
        if json[end..].iter().all(|&c| is_space(c)) {
            return Ok(into_record_pieces(pieces));
        }
    }
    check_json(json, origin, expected)?;
    serde_json::from_slice(json).map(|records| vec![records]).map_err(|e| json_error(origin, expected, e))
}

/// The records of the JSON array that is the whole of `json`, each piece
/// converted as soon as it is parsed, its records numbered from 0; the values
/// in file order, each with the index of its piece's first record. `None`
/// where the direct scanner does not read the text or a piece fails to
/// convert: the caller then parses ([`parse_records`]) and converts in order
/// ([`in_order`]), for the error (of the first bad record in file order).
pub(super) fn converted_records<T: Send>(json: &[u8], convert: Convert<Result<T>>) -> Option<Vec<(T, usize)>> {
    let open = json.iter().position(|&b| !is_space(b))?;
    let (pieces, end) = records_in_pieces(json, open, SPLIT_PIECE, convert)?;
    json[end..].iter().all(|&c| is_space(c)).then_some(())?;
    with_offsets(pieces)
}

/// Converted pieces with the index of each one's first record; `None` if any failed.
pub(super) fn with_offsets<T>(pieces: Vec<Piece<Result<T>>>) -> Option<Vec<(T, usize)>> {
    let mut next = 0;
    pieces
        .into_iter()
        .map(|piece| {
            let offset = next;
            next += piece.len;
            piece.value.ok().map(|value| (value, offset))
        })
        .collect()
}

/// The first record of the JSON array that `json` holds (`Some(None)` for an
/// empty array), what results' `loadRes` branch goes by; `None` where the
/// direct scanner does not read it.
pub(super) fn first_record(json: &[u8]) -> Option<Option<RawAnnotation>> {
    let open = json.iter().position(|&b| !is_space(b))?;
    if json[open] != b'[' {
        return None;
    }
    // A limit just past the `[`: the scan stops after the first element.
    let (records, _) = json_scan::records_from(json, open + 1, open + 2, true)?;
    Some(records.into_iter().next())
}

/// Converts record pieces in parallel, each with the index of its first record;
/// on failure, the error of the first bad record in file order.
pub(super) fn in_order<T: Send>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::coco::{parse_ground_truth, Origin};

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
                let (pieces, end) = records_in_pieces(text, open, piece, &as_parsed).expect("parsed");
                assert_eq!(describe(&into_record_pieces(pieces)), expected, "piece {piece}");
                assert!(text[end..].iter().all(|&c| is_space(c)));
            }
        }
        let malformed: &[&[u8]] = &[
            br#"[{"a": 1}, {"b": 2},, {"c": 3}]"#,
            br#"[{"a": 1}, {"b": 2}, ]"#,
            br#"[{"a": 1}, {"b": 2}"#,
            br#"[{"a": 1}, {"id": true}, {"c": 3}]"#,
            br#"[{"a": 1}, 2, {"c": 3}]"#,
            br#"[{"id": 2}, {"id": 1.0}]"#,
            br#"[{"id": 2}, {"bbox": [1e400]}]"#,
        ];
        for text in malformed {
            for piece in 1..text.len() + 2 {
                assert!(records_in_pieces(text, 0, piece, &as_parsed).is_none(), "piece {piece}");
            }
            let origin = Origin { function: "t", argument: "t", source: "t" };
            assert!(parse_records(text, &origin, "records").is_err());
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
        assert!(ground_truth_direct(direct, &as_parsed).is_some());
        assert!(ground_truth_direct(escaped, &as_parsed).is_none());
        const O: Origin = Origin { function: "COCO", argument: "annotation_file", source: "gt.json" };
        // Compared as text: the missing scores are NaN, which `==` never equates.
        let read = |json: &[u8]| format!("{:?}", parse_ground_truth(json, &O).unwrap());
        assert_eq!(read(direct), read(escaped));
        assert!(ground_truth_direct(br#"{"images": [], "images": []}"#, &as_parsed).is_none());
        assert!(ground_truth_direct(br#"{"annotations": null}"#, &as_parsed).is_none());
        assert_eq!(parse_ground_truth(br#"{"annotations": null}"#, &O).unwrap().annotations.len(), 0);
    }
}
