//! COCO datasets for bbox evaluation: the JSON of a ground-truth file or of a
//! results file parsed into columns, each record checked, so evaluation never
//! meets a missing key or a non-finite number.
//!
//! Records keep their file order: pycocotools' results depend on it (ties in
//! score, the order of ground truth in an image).
//!
//! One job per file: `dataset` the parsed columns; `raw` the records as
//! written; `json_pieces` the parallel split of a record array and
//! `json_scan` the direct record scanner (serde reads what it declines,
//! `json_tokens`, the strict reader, judges it);
//! `checks` what a record must satisfy; `ids` integer and string ids;
//! `ground_truth` and `results` the two kinds of dataset; `segmentation` the
//! masks as written and pycocotools' `annToRLE` of them.

mod checks;
mod dataset;
mod ground_truth;
mod ids;
mod json_pieces;
mod json_scan;
pub mod json_tokens;
mod keypoints;
mod raw;
mod results;
mod segmentation;

pub use checks::Origin;
pub use dataset::{has_box, Annotations, CocoDataset, IdPositions, ImageSizes, MaskColumn, Packed, NO_BOX};
pub use ground_truth::{ground_truth_from_columns, parse_ground_truth, GroundTruthColumns};
pub use ids::{IdStrings, FIRST_INTEGER_ID, STRING_CODE_BASE};
pub use keypoints::{Keypoints, KeypointsCsr};
pub use results::{parse_results, results_from_columns, ResultColumns};
pub use segmentation::Segmentation;
