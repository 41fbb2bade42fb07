// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A small translation-table builder for tests: it writes VMSAv8-64
//! descriptors into a `VecRam`, independently of the walker (the descriptor
//! formats are written out here from the Arm ARM, D8.3).

#![allow(dead_code)]

use kvm_nisv::mem::{GuestRam, VecRam};

/// AF, bit 10.
pub const AF: u64 = 1 << 10;
/// AP[1] (EL0 access), bit 6.
pub const AP_EL0: u64 = 1 << 6;
/// AP[2] (read-only), bit 7.
pub const AP_RO: u64 = 1 << 7;
/// PXN, bit 53.
pub const PXN: u64 = 1 << 53;
/// UXN, bit 54.
pub const UXN: u64 = 1 << 54;
/// DBM, bit 51.
pub const DBM: u64 = 1 << 51;

/// AttrIndx field.
pub const fn attr(idx: u64) -> u64 {
    (idx & 7) << 2
}

/// A table builder for one TTBR.
pub struct Pt {
    /// The RAM holding tables (and whatever else the test adds).
    pub ram: VecRam,
    /// log2 of the granule.
    pub g: u32,
    /// 64 - TxSZ.
    pub inputsize: u32,
    /// Start level.
    pub start: i8,
    /// Root table address.
    pub root: u64,
    next: u64,
    end: u64,
    /// Descriptors big-endian.
    pub be: bool,
}

impl Pt {
    /// Tables are allocated from `[area, area + len)` (added to the RAM).
    /// `start` is given by the test (from the Arm ARM's tables) rather than
    /// computed.
    pub fn new(g: u32, txsz: u32, start: i8, area: u64, len: u64) -> Pt {
        let mut ram = VecRam::new();
        assert!(ram.add_region(area, len as usize));
        let mut pt = Pt {
            ram,
            g,
            inputsize: 64 - txsz,
            start,
            root: 0,
            next: area,
            end: area + len,
            be: false,
        };
        pt.root = pt.alloc();
        pt
    }

    /// Allocate a zeroed, granule-aligned table.
    pub fn alloc(&mut self) -> u64 {
        let size = 1u64 << self.g;
        let a = (self.next + size - 1) & !(size - 1);
        assert!(a + size <= self.end, "table area exhausted");
        self.next = a + size;
        a
    }

    /// Read a descriptor.
    pub fn rd(&self, at: u64) -> u64 {
        let mut b = [0u8; 8];
        self.ram.read(at, &mut b).unwrap();
        if self.be {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        }
    }

    /// Write a descriptor.
    pub fn wr(&self, at: u64, d: u64) {
        let b = if self.be {
            d.to_be_bytes()
        } else {
            d.to_le_bytes()
        };
        self.ram.write(at, &b).unwrap();
    }

    /// Lowest VA bit that indexes `level`.
    pub fn lsb(&self, level: i8) -> u32 {
        self.g + (3 - level as i32) as u32 * (self.g - 3)
    }

    /// Address of the descriptor for `va` in the table at `table` of `level`.
    pub fn slot(&self, table: u64, level: i8, va: u64) -> u64 {
        let lsb = self.lsb(level);
        let top = if level == self.start {
            self.inputsize
        } else {
            lsb + self.g - 3
        };
        let idx = (va >> lsb) & ((1u64 << (top - lsb)) - 1);
        table + idx * 8
    }

    /// Walk (creating tables) to the table of `level` covering `va`; returns it.
    pub fn table_for(&mut self, va: u64, level: i8, table_bits: u64) -> u64 {
        let mut t = self.root;
        let mut l = self.start;
        while l < level {
            let s = self.slot(t, l, va);
            let d = self.rd(s);
            t = if d & 3 == 3 {
                d & 0x0000_ffff_ffff_f000 & !((1u64 << self.g) - 1)
            } else {
                let n = self.alloc();
                self.wr(s, n | 3 | table_bits);
                n
            };
            l += 1;
        }
        t
    }

    /// Map `va` to `oa` with a leaf at `level` (a page at level 3, else a
    /// block); `attrs` are ORed into the leaf (include AF yourself).
    pub fn map(&mut self, va: u64, oa: u64, level: i8, attrs: u64) -> u64 {
        let t = self.table_for(va, level, 0);
        let s = self.slot(t, level, va);
        let ty = if level == 3 { 3 } else { 1 };
        self.wr(s, oa | ty | attrs);
        s
    }
}
