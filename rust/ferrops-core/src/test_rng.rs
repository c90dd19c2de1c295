//! The one pseudo-random generator of the unit tests: Knuth's MMIX linear
//! congruential generator, so test data is reproducible from a seed with no
//! dependency. Not for anything but test data.

pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed)
    }

    /// The next state. Its high bits are the well-mixed ones: take `>> 33` or more.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0
    }

    /// Uniform in `[0, 1)`, from the top 31 bits.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 33) as f32 / (1u64 << 31) as f32
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[-1, 1)`.
    pub fn signed_f64(&mut self) -> f64 {
        self.unit_f64() * 2.0 - 1.0
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant for test data).
    pub fn below(&mut self, n: u64) -> u64 {
        (self.next_u64() >> 33) % n
    }
}
