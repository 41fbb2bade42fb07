// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Test machinery for the emulator: a register file wrapper that records
//! reads, a small deterministic random number generator for case
//! construction, and a bus wrapper that reports a chosen
//! `max_access_size`. The MMIO bus is the crate's `mem::VecBus`.

#![allow(dead_code)]

use kvm_nisv::mem::{BusError, MmioBus, VecBus};
use kvm_nisv::regs::{Reg, RegError, RegisterFile, VcpuRegs};

/// A `VecBus` whose devices take accesses of up to `max` bytes
/// (`MmioBus::max_access_size`).
#[derive(Debug)]
pub struct WideBus<'a> {
    /// The bus (and its log).
    pub bus: &'a mut VecBus,
    /// What `max_access_size` answers, for every address.
    pub max: usize,
}

impl MmioBus for WideBus<'_> {
    fn read(&mut self, ipa: u64, data: &mut [u8]) -> Result<(), BusError> {
        self.bus.read(ipa, data)
    }
    fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), BusError> {
        self.bus.write(ipa, data)
    }
    fn contains(&self, ipa: u64, len: usize) -> bool {
        self.bus.contains(ipa, len)
    }
    fn max_access_size(&self, _ipa: u64) -> usize {
        self.max
    }
}

/// A register file that records which registers were read and written.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    /// The registers.
    pub rf: RegisterFile,
    /// Reads, in order.
    pub reads: Vec<Reg>,
    /// V registers read.
    pub v_reads: Vec<u8>,
    /// Writes, in order.
    pub writes: Vec<Reg>,
}

impl VcpuRegs for Recording {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        self.reads.push(reg);
        self.rf.get(reg)
    }
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        self.writes.push(reg);
        self.rf.set(reg, value)
    }
    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        self.v_reads.push(n);
        self.rf.get_v(n)
    }
    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        self.rf.set_v(n, value)
    }
}

/// SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    /// One of the items.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}
