//! The pseudo-random numbers the unit tests draw (xorshift64): one
//! generator instead of a copy in each test module.

/// A xorshift64 generator; the state must not be zero.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number (the new state).
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
