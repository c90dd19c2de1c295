//! The label types the kernel reads directly ([`Label`], [`Labels`]) and the
//! per-pixel codes made from them: one pass maps each target to a row code, one
//! adds each prediction's column code, both plain selects in the label's own
//! width (they vectorise).

/// An integer label type the kernel reads directly.
pub trait Label: Copy + PartialOrd + Send + Sync + std::fmt::Display + 'static {
    const ZERO: Self;
    const MAX: Self;
    const NAME: &'static str;
    /// `v` in this type, when it is representable.
    fn from_i64(v: i64) -> Option<Self>;
    /// `v` in this type, when it is representable.
    fn from_u64(v: u64) -> Option<Self>;
    /// The value as a u32/u64 (an `as` cast: exact for the valid labels in
    /// `[0, C)`, meaningless and unused for the others).
    fn as_u32(self) -> u32;
    fn as_u64(self) -> u64;
}

macro_rules! impl_label {
    ($($t:ty),*) => {$(
        impl Label for $t {
            const ZERO: Self = 0;
            const MAX: Self = <$t>::MAX;
            const NAME: &'static str = stringify!($t);
            #[inline(always)]
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            #[inline(always)]
            fn as_u32(self) -> u32 {
                self as u32
            }
            #[inline(always)]
            fn as_u64(self) -> u64 {
                self as u64
            }
        }
    )*};
}

impl_label!(u8, i8, u16, i16, u32, i32, u64, i64);

/// A flat array of class labels in one of the supported integer types.
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    U8(&'a [u8]),
    I8(&'a [i8]),
    U16(&'a [u16]),
    I16(&'a [i16]),
    U32(&'a [u32]),
    I32(&'a [i32]),
    U64(&'a [u64]),
    I64(&'a [i64]),
}

/// Runs `$body` with `$s` bound to the typed slice inside `$labels`.
macro_rules! with_slice {
    ($labels:expr, $s:ident => $body:expr) => {
        match $labels {
            Labels::U8($s) => $body,
            Labels::I8($s) => $body,
            Labels::U16($s) => $body,
            Labels::I16($s) => $body,
            Labels::U32($s) => $body,
            Labels::I32($s) => $body,
            Labels::U64($s) => $body,
            Labels::I64($s) => $body,
        }
    };
}
pub(super) use with_slice;

impl Labels<'_> {
    pub fn len(&self) -> usize {
        with_slice!(self, s => s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype_name(&self) -> &'static str {
        with_slice!(self, s => element_name(s))
    }

    /// Label `i` widened exactly (u64 and i64 both fit in i128).
    pub(super) fn value(&self, i: usize) -> i128 {
        with_slice!(self, s => s[i].as_u64() as i128 - if signed_negative(s[i]) { 1i128 << 64 } else { 0 })
    }
}

fn element_name<T: Label>(_: &[T]) -> &'static str {
    T::NAME
}

/// Whether `v` is below zero (for the exact widening of signed labels).
fn signed_negative<T: Label>(v: T) -> bool {
    v < T::ZERO
}

/// What "a valid label" and "the ignored label" are, in the label's own type, so
/// that the per-pixel tests are comparisons of that width (they vectorise).
#[derive(Clone, Copy)]
pub(super) struct Bounds<T> {
    /// The largest valid label, `min(C - 1, T::MAX)`.
    max_valid: T,
    /// `ignore_index` when this type can hold it (otherwise no pixel matches).
    pub(super) ignore: Option<T>,
}

impl<T: Label> Bounds<T> {
    pub(super) fn new(num_classes: usize, ignore_index: Option<i64>) -> Self {
        Bounds {
            max_valid: T::from_u64(num_classes as u64 - 1).unwrap_or(T::MAX),
            ignore: ignore_index.and_then(T::from_i64),
        }
    }

    #[inline(always)]
    pub(super) fn is_valid(&self, v: T) -> bool {
        v >= T::ZERO && v <= self.max_valid
    }
}

/// Target row codes: `label << shift` for valid labels (a shift, not a multiply:
/// rows are a power of two wide), `ignored` / `invalid` otherwise.
#[inline(always)]
pub(super) fn row_codes<T: Label>(target: &[T], codes: &mut [u32], b: Bounds<T>, shift: u32, ignored: u32, invalid: u32) {
    match b.ignore {
        Some(ignore) => {
            for (code, &t) in codes.iter_mut().zip(target) {
                let valid = if b.is_valid(t) { t.as_u32().wrapping_shl(shift) } else { invalid };
                *code = if t == ignore { ignored } else { valid };
            }
        }
        None => {
            for (code, &t) in codes.iter_mut().zip(target) {
                *code = if b.is_valid(t) { t.as_u32().wrapping_shl(shift) } else { invalid };
            }
        }
    }
}

/// Adds each prediction's column code (the label, or `invalid`) to `codes`.
#[inline(always)]
pub(super) fn add_column_codes<P: Label>(pred: &[P], codes: &mut [u32], b: Bounds<P>, invalid: u32) {
    for (code, &p) in codes.iter_mut().zip(pred) {
        *code = code.wrapping_add(if b.is_valid(p) { p.as_u32() } else { invalid });
    }
}
