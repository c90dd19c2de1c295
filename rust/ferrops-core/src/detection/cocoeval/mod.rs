//! The COCO bbox, segm and keypoints evaluation, bit for bit pycocotools'
//! `COCOeval` (SPEC DET-COCO, DET-COCO-SEGM, DET-OKS), quirks included: crowd ground truth matched repeatedly with IoU = inter / det
//! area, ignored ground truth sorted last, stable sorts by score, both ends of an
//! area range inclusive, a ground truth with id 0 treated as "no match", the
//! right-to-left precision envelope and `searchsorted(side="left")` at the recall
//! thresholds, unreached recall points left at 0.
//!
//! [`evaluate`] matches the (category, image) units in parallel, in fixed chunks
//! of `CHUNK` units; a chunk keeps, per unit, the kept detections' scores and
//! one byte per (area range, detection, threshold): true positive, false positive
//! or ignored. No IoU matrix outlives its unit. [`accumulate`] builds the
//! precision/recall/score arrays one category per task. Every unit and cell is
//! computed by one task from its own data, so results do not depend on the
//! thread count.
//!
//! pycocotools' per-entry dicts (`evalImgs`) and IoU matrices (`ious`) are not
//! kept: [`Evaluation::image_evaluations`] and [`Evaluation::unit_ious`] redo one
//! unit's matching from the kept buckets when asked, with the same code.
//!
//! One job per file: `buckets` groups the records by (category, image) as
//! pycocotools' `_prepare`; `similarity` is the unit's `[D, G]` similarity
//! matrix (bbox IoU, mask IoU, keypoint OKS in `oks`; one arm per iouType);
//! `matching` is one unit's greedy matching (`evaluateImg`); `evaluate` runs it over every unit into an
//! `evaluation::Evaluation`, which also answers `evalImgs`/`ious` on demand;
//! `accumulate` builds the precision/recall arrays.

mod accumulate;
mod buckets;
mod evaluate;
mod evaluation;
mod matching;
mod oks;
mod similarity;

pub use accumulate::{accumulate, AccumulateParams, Accumulated};
pub use evaluate::{evaluate, EvalParams};
pub use evaluation::{Evaluation, ImageEvaluation};
pub use similarity::IouType;

/// A small ground truth and its detections, checked by hand in the tests.
#[cfg(test)]
fn test_datasets() -> (crate::detection::coco::CocoDataset, crate::detection::coco::CocoDataset) {
    use crate::detection::coco::{parse_ground_truth, parse_results, Origin};
    let gt = br#"{"images":[{"id":1},{"id":2}],"categories":[{"id":1},{"id":2}],
      "annotations":[
        {"id":1,"image_id":1,"category_id":1,"bbox":[0,0,10,10],"area":100,"iscrowd":0},
        {"id":2,"image_id":1,"category_id":1,"bbox":[20,20,40,40],"area":1600,"iscrowd":0},
        {"id":3,"image_id":2,"category_id":2,"bbox":[0,0,100,100],"area":10000,"iscrowd":1},
        {"id":4,"image_id":2,"category_id":1,"bbox":[5,5,10,10],"area":100,"iscrowd":0}]}"#;
    let o = Origin { function: "t", argument: "t", source: "t" };
    let gt = parse_ground_truth(gt, &o).unwrap();
    let dt = br#"[
        {"image_id":1,"category_id":1,"bbox":[0,0,10,9],"score":0.9},
        {"image_id":1,"category_id":1,"bbox":[21,20,40,40],"score":0.9},
        {"image_id":2,"category_id":2,"bbox":[10,10,5,5],"score":0.3},
        {"image_id":2,"category_id":1,"bbox":[50,50,10,10],"score":0.8},
        {"image_id":2,"category_id":1,"bbox":[5,5,10,11],"score":0.1}]"#;
    let dt = parse_results(dt, &gt, &o).unwrap();
    (gt, dt)
}
