use super::*;
use crate::parallel;

#[test]
fn roi_pool_takes_the_max_of_each_bin() {
    let s = Shape::new([1, 1, 4, 4]);
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let rois = [0.0f32, 0.0, 0.0, 3.0, 3.0];
    let (v, a) = roi_pool_with_argmax(&x, s, &rois, [2, 2], 1.0).unwrap();
    assert_eq!(v, vec![5.0, 7.0, 13.0, 15.0]);
    assert_eq!(roi_pool(&x, s, &rois, [2, 2], 1.0).unwrap(), v);
    assert_eq!(a, vec![5, 7, 13, 15]);
    let g = roi_pool_backward(&[1.0f32; 4], &a, &rois, s, [2, 2]).unwrap();
    assert_eq!(g.iter().sum::<f32>(), 4.0);
    assert_eq!(g[15], 1.0);
}

#[test]
fn roi_align_of_a_constant_map_is_constant_and_thread_independent() {
    let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let s = Shape::new([2, 20, 8, 8]);
    let x = vec![2.5f64; s.len()];
    let rois = [0.0, 1.0, 1.0, 6.0, 5.0, 1.0, 0.5, 2.0, 7.5, 7.0, 1.0, 2.0, 2.0, 3.0, 3.5];
    let out = roi_align(&x, s, &rois, [3, 3], 1.0, -1, true).unwrap();
    assert!(out.iter().all(|&v| (v - 2.5).abs() < 1e-12));
    let grad = vec![1.0; out.len()];
    parallel::set_num_threads(1).unwrap();
    let one = parallel::install(|| roi_align_backward(&grad, &rois, s, [3, 3], 1.0, 2, false)).unwrap();
    parallel::set_num_threads(2).unwrap();
    let two = parallel::install(|| roi_align_backward(&grad, &rois, s, [3, 3], 1.0, 2, false)).unwrap();
    assert_eq!(one, two);
    assert!((one.iter().sum::<f64>() - out.len() as f64).abs() < 1e-9);
}

fn is_out_of_memory<T: std::fmt::Debug>(result: Result<T>, function: &str) -> bool {
    matches!(result, Err(FerropsError::OutOfMemory { function: f, .. }) if f == function)
}

#[test]
fn outputs_too_large_to_allocate_are_out_of_memory_errors() {
    let s = Shape::new([1, 1, 4, 4]);
    let x = vec![0.0f32; 16];
    let roi = [0.0f32, 0.0, 0.0, 2.0, 2.0];
    for size in [[1 << 31, 1 << 31], [1 << 32, 1 << 32], [usize::MAX, 2]] {
        assert!(is_out_of_memory(roi_pool(&x, s, &roi, size, 1.0), "roi_pool"));
        assert!(is_out_of_memory(roi_pool_with_argmax(&x, s, &roi, size, 1.0), "roi_pool"));
        assert!(is_out_of_memory(roi_align(&x, s, &roi, size, 1.0, 1, false), "roi_align"));
        assert!(is_out_of_memory(roi_pool_backward(&[], &[], &roi, s, size), "roi_pool_backward"));
        assert!(is_out_of_memory(roi_align_backward(&[], &roi, s, size, 1.0, 1, false), "roi_align_backward"));
    }
    // An input shape given to a backward kernel whose size overflows.
    let huge = Shape::new([1, 1, 1 << 32, 1 << 32]);
    assert!(is_out_of_memory(roi_pool_backward(&[0.0f32], &[0], &roi, huge, [1, 1]), "roi_pool_backward"));
}

#[test]
fn bad_regions_are_errors() {
    let s = Shape::new([1, 1, 4, 4]);
    let x = vec![0.0f32; 16];
    assert!(roi_align(&x, s, &[1.0f32, 0.0, 0.0, 1.0, 1.0], [2, 2], 1.0, -1, false).is_err());
    assert!(roi_align(&x, s, &[0.5f32, 0.0, 0.0, 1.0, 1.0], [2, 2], 1.0, -1, false).is_err());
    assert!(roi_align(&x, s, &[0.0f32, 0.0, 0.0, 1.0], [2, 2], 1.0, -1, false).is_err());
    assert!(roi_pool(&x, s, &[0.0f32, f32::NAN, 0.0, 1.0, 1.0], [2, 2], 1.0).is_err());
    let huge = roi_pool(&x, s, &[0.0f32, -1e30, -1e30, 1e30, 1e30], [2, 2], 1.0).unwrap();
    assert_eq!(huge.len(), 4);
    assert!(roi_align(&x, s, &[0.0f32, 0.0, 0.0, 1.0, 1.0], [2, 2], 0.0, -1, false).is_err());
    assert!(roi_align(&x, s, &[0.0f32, 0.0, 0.0, 1.0, 1.0], [2, 2], 1.0, -2, false).is_err());
    assert!(roi_align(&x, s, &[0.0f32, 0.0, 0.0, 1e30, 1e30], [2, 2], 1.0, -1, false).is_err());
    assert!(roi_align(&x, s, &[0.0f32, 0.0, 0.0, 1.0, 1.0], [2, 2], 1.0, 1 << 40, false).is_err());
}
