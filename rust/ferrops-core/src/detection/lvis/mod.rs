//! LVIS evaluation, bit for bit lvis-api's `LVIS`, `LVISResults` and `LVISEval`
//! for bbox and segm (SPEC DET-LVIS, DET-LVIS-SEGM): the federated rules (`neg_category_ids`,
//! `not_exhaustive_category_ids`), the frequency groups, the per-image cap of
//! `LVISResults`, and Fixed AP's per-category cap (Dave et al. 2021).
//!
//! The JSON is read by the COCO parser and the matching and accumulation are the
//! COCO evaluation's, called, not copied: `evaluate` settles which records take
//! part and which are ignored, then runs `cocoeval`. One job per file:
//! `federated` the LVIS-only fields of a ground truth; `results` the cuts of
//! `LVISResults`; `evaluate` the evaluation.

mod evaluate;
mod federated;
mod results;

pub use evaluate::{accumulate, evaluate, LvisEvaluation, LvisParams};
pub use federated::{parse_lvis_ground_truth, Federated, Frequency, ImageLabels, LvisGroundTruth};
pub use results::{limit_results, LvisResults, ResultLimits};
