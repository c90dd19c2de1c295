//! pycocotools' `_prepare`: each dataset's records grouped by (category, image)
//! in the order pycocotools visits them.

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use crate::detection::coco::{CocoDataset, IdPositions, Packed as Record};

/// The records of each non-empty (category, image) bucket: bucket `keys[k]`
/// holds `records[starts[k]..starts[k + 1]]`, copies of the dataset's records
/// laid out bucket by bucket, so that matching reads them in order. Only the
/// non-empty buckets are listed: there are categories x images buckets (29
/// million for Objects365), nearly all of them empty, and a dense offset
/// table of them cost more memory than the records.
#[derive(Debug, Default)]
pub(super) struct Buckets {
    keys: Vec<u64>,
    starts: Vec<u32>,
    records: Vec<Record>,
}

impl Buckets {
    /// Bucket `b`'s records (none where it is empty).
    pub(super) fn get(&self, b: usize) -> &[Record] {
        match self.keys.binary_search(&(b as u64)) {
            Ok(k) => self.slot(k),
            Err(_) => &[],
        }
    }

    /// The records of the `k`-th non-empty bucket.
    pub(super) fn slot(&self, k: usize) -> &[Record] {
        &self.records[self.starts[k] as usize..self.starts[k + 1] as usize]
    }

    /// The non-empty buckets and their records, in bucket order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &[Record])> {
        self.keys.iter().enumerate().map(|(k, &b)| (b as usize, self.slot(k)))
    }

    /// The non-empty buckets among `range`, ascending, and the slot of the
    /// first of them.
    pub(super) fn keys_in(&self, range: std::ops::Range<usize>) -> (&[u64], usize) {
        let from = self.keys.partition_point(|&b| b < range.start as u64);
        let to = self.keys.partition_point(|&b| b < range.end as u64);
        (&self.keys[from..to], from)
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
    let image_pos = IdPositions::new(img_ids);
    let bucket_of = |r: usize| -> Option<u64> {
        let i = image_pos.get(ann.image_id[r])?;
        let c = *distinct_cats.get(&ann.category_id[r])?;
        Some((c * num_images + i) as u64)
    };
    // (bucket, record) in visiting order.
    let mut placed: Vec<(u64, u32)> = match last_record_of_each_id(&ann.id) {
        // Each record stands for itself, and a bucket holds one image's records:
        // file order is `getAnnIds`' order within every bucket.
        None => (0..ann.len()).filter_map(|j| Some((bucket_of(j)?, j as u32))).collect(),
        // A repeated id stands for the last record carrying it, which may lie in
        // another image: visit in `getAnnIds`' order, images first.
        Some(resolve) => {
            let positions: Vec<Option<usize>> = ann.image_id.iter().map(|&id| image_pos.get(id)).collect();
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
    let num_buckets = distinct_cats.len() * num_images;
    let (mut keys, mut starts, records) = if num_buckets <= 4 * placed.len() + (1 << 16) {
        counting_sort(&placed, num_buckets, &dataset.packed)
    } else {
        // Far more buckets than records (Objects365: 29 million for 1.3
        // million records): a comparison sort, stable, so each bucket keeps
        // its visiting order.
        placed.par_sort_by_key(|&(b, _)| b);
        let mut keys = Vec::new();
        let mut starts = Vec::new();
        for (at, &(b, _)) in placed.iter().enumerate() {
            if keys.last() != Some(&b) {
                keys.push(b);
                starts.push(at as u32);
            }
        }
        starts.push(placed.len() as u32);
        (keys, starts, placed.iter().map(|&(_, r)| dataset.packed[r as usize]).collect())
    };
    keys.shrink_to_fit();
    starts.shrink_to_fit();
    Buckets { keys, starts, records }
}

/// Non-empty buckets, their starts and the records bucket by bucket (each in
/// visiting order), by a counting sort over every bucket: the quickest where
/// buckets are not many more than records. The records are read in visiting
/// order and written bucket by bucket.
fn counting_sort(placed: &[(u64, u32)], num_buckets: usize, packed: &[Record]) -> (Vec<u64>, Vec<u32>, Vec<Record>) {
    let mut offsets = vec![0u32; num_buckets + 1];
    for &(b, _) in placed {
        offsets[b as usize + 1] += 1;
    }
    for b in 0..num_buckets {
        offsets[b + 1] += offsets[b];
    }
    let mut cursor = offsets.clone();
    let records = crate::buffer::filled(placed.len(), |out| {
        for &(b, r) in placed {
            out[cursor[b as usize] as usize] = std::mem::MaybeUninit::new(packed[r as usize]);
            cursor[b as usize] += 1;
        }
    });
    let (mut keys, mut starts) = (Vec::new(), Vec::new());
    for (b, span) in offsets.windows(2).enumerate() {
        if span[1] > span[0] {
            keys.push(b as u64);
            starts.push(span[0]);
        }
    }
    starts.push(placed.len() as u32);
    (keys, starts, records)
}
