// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Test machinery for the emulator: an MMIO bus backed by byte arrays with an
//! access log, a register file wrapper that records reads, and a small
//! deterministic random number generator for case construction.

#![allow(dead_code)]

use kvm_nisv::mem::{BusError, MmioBus};
use kvm_nisv::regs::{Reg, RegError, RegisterFile, VcpuRegs};

/// A device region: `[base, base + bytes.len())`.
#[derive(Clone, Debug, Default)]
pub struct TestBus {
    /// (base, contents).
    pub regions: Vec<(u64, Vec<u8>)>,
    /// Every access: (ipa, len, is_write).
    pub log: Vec<(u64, usize, bool)>,
}

impl TestBus {
    /// Add a device region.
    pub fn add(&mut self, base: u64, bytes: Vec<u8>) {
        self.regions.push((base, bytes));
    }

    fn find(&mut self, ipa: u64, len: usize) -> Option<(&mut Vec<u8>, usize)> {
        let end = ipa.checked_add(len as u64)?;
        self.regions.iter_mut().find_map(|(b, r)| {
            (ipa >= *b && end <= *b + r.len() as u64).then(|| (r, (ipa - *b) as usize))
        })
    }

    /// The contents of the region at `base`, mutable.
    pub fn region_mut(&mut self, base: u64) -> &mut Vec<u8> {
        &mut self.regions.iter_mut().find(|(b, _)| *b == base).unwrap().1
    }

    /// The contents of the region at `base`.
    pub fn region(&self, base: u64) -> &[u8] {
        &self.regions.iter().find(|(b, _)| *b == base).unwrap().1
    }
}

impl MmioBus for TestBus {
    fn read(&mut self, ipa: u64, data: &mut [u8]) -> Result<(), BusError> {
        self.log.push((ipa, data.len(), false));
        let len = data.len();
        let (r, off) = self.find(ipa, len).ok_or(BusError::NoDevice { ipa, len })?;
        data.copy_from_slice(&r[off..off + len]);
        Ok(())
    }

    fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), BusError> {
        self.log.push((ipa, data.len(), true));
        let len = data.len();
        let (r, off) = self.find(ipa, len).ok_or(BusError::NoDevice { ipa, len })?;
        r[off..off + len].copy_from_slice(data);
        Ok(())
    }

    fn contains(&self, ipa: u64, len: usize) -> bool {
        let Some(end) = ipa.checked_add(len as u64) else {
            return false;
        };
        self.regions
            .iter()
            .any(|(b, r)| ipa >= *b && end <= *b + r.len() as u64)
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
