//! Detection evaluation: COCO datasets parsed from JSON, the COCO bbox evaluation
//! (bit for bit pycocotools' `COCOeval`, SPEC DET-COCO) and VOC average precision
//! (DET-VOC07, DET-VOC10). Box overlaps come from [`crate::boxes::geometry`].

pub mod coco;
pub mod cocoeval;
pub mod lvis;
pub mod tide;
pub mod voc;
