//! pycocotools' `_prepare`: each dataset's records grouped by (category, image)
//! in the order pycocotools visits them.

use rustc_hash::FxHashMap as HashMap;

use crate::detection::coco::{CocoDataset, Packed as Record};

/// The records of each (category, image) bucket, CSR: bucket `b` holds
/// `records[offsets[b]..offsets[b + 1]]`, copies of the dataset's records laid
/// out bucket by bucket, so that matching reads them in order.
#[derive(Debug, Default)]
pub(super) struct Buckets {
    offsets: Vec<u32>,
    records: Vec<Record>,
}

impl Buckets {
    /// How many buckets.
    pub(super) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub(super) fn get(&self, b: usize) -> &[Record] {
        &self.records[self.offsets[b] as usize..self.offsets[b + 1] as usize]
    }

    /// Every bucketed record (what an iouType checks before matching).
    pub(super) fn records(&self) -> &[Record] {
        &self.records
    }

    pub(super) fn records_mut(&mut self) -> &mut [Record] {
        &mut self.records
    }
}

/// pycocotools' `loadAnns(getAnnIds(...))` resolves each annotation through its
/// id, so a repeated id stands for the last record carrying it. `None` when ids
/// are unique (always for `loadRes` results, whose ids count up).
fn last_record_of_each_id(ids: &[i64]) -> Option<Vec<u32>> {
    if ids.windows(2).all(|w| w[0] < w[1]) {
        return None;
    }
    let mut last: HashMap<i64, u32> = HashMap::with_capacity_and_hasher(ids.len(), Default::default());
    for (j, &id) in ids.iter().enumerate() {
        last.insert(id, j as u32);
    }
    if last.len() == ids.len() {
        return None;
    }
    Some(ids.iter().map(|id| last[id]).collect())
}

/// pycocotools' `_prepare`: the records of each (category, image) bucket in the
/// order `getAnnIds` lists them (images in `img_ids` order, file order within
/// an image). Buckets are indexed `c * num_images + i`, `c` the position of the
/// category among `distinct_cats`.
pub(super) fn buckets(
    dataset: &CocoDataset,
    img_ids: &[i64],
    distinct_cats: &HashMap<i64, usize>,
    filter_cats: bool,
) -> Buckets {
    let ann = &dataset.annotations;
    let num_images = img_ids.len();
    let image_pos: HashMap<i64, usize> = img_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let bucket_of = |r: usize| -> Option<u32> {
        let i = *image_pos.get(&ann.image_id[r])?;
        let c = *distinct_cats.get(&ann.category_id[r])?;
        Some((c * num_images + i) as u32)
    };
    // (bucket, record) in visiting order.
    let placed: Vec<(u32, u32)> = match last_record_of_each_id(&ann.id) {
        // Each record stands for itself, and a bucket holds one image's records:
        // file order is `getAnnIds`' order within every bucket.
        None => (0..ann.len()).filter_map(|j| Some((bucket_of(j)?, j as u32))).collect(),
        // A repeated id stands for the last record carrying it, which may lie in
        // another image: visit in `getAnnIds`' order, images first.
        Some(resolve) => {
            let positions: Vec<Option<usize>> = ann.image_id.iter().map(|id| image_pos.get(id).copied()).collect();
            let mut starts = vec![0usize; num_images + 1];
            for &i in positions.iter().flatten() {
                starts[i + 1] += 1;
            }
            for i in 0..num_images {
                starts[i + 1] += starts[i];
            }
            let mut by_image = vec![0u32; starts[num_images]];
            for (j, position) in positions.iter().enumerate() {
                if let Some(i) = *position {
                    by_image[starts[i]] = j as u32;
                    starts[i] += 1;
                }
            }
            by_image
                .iter()
                .filter(|&&j| !filter_cats || distinct_cats.contains_key(&ann.category_id[j as usize]))
                .filter_map(|&j| {
                    let r = resolve[j as usize];
                    Some((bucket_of(r as usize)?, r))
                })
                .collect()
        }
    };
    // Counting sort by bucket keeps each bucket's visiting order; the records
    // are read in that order and written bucket by bucket.
    let num_buckets = distinct_cats.len() * num_images;
    let mut offsets = vec![0u32; num_buckets + 1];
    for &(b, _) in &placed {
        offsets[b as usize + 1] += 1;
    }
    for b in 0..num_buckets {
        offsets[b + 1] += offsets[b];
    }
    let mut cursor = offsets.clone();
    let records = crate::buffer::filled(placed.len(), |out| {
        for &(b, r) in &placed {
            out[cursor[b as usize] as usize] = std::mem::MaybeUninit::new(dataset.packed[r as usize]);
            cursor[b as usize] += 1;
        }
    });
    Buckets { offsets, records }
}
