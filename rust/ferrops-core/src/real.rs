//! The floating-point element types kernels are generic over (f32 and f64).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + Display
    + PartialOrd
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    const NAME: &'static str;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn is_finite(self) -> bool;
    fn sqrt(self) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn atan(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    /// Total order (IEEE totalOrder), for sorting scores deterministically.
    fn total_cmp(&self, other: &Self) -> std::cmp::Ordering;
    /// An unsigned key whose integer order is the IEEE total order of the values,
    /// so sorts can compare plain integers.
    fn total_order_key(self) -> u64;
    /// The largest value of this type that is `<= v`: comparing `x > floor_from_f64(t)`
    /// in this type is exactly `x as f64 > t`, without a widening per lane.
    fn floor_from_f64(v: f64) -> Self;

    /// `max` that compiles to one vector instruction (operands are known not NaN).
    #[inline(always)]
    fn max_fast(self, other: Self) -> Self {
        if self > other {
            self
        } else {
            other
        }
    }

    /// `min` that compiles to one vector instruction (operands are known not NaN).
    #[inline(always)]
    fn min_fast(self, other: Self) -> Self {
        if self < other {
            self
        } else {
            other
        }
    }
}

macro_rules! impl_real {
    ($t:ty, $name:literal, $bits:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = <$t>::INFINITY;
            const NAME: &'static str = $name;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn atan(self) -> Self {
                <$t>::atan(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn total_order_key(self) -> u64 {
                let bits = self.to_bits();
                let sign = bits >> (<$bits>::BITS - 1);
                // Negative values: flip all bits; positive: set the sign bit.
                (if sign == 1 { !bits } else { bits | (1 << (<$bits>::BITS - 1)) }) as u64
            }
            #[inline]
            fn floor_from_f64(v: f64) -> Self {
                let t = v as $t;
                if (t as f64) > v {
                    t.next_down()
                } else {
                    t
                }
            }
            #[inline(always)]
            fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
                <$t>::total_cmp(self, other)
            }
        }
    };
}

impl_real!(f32, "float32", u32);
impl_real!(f64, "float64", u64);

#[cfg(test)]
mod tests {
    use super::Real;

    #[test]
    fn total_order_key_sorts_like_total_cmp() {
        let mut values = vec![-f32::INFINITY, -2.5, -0.0, 0.0, 1e-30, 0.5, 3.0, f32::INFINITY, -1e-30];
        let mut by_key = values.clone();
        values.sort_by(|a, b| a.total_cmp(b));
        by_key.sort_by_key(|v| v.total_order_key());
        assert_eq!(values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), by_key.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert!((-1.0f64).total_order_key() < 0.25f64.total_order_key());
    }
}
