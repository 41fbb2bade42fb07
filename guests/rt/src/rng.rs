// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A small deterministic pseudo-random generator (xorshift64* seeded through
//! splitmix64), so a seed reproduces a run exactly.

/// The generator state.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n == 0` gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A value in `lo..=hi` as i64 (`lo <= hi`).
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.wrapping_sub(lo) as u64;
        lo.wrapping_add(self.below(span.wrapping_add(1)) as i64)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// A register-like value: fully random, or one of the interesting shapes
    /// (small, negative, sign boundaries).
    pub fn reg_value(&mut self) -> u64 {
        match self.below(8) {
            0 => self.below(256),
            1 => (self.below(256) as i64).wrapping_neg() as u64,
            2 => 0x8000_0000_0000_0000 ^ self.below(4),
            3 => 0x0000_0000_8000_0000 ^ self.below(4) ^ (self.next_u64() << 32),
            _ => self.next_u64(),
        }
    }
}
