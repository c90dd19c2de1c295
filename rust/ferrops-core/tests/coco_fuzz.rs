//! A deterministic mutation fuzzer for the COCO JSON loader (issue 19's "fuzz the
//! COCO JSON scanner"). Documents are generated (random COCO files with integer
//! and string ids) or mutated from the seed corpus in `fuzz_corpus/coco/`
//! (truncations, deletions, byte flips, splices, and insertions of troublesome
//! tokens: deep nesting, huge numbers, bad UTF-8 and escapes, duplicate keys,
//! ids of the wrong type; segmentations of every kind, valid or not: polygons,
//! uncompressed and compressed RLE). Every document must load to `Ok` or to an error
//! naming its source, never panic; a document the loader accepts must also be
//! accepted by the strict reader that builds the Python view; results and a
//! bbox and a segm evaluation of accepted pairs must not panic either.
//!
//! The default budget is a few seconds; `FERROPS_COCO_FUZZ_CASES=N` runs N
//! cases and `FERROPS_COCO_FUZZ_SEED=S` another sequence, e.g.
//! `FERROPS_COCO_FUZZ_CASES=2000000 cargo test -p ferrops-core --profile dev-opt --test coco_fuzz`.
//! A failing case is written to `target/coco_fuzz_failure.json`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferrops_core::detection::coco::json_tokens::check_json;
use ferrops_core::detection::coco::{parse_ground_truth, parse_results, CocoDataset, Origin};
use ferrops_core::detection::cocoeval::{evaluate, EvalParams, IouType};
use ferrops_core::interrupt::Cancel;

const GT: Origin = Origin { function: "COCO", argument: "annotation_file", source: "fuzz_gt.json" };
const RES: Origin = Origin { function: "COCO.loadRes", argument: "resFile", source: "fuzz_dt.json" };

/// xorshift64*: a fixed sequence per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Tokens that have broken JSON readers, inserted at random places.
fn nasty_tokens() -> Vec<Vec<u8>> {
    let mut tokens: Vec<Vec<u8>> = [
        &b"{"[..],
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\"",
        b"\\",
        b"\\u",
        b"\\ud800",
        b"\\udc00x",
        b"\\u00zz",
        b"\xff",
        b"\xc3",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xe2\x82",
        b"\x00",
        b"\x1f",
        b"1e400",
        b"-1e400",
        b"-0",
        b"-",
        b"1.",
        b".5",
        b"01",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"-4611686018427387905",
        b"18446744073709551616",
        b"123456789012345678901234567890",
        b"1e-400",
        b"NaN",
        b"Infinity",
        b"null",
        b"true",
        b"tru",
        b"\"img_a\"",
        b"\"\"",
        b"\"id\": \"x\",",
        b"\"id\": 1.5,",
        b"\"images\": [],",
        b"\"annotations\": null,",
        b"\"bbox\": [1, 2, 3],",
        b"\"score\": \"0.5\",",
        b"\"image_id\": [1],",
        b"\"category_id\": {},",
        b"\"iscrowd\": 2,",
        b"\"area\": -1,",
        b"\xef\xbb\xbf",
    ]
    .iter()
    .map(|t| t.to_vec())
    .collect();
    for depth in [64, 65, 127, 128, 129, 100_000] {
        tokens.push([vec![b'['; depth], vec![b']'; depth]].concat());
    }
    tokens.push([b"{\"a\":".repeat(130), b"1".to_vec(), b"}".repeat(130)].concat());
    tokens
}

/// Id `k`: with string ids, the even ones are strings.
fn id_text(k: usize, strings: bool) -> String {
    if strings && k.is_multiple_of(2) {
        format!("\"id_{k}\"")
    } else {
        k.to_string()
    }
}

fn id(rng: &mut Rng, strings: bool, n: usize) -> String {
    id_text(rng.below(n), strings)
}

/// A random COCO ground truth and results, integer or string ids.
fn generated(rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let strings = rng.chance(2);
    let (images, cats) = (1 + rng.below(6), 1 + rng.below(4));
    let number = |rng: &mut Rng| match rng.below(4) {
        0 => rng.below(100).to_string(),
        1 => format!("{}.{}", rng.below(100), rng.below(1000)),
        2 => format!("{}e{}", rng.below(10), rng.below(3)),
        _ => format!("{}", rng.next() as f64 / u64::MAX as f64 * 50.0),
    };
    // Small images (some without a size) and segmentations of every kind, valid or not.
    let sizes: Vec<(usize, usize)> = (0..images).map(|_| (rng.below(9), rng.below(9))).collect();
    let image_list: Vec<String> = (0..images)
        .map(|i| match rng.below(5) {
            0 => format!("{{\"id\": {}}}", id_text(i, strings)),
            _ => format!("{{\"id\": {}, \"height\": {}, \"width\": {}}}", id_text(i, strings), sizes[i].0, sizes[i].1),
        })
        .collect();
    let cat_list: Vec<String> = (0..cats).map(|c| format!("{{\"id\": {}}}", id_text(c, strings))).collect();
    let mut annotations = Vec::new();
    for a in 0..rng.below(12) {
        let (img, cat) = (id(rng, strings, images), id(rng, strings, cats));
        let bbox: Vec<String> = (0..4).map(|_| number(rng)).collect();
        let size = sizes[rng.below(images)];
        annotations.push(format!(
            "{{\"id\": {}, \"image_id\": {img}, \"category_id\": {cat}, \"bbox\": [{}], \"iscrowd\": {}{}}}",
            a + 1,
            bbox.join(", "),
            rng.below(2),
            segmentation(rng, &number, size)
        ));
    }
    let gt = format!(
        "{{\"images\": [{}], \"categories\": [{}], \"annotations\": [{}]}}",
        image_list.join(", "),
        cat_list.join(", "),
        annotations.join(", ")
    );
    let mut results = Vec::new();
    let masks = rng.chance(3);
    for _ in 0..rng.below(12) {
        let (img, cat) = (id(rng, strings, images), id(rng, strings, cats + 1));
        let bbox: Vec<String> = (0..4).map(|_| number(rng)).collect();
        let size = sizes[rng.below(images)];
        if masks {
            results.push(format!(
                "{{\"image_id\": {img}, \"category_id\": {cat}{}, \"score\": {}}}",
                segmentation(rng, &number, size),
                number(rng)
            ));
        } else {
            results.push(format!(
                "{{\"image_id\": {img}, \"category_id\": {cat}, \"bbox\": [{}], \"score\": {}{}}}",
                bbox.join(", "),
                number(rng),
                if rng.chance(2) { segmentation(rng, &number, size) } else { String::new() }
            ));
        }
    }
    (gt.into_bytes(), format!("[{}]", results.join(", ")).into_bytes())
}

/// `, "segmentation": ...` for an image of about `(h, w)`: polygons (some of 4
/// or 5 numbers), an uncompressed RLE (runs summing to `h * w` or not), a
/// compressed one (random characters, backslashes escaped), or nothing.
fn segmentation(rng: &mut Rng, number: &dyn Fn(&mut Rng) -> String, (h, w): (usize, usize)) -> String {
    let size = if rng.chance(8) { format!("[{}, {}]", h + rng.below(2), w) } else { format!("[{h}, {w}]") };
    let value = match rng.below(5) {
        0 => return String::new(),
        1 => {
            let parts: Vec<String> = (0..1 + rng.below(3))
                .map(|_| {
                    let n = [4, 5, 6, 8, 12][rng.below(5)];
                    format!("[{}]", (0..n).map(|_| number(rng)).collect::<Vec<_>>().join(", "))
                })
                .collect();
            format!("[{}]", parts.join(", "))
        }
        2 => {
            let mut left = h * w;
            let mut runs = Vec::new();
            while left > 0 && runs.len() < 10 {
                let run = rng.below(left + 1).max(usize::from(!runs.is_empty()));
                runs.push(run.to_string());
                left -= run.min(left);
            }
            if rng.chance(4) {
                runs.push(rng.below(3).to_string());
            }
            format!("{{\"size\": {size}, \"counts\": [{}]}}", runs.join(", "))
        }
        _ => {
            let counts: String = (0..rng.below(8))
                .map(|_| match (b'0' + rng.below(64) as u8) as char {
                    '\\' => "\\\\".to_string(),
                    c => c.to_string(),
                })
                .collect();
            format!("{{\"size\": {size}, \"counts\": \"{counts}\"}}")
        }
    };
    format!(", \"segmentation\": {value}")
}

fn mutate(rng: &mut Rng, doc: &[u8], corpus: &[Vec<u8>], tokens: &[Vec<u8>]) -> Vec<u8> {
    let mut out = doc.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(6) {
            0 => out.truncate(at),
            1 => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at.min(end)..end);
            }
            2 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            3 => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len());
                let piece = &other[from..(from + rng.below(64)).min(other.len())];
                out.splice(at..at, piece.iter().copied());
            }
            _ => {
                let token = &tokens[rng.below(tokens.len())];
                out.splice(at..at, token.iter().copied());
            }
        }
    }
    out
}

/// Loads, and evaluates what loads; `Err` describes a broken property.
fn check(gt_doc: &[u8], dt_doc: &[u8]) -> Result<(), String> {
    let named = |e: String, source: &str| {
        if e.contains(source) {
            Ok(())
        } else {
            Err(format!("error not naming {source}: {e}"))
        }
    };
    let gt = match parse_ground_truth(gt_doc, &GT) {
        Ok(gt) => gt,
        Err(e) => return named(e.to_string(), GT.source),
    };
    if let Err(e) = check_json(gt_doc) {
        return Err(format!("the loader accepted what the strict reader rejects: {e}"));
    }
    let dt = match parse_results(dt_doc, &gt, &RES) {
        Ok(dt) => dt,
        Err(e) => return named(e.to_string(), RES.source),
    };
    let _ = evaluated(&gt, &dt);
    Ok(())
}

fn evaluated(gt: &CocoDataset, dt: &CocoDataset) -> bool {
    let mut img_ids = gt.image_ids.clone();
    img_ids.sort_unstable();
    img_ids.dedup();
    let mut cat_ids = gt.category_ids.clone();
    cat_ids.sort_unstable();
    cat_ids.dedup();
    [IouType::Bbox, IouType::Segm, IouType::Keypoints]
        .map(|iou_type| {
            let params = EvalParams {
                img_ids: &img_ids,
                cat_ids: &cat_ids,
                use_cats: true,
                iou_thrs: &[0.5, 0.75],
                area_rngs: &[[0.0, 1e10], [0.0, 1024.0]],
                max_det: 100,
                iou_type,
                kpt_oks_sigmas: &[0.5, 0.25],
            };
            evaluate(gt, dt, &params, &Cancel::new()).is_ok()
        })
        .contains(&true)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn coco_loader_never_panics_and_agrees_with_the_strict_reader() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz_corpus/coco");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("the seed corpus")
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).expect("a seed"))
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 4, "seeds in {}", dir.display());
    let corpus: Vec<Vec<u8>> = seeds.iter().map(|(_, doc)| doc.clone()).collect();
    let (gt_seeds, dt_seeds): (Vec<_>, Vec<_>) = seeds.iter().partition(|(name, _)| name.starts_with("gt"));
    // The seeds themselves load.
    for (name, doc) in &gt_seeds {
        parse_ground_truth(doc, &GT).unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
    let tokens = nasty_tokens();
    let cases = env("FERROPS_COCO_FUZZ_CASES", 30_000);
    let mut rng = Rng(env("FERROPS_COCO_FUZZ_SEED", 0x5eed_c0c0) | 1);
    let mut accepted = 0usize;
    for case in 0..cases {
        let (gt, dt) = match rng.below(3) {
            0 => generated(&mut rng),
            _ => {
                let gt = &gt_seeds[rng.below(gt_seeds.len())].1;
                let dt = &dt_seeds[rng.below(dt_seeds.len())].1;
                (gt.clone(), dt.clone())
            }
        };
        let (gt, dt) = match rng.below(4) {
            0 => (gt, mutate(&mut rng, &dt, &corpus, &tokens)),
            1 => (mutate(&mut rng, &gt, &corpus, &tokens), dt),
            2 => (mutate(&mut rng, &gt, &corpus, &tokens), mutate(&mut rng, &dt, &corpus, &tokens)),
            _ => (gt, dt),
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&gt, &dt)))
            .unwrap_or_else(|panic| Err(format!("panic: {:?}", panic.downcast_ref::<String>())));
        match outcome {
            Ok(()) => accepted += usize::from(parse_ground_truth(&gt, &GT).is_ok()),
            Err(why) => {
                let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/coco_fuzz_failure.json");
                let _ = std::fs::write(&out, [gt.as_slice(), b"\n---results---\n", dt.as_slice()].concat());
                panic!("case {case}: {why} (documents in {})", out.display());
            }
        }
    }
    // The mutations keep some documents loadable, so evaluation is reached.
    assert!(cases < 100 || accepted > 0);
}
