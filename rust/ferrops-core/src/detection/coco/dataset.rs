//! A parsed COCO dataset: image and category ids, the annotations as columns in
//! file order, and the fields evaluation reads packed record by record.

use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use super::ids::IdStrings;
use super::segmentation::Segmentation;
use crate::mask::prepared::PreparedMask;

/// Each record's mask for `segm` evaluation, by record index, or what is wrong
/// with its segmentation (reported only if evaluation reaches the record, as
/// pycocotools converts only the records it evaluates).
pub type MaskColumn = Arc<Vec<std::result::Result<PreparedMask, Box<str>>>>;

/// What [`CocoDataset::masks_where`] holds for a record it was not asked for.
pub const NOT_CONVERTED: &str = "not converted (not compared with any detection)";

/// `[height, width]` (where given) by image id.
pub type ImageSizes = rustc_hash::FxHashMap<i64, Option<[i64; 2]>>;
use super::keypoints::Keypoints;

/// The box of a ground-truth record written without `bbox` (checked boxes
/// are finite, so NaN marks none).
pub const NO_BOX: [f64; 4] = [f64::NAN; 4];

/// Whether `bbox` is a box, not [`NO_BOX`].
pub fn has_box(bbox: &[f64; 4]) -> bool {
    !bbox[0].is_nan()
}

/// The annotations of a dataset, one entry per record, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub id: Vec<i64>,
    pub image_id: Vec<i64>,
    pub category_id: Vec<i64>,
    /// `[x, y, width, height]`; [`NO_BOX`] for ground truth given without one.
    pub bbox: Vec<[f64; 4]>,
    pub area: Vec<f64>,
    pub iscrowd: Vec<bool>,
    /// NaN where a ground-truth record has no score.
    pub score: Vec<f64>,
    /// The `segmentation` as written, `None` where there is none.
    pub segmentation: Vec<Option<Box<Segmentation>>>,
    /// `keypoints` and `num_keypoints`, where records have them.
    /// Shared: a keypoint evaluation keeps them without a copy.
    pub keypoints: Arc<Keypoints>,
}

impl Annotations {
    pub fn len(&self) -> usize {
        self.id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    /// The parts one after the other (the one part itself, without a copy).
    /// Column by column, each part's column freed once copied: at a million
    /// records the parts and the whole never both exist in full.
    pub(super) fn concat(mut parts: Vec<Annotations>) -> Self {
        if parts.len() == 1 {
            return parts.pop().expect("one part");
        }
        let lengths: Vec<usize> = parts.iter().map(Annotations::len).collect();
        let keypoints =
            parts.iter_mut().map(|part| Arc::unwrap_or_clone(std::mem::take(&mut part.keypoints))).collect();
        Annotations {
            id: concat_column(&mut parts, |p| &mut p.id),
            image_id: concat_column(&mut parts, |p| &mut p.image_id),
            category_id: concat_column(&mut parts, |p| &mut p.category_id),
            bbox: concat_column(&mut parts, |p| &mut p.bbox),
            area: concat_column(&mut parts, |p| &mut p.area),
            iscrowd: concat_column(&mut parts, |p| &mut p.iscrowd),
            score: concat_column(&mut parts, |p| &mut p.score),
            segmentation: concat_column(&mut parts, |p| &mut p.segmentation),
            keypoints: Arc::new(Keypoints::concat(keypoints, &lengths)),
        }
    }

    pub(super) fn with_capacity(n: usize) -> Self {
        Annotations {
            id: Vec::with_capacity(n),
            image_id: Vec::with_capacity(n),
            category_id: Vec::with_capacity(n),
            bbox: Vec::with_capacity(n),
            area: Vec::with_capacity(n),
            iscrowd: Vec::with_capacity(n),
            score: Vec::with_capacity(n),
            segmentation: Vec::with_capacity(n),
            keypoints: Arc::default(),
        }
    }
}

/// The position of each id in a list of ids (the last one where an id
/// repeats), for lookups once per record: a table indexed by the id where the
/// ids are compact (COCO's usual 1..=N), a hash map otherwise. Hashing every
/// record's image id was a tenth of loading results at a million records.
#[derive(Debug, Clone)]
pub struct IdPositions {
    first: i64,
    /// Position + 1 by `id - first`; 0 where no id.
    table: Vec<u32>,
    map: rustc_hash::FxHashMap<i64, usize>,
}

impl IdPositions {
    pub fn new(ids: &[i64]) -> Self {
        let (Some(&lo), Some(&hi)) = (ids.iter().min(), ids.iter().max()) else {
            return IdPositions { first: 0, table: Vec::new(), map: Default::default() };
        };
        let span = (hi as i128 - lo as i128 + 1) as u128;
        if span <= 2 * ids.len() as u128 + 1024 && ids.len() < u32::MAX as usize {
            let mut table = vec![0u32; span as usize];
            for (position, &id) in ids.iter().enumerate() {
                table[(id - lo) as usize] = position as u32 + 1;
            }
            return IdPositions { first: lo, table, map: Default::default() };
        }
        IdPositions { first: 0, table: Vec::new(), map: ids.iter().enumerate().map(|(i, &id)| (id, i)).collect() }
    }

    #[inline]
    pub fn get(&self, id: i64) -> Option<usize> {
        if self.table.is_empty() {
            return self.map.get(&id).copied();
        }
        let at = usize::try_from(id.checked_sub(self.first)?).ok()?;
        self.table.get(at).and_then(|&p| p.checked_sub(1)).map(|p| p as usize)
    }

    #[inline]
    pub fn contains(&self, id: i64) -> bool {
        self.get(id).is_some()
    }
}

/// One column of every part, one after the other; each part's column is
/// taken (and freed) as it is copied.
fn concat_column<T>(parts: &mut [Annotations], column: impl Fn(&mut Annotations) -> &mut Vec<T>) -> Vec<T> {
    let mut all = Vec::with_capacity(parts.iter_mut().map(|p| column(p).len()).sum());
    for part in parts {
        all.append(column(part));
        *column(part) = Vec::new();
    }
    all
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
    /// Ground truth that matching ignores: crowd, and for keypoints also
    /// `num_keypoints == 0` (set when a keypoint evaluation starts).
    pub ignore: bool,
    /// The record's index in the dataset: its mask's in [`MaskColumn`], its
    /// keypoints' in [`Keypoints`].
    pub row: u32,
}

/// A parsed dataset: image and category ids in file order, and the annotations.
/// Ids are integers or the codes of string ids (see [`super::ids`]).
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
    /// The string ids the codes stand for.
    pub id_strings: IdStrings,
    /// `[height, width]` of each image (by `image_ids` position) where given.
    pub image_sizes: Vec<Option<[i64; 2]>>,
    /// Box results: a record without a segmentation stands for its box's
    /// polygon (what `loadRes` writes there).
    pub box_segmentation: bool,
    /// The file (or `"<list>"`...) the dataset came from, for error messages.
    pub source: Box<str>,
    /// The masks, converted on first use (see [`CocoDataset::masks`]).
    pub masks: OnceLock<MaskColumn>,
}

impl CocoDataset {
    pub(super) fn new(
        image_ids: Vec<i64>,
        category_ids: Vec<i64>,
        annotations: Annotations,
        first_without_score: Option<usize>,
        id_strings: IdStrings,
    ) -> Self {
        let a = &annotations;
        let packed = (0..a.len())
            .into_par_iter()
            .with_min_len(4096)
            .map(|j| Packed {
                bbox: a.bbox[j],
                area: a.area[j],
                score: a.score[j],
                id: a.id[j],
                crowd: a.iscrowd[j],
                ignore: a.iscrowd[j],
                row: j as u32,
            })
            .collect();
        let image_sizes = vec![None; image_ids.len()];
        CocoDataset {
            image_ids,
            category_ids,
            annotations,
            packed,
            first_without_score,
            id_strings,
            image_sizes,
            box_segmentation: false,
            source: "".into(),
            masks: OnceLock::new(),
        }
    }

    /// pycocotools' `annToRLE` of every record, prepared for mask IoU, in
    /// parallel, once: a record of an image the dataset lacks, without a
    /// segmentation, or with a malformed one gets the reason instead.
    pub fn masks(&self) -> MaskColumn {
        self.masks.get_or_init(|| Arc::new(self.convert_masks(None))).clone()
    }

    /// The masks of the records `wanted` marks (the records of the others
    /// hold [`NOT_CONVERTED`]), not kept: for an evaluation that compares only
    /// those. The dataset's whole column instead where it has one already.
    pub fn masks_where(&self, wanted: &[bool]) -> MaskColumn {
        match self.masks.get() {
            Some(all) => all.clone(),
            None => Arc::new(self.convert_masks(Some(wanted))),
        }
    }

    /// Why record `j`'s mask cannot be made (what [`CocoDataset::masks`]
    /// would hold), without rasterising a segmentation that surely converts.
    pub fn mask_problem(&self, j: usize, sizes: &ImageSizes) -> Option<Box<str>> {
        self.with_segmentation(j, sizes, |segmentation, size| {
            if segmentation.surely_converts(size) {
                return Ok(());
            }
            segmentation.to_rle(size).map(drop)
        })
        .err()
    }

    /// `[height, width]` by image id, for converting masks.
    pub fn image_sizes_by_id(&self) -> ImageSizes {
        self.image_ids.iter().copied().zip(self.image_sizes.iter().copied()).collect()
    }

    fn convert_masks(&self, wanted: Option<&[bool]>) -> Vec<std::result::Result<PreparedMask, Box<str>>> {
        let sizes = self.image_sizes_by_id();
        (0..self.annotations.len())
            .into_par_iter()
            .with_min_len(64)
            .map(|j| {
                if wanted.is_some_and(|w| !w[j]) {
                    return Err(NOT_CONVERTED.into());
                }
                self.with_segmentation(j, &sizes, |segmentation, size| {
                    segmentation.to_rle(size).map(|rle| PreparedMask::new(&rle))
                })
            })
            .collect()
    }

    /// `f` of record `j`'s segmentation as `annToRLE` reads it (a box result
    /// without one: its box's polygon) and its image's size; the error says
    /// what is wrong with the record.
    fn with_segmentation<T>(
        &self,
        j: usize,
        sizes: &ImageSizes,
        f: impl FnOnce(&Segmentation, Option<[i64; 2]>) -> std::result::Result<T, String>,
    ) -> std::result::Result<T, Box<str>> {
        let a = &self.annotations;
        let Some(&size) = sizes.get(&a.image_id[j]) else {
            let image = self.id_strings.describe(a.image_id[j]);
            return Err(format!("has image_id {image}, not an image of the dataset").into());
        };
        let boxed;
        let segmentation = match (&a.segmentation[j], self.box_segmentation) {
            (Some(s), _) => &**s,
            (None, true) => {
                boxed = Segmentation::of_box(&a.bbox[j]);
                &boxed
            }
            (None, false) => return Err("has no 'segmentation'".into()),
        };
        f(segmentation, size).map_err(|e| format!("has a bad 'segmentation': {e}").into())
    }

    /// This dataset with its string ids coded as `reference` codes them (a
    /// string `reference` lacks gets the next code, in this dataset's order);
    /// `None` when the codes already agree (`reference`'s strings come first
    /// here, as in results loaded against it). Datasets parsed apart code
    /// strings apart, and evaluation compares codes.
    pub fn coded_like(&self, reference: &IdStrings) -> Option<CocoDataset> {
        let (mine, theirs) = (self.id_strings.strings(), reference.strings());
        if mine.len() >= theirs.len() && mine[..theirs.len()] == *theirs {
            return None;
        }
        let mut combined = reference.clone();
        let codes: Vec<i64> = mine.iter().map(|s| combined.intern(s)).collect();
        let recode_one = |id: i64| IdStrings::string_index(id).map_or(id, |k| codes[k]);
        let recode = |ids: &[i64]| -> Vec<i64> { ids.iter().map(|&id| recode_one(id)).collect() };
        let mut annotations = self.annotations.clone();
        annotations.image_id = recode(&annotations.image_id);
        annotations.category_id = recode(&annotations.category_id);
        annotations.id = recode(&annotations.id);
        Some(CocoDataset {
            image_ids: recode(&self.image_ids),
            category_ids: recode(&self.category_ids),
            annotations,
            packed: self.packed.iter().map(|p| Packed { id: recode_one(p.id), ..*p }).collect(),
            first_without_score: self.first_without_score,
            id_strings: combined,
            image_sizes: self.image_sizes.clone(),
            box_segmentation: self.box_segmentation,
            source: self.source.clone(),
            masks: self.masks.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::IdPositions;

    #[test]
    fn id_positions_of_compact_and_sparse_ids() {
        for ids in [vec![3, 1, 2, 1], vec![-5, 1 << 40, 7, i64::MIN, i64::MAX], vec![]] {
            let positions = IdPositions::new(&ids);
            for probe in [-6, -5, 0, 1, 2, 3, 4, 7, 1 << 40, i64::MIN, i64::MAX] {
                let last = ids.iter().rposition(|&id| id == probe);
                assert_eq!(positions.get(probe), last, "{ids:?} {probe}");
            }
        }
    }
}
