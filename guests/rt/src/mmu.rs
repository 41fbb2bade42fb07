// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Stage-1 translation tables for EL1&0 (TTBR0_EL1 only), 4 KiB or 64 KiB
//! granule, built before the MMU is turned on.
//!
//! 4 KiB granule: T0SZ = 25 (39-bit VA), walk starts at level 1 (1 GiB and
//! 2 MiB blocks, 4 KiB pages). 64 KiB granule: T0SZ = 22 (42-bit VA), walk starts
//! at level 2 (512 MiB blocks, 64 KiB pages). Output addresses are below 4 GiB
//! (TCR_EL1.IPS = 32 bits). See the Arm ARM, D8 "The AArch64 Virtual Memory
//! System Architecture" (translation table formats, VMSAv8-64 descriptors).

use crate::Global;

/// The translation granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granule {
    /// 4 KiB pages.
    K4,
    /// 64 KiB pages.
    K64,
}

impl Granule {
    /// The page size in bytes.
    pub const fn page(self) -> u64 {
        match self {
            Granule::K4 => 0x1000,
            Granule::K64 => 0x1_0000,
        }
    }

    const fn bits(self) -> u32 {
        match self {
            Granule::K4 => 9,
            Granule::K64 => 13,
        }
    }

    const fn page_shift(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K64 => 16,
        }
    }

    const fn start_level(self) -> u32 {
        match self {
            Granule::K4 => 1,
            Granule::K64 => 2,
        }
    }

    const fn t0sz(self) -> u64 {
        match self {
            Granule::K4 => 25,
            Granule::K64 => 22,
        }
    }

    const fn shift(self, level: u32) -> u32 {
        self.page_shift() + self.bits() * (3 - level)
    }

    const fn block_ok(self, level: u32) -> bool {
        match self {
            Granule::K4 => level >= 1,
            Granule::K64 => level >= 2,
        }
    }
}

/// Memory attributes of a mapping (MAIR_EL1 index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    /// Normal, inner/outer write-back cacheable, inner shareable (MAIR index 0).
    Normal,
    /// Device-nGnRE, execute-never (MAIR index 1).
    Device,
    /// Normal, inner/outer non-cacheable, execute-never (MAIR index 2): how
    /// drivers map framebuffers and write-combining BARs.
    NormalNc,
}

/// Stage-1 data access permissions of a mapping (descriptor AP\[2:1\], Arm ARM
/// D8 "Data access permissions").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// AP = 0b00: read/write at EL1, no access at EL0 (the default).
    El1,
    /// AP = 0b01: read/write at EL1 and EL0.
    All,
    /// AP = 0b11: read-only at EL1 and EL0.
    ReadOnly,
}

impl Perm {
    const fn ap(self) -> u64 {
        match self {
            Perm::El1 => 0b00,
            Perm::All => 0b01,
            Perm::ReadOnly => 0b11,
        }
    }
}

/// MAIR_EL1: index 0 Normal WB RA/WA (0xff), index 1 Device-nGnRE (0x04),
/// index 2 Normal non-cacheable (0x44).
pub const MAIR: u64 = 0xff | (0x04 << 8) | (0x44 << 16);

const POOL_SIZE: usize = 8 * 0x1_0000;

#[repr(C, align(65536))]
struct Pool([u8; POOL_SIZE]);

static POOL: Global<Pool> = Global::new(Pool([0; POOL_SIZE]));
static NEXT: Global<usize> = Global::new(0);

/// Errors building tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The table pool is exhausted.
    NoTables,
    /// Address or size not page aligned.
    Unaligned,
    /// The range is already mapped differently.
    Overlap,
}

/// A set of translation tables.
#[derive(Debug)]
pub struct Tables {
    gran: Granule,
    root: u64,
}

fn alloc(gran: Granule) -> Result<u64, MapError> {
    let size = gran.page() as usize;
    // SAFETY: single-threaded; NEXT and POOL are only used by this module.
    unsafe {
        let next = &mut *NEXT.get();
        let start = next
            .checked_next_multiple_of(size)
            .ok_or(MapError::NoTables)?;
        let end = start.checked_add(size).ok_or(MapError::NoTables)?;
        if end > POOL_SIZE {
            return Err(MapError::NoTables);
        }
        *next = end;
        let p = (POOL.get() as *mut u8).add(start);
        core::ptr::write_bytes(p, 0, size);
        Ok(p as u64)
    }
}

impl Tables {
    /// Empty tables for `gran`.
    pub fn new(gran: Granule) -> Result<Self, MapError> {
        Ok(Self {
            gran,
            root: alloc(gran)?,
        })
    }

    /// The granule.
    pub fn granule(&self) -> Granule {
        self.gran
    }

    /// Maps `size` bytes at `va` to `pa` with `attr`, using blocks where aligned.
    pub fn map(&mut self, va: u64, pa: u64, size: u64, attr: Attr) -> Result<(), MapError> {
        self.map_perm(va, pa, size, attr, Perm::El1)
    }

    /// Maps like [`Tables::map`] with the access permissions `perm`.
    pub fn map_perm(
        &mut self,
        va: u64,
        pa: u64,
        size: u64,
        attr: Attr,
        perm: Perm,
    ) -> Result<(), MapError> {
        let pg = self.gran.page();
        if !va.is_multiple_of(pg) || !pa.is_multiple_of(pg) || !size.is_multiple_of(pg) {
            return Err(MapError::Unaligned);
        }
        let mut off = 0;
        while off < size {
            let step = self.map_one(va + off, pa + off, size - off, attr, perm)?;
            off += step;
        }
        Ok(())
    }

    fn map_one(
        &mut self,
        va: u64,
        pa: u64,
        left: u64,
        attr: Attr,
        perm: Perm,
    ) -> Result<u64, MapError> {
        let g = self.gran;
        let mut table = self.root;
        let mut level = g.start_level();
        loop {
            let shift = g.shift(level);
            let idx = (va >> shift) & ((1 << g.bits()) - 1);
            let entry = (table + idx * 8) as *mut u64;
            let span = 1u64 << shift;
            let leaf_ok = level == 3
                || (g.block_ok(level)
                    && va.is_multiple_of(span)
                    && pa.is_multiple_of(span)
                    && left >= span);
            // SAFETY: `table` is a table from the pool and idx < entries.
            let old = unsafe { entry.read_volatile() };
            if leaf_ok {
                let lo = match attr {
                    Attr::Normal => 0b11 << 8, // AttrIndx 0, inner shareable
                    Attr::Device => (1 << 2) | (1 << 53) | (1 << 54),
                    Attr::NormalNc => (2 << 2) | (0b10 << 8) | (1 << 53) | (1 << 54),
                } | (1 << 10)
                    | (perm.ap() << 6);
                let kind = if level == 3 { 0b11 } else { 0b01 };
                let d = pa | lo | kind;
                if old != 0 && old != d {
                    return Err(MapError::Overlap);
                }
                // SAFETY: as above.
                unsafe { entry.write_volatile(d) };
                return Ok(span);
            }
            let next = if old & 0b11 == 0b11 {
                old & 0x0000_ffff_ffff_f000 & !(g.page() - 1)
            } else if old == 0 {
                let t = alloc(g)?;
                // SAFETY: as above.
                unsafe { entry.write_volatile(t | 0b11) };
                t
            } else {
                return Err(MapError::Overlap);
            };
            table = next;
            level += 1;
        }
    }

    /// Loads MAIR/TCR/TTBR0, invalidates the TLB and turns the MMU and caches on.
    pub fn enable(&self) {
        let tg0 = match self.gran {
            Granule::K4 => 0b00,
            Granule::K64 => 0b01,
        };
        let tcr =
            self.gran.t0sz() | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (tg0 << 14) | (1 << 23);
        // SAFETY: the tables identity-map this program's code, data and stack
        // (the callers map RAM), so execution continues at the same addresses.
        unsafe {
            core::arch::asm!(
                "msr mair_el1, {mair}",
                "msr tcr_el1, {tcr}",
                "msr ttbr0_el1, {ttbr}",
                "dsb ish",
                "isb",
                "tlbi vmalle1",
                "dsb ish",
                "isb",
                mair = in(reg) MAIR, tcr = in(reg) tcr, ttbr = in(reg) self.root,
                options(nostack)
            );
        }
        let sctlr = crate::run::canonical_sctlr() | 1 | (1 << 2) | (1 << 12);
        crate::run::set_sctlr(sctlr);
    }
}

/// RAM mapped by [`standard`]: 1 GiB from 0x8000_0000 (beyond the guest's RAM it
/// is never accessed).
pub const RAM_MAP: (u64, u64) = (0x8000_0000, 0x4000_0000);

/// Identity maps RAM as Normal and the GIC, UART and test-device control
/// registers (0x0800_0000..0x0A20_0000) as Device; the test-device data window
/// (the 2 MiB around 0x7FF0_0000) with `window`.
pub fn standard(gran: Granule, window: Attr) -> Result<Tables, MapError> {
    let mut t = Tables::new(gran)?;
    t.map(0x0800_0000, 0x0800_0000, 0x0220_0000, Attr::Device)?;
    t.map(0x7FE0_0000, 0x7FE0_0000, 0x20_0000, window)?;
    t.map(RAM_MAP.0, RAM_MAP.0, RAM_MAP.1, Attr::Normal)?;
    Ok(t)
}
