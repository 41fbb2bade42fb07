// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A generator of AArch64 load/store instructions with random registers,
//! offsets, sizes and indexing, together with the register state they start
//! from.
//!
//! Encodings follow the Arm ARM (DDI 0487), section C4.1.66 "Loads and Stores"
//! and the instruction pages in C6/C7 (LDR/STR immediate, register and unscaled,
//! LDP/STP/LDPSW/LDNP/STNP, LDXR/STXR/LDXP/STXP/LDAR/STLR, `LD<op>`/SWP, CAS/CASP,
//! LD1-LD4/ST1-ST4 multiple and single structure, LD1R-LD4R, DC ZVA).
//!
//! Every case avoids the CONSTRAINED UNPREDICTABLE register combinations the
//! pages list (writeback with Rt == Rn, load pair with Rt == Rt2, store
//! exclusive with Rs == Rt/Rt2/Rn, CASP with odd registers...) and any use of the
//! base register as data (a store of the base, an index equal to the base, an
//! atomic operand equal to the base), whose value differs between the RAM and
//! the device run by construction. A load may overwrite the base when there is
//! no writeback; the case says so ([`Case::base_loaded`]).

use crate::rng::Rng;

/// The instruction classes the generator covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// LDR/STR/LDRS* of W/X, unsigned scaled immediate offset.
    GprImm,
    /// LDUR/STUR/LDURS* (unscaled signed 9-bit offset).
    GprUnscaled,
    /// LDR/STR post-index.
    GprPost,
    /// LDR/STR pre-index.
    GprPre,
    /// LDR/STR register offset (UXTW/LSL/SXTW/SXTX, optional shift).
    GprReg,
    /// LDAR/STLR.
    AcqRel,
    /// LDR/STR of B/H/S/D/Q, unsigned immediate offset.
    FpImm,
    /// LDUR/STUR and pre/post-index of B/H/S/D/Q.
    FpIndexed,
    /// LDR/STR of B/H/S/D/Q, register offset.
    FpReg,
    /// LDP/STP/LDPSW of W/X: offset, pre- and post-index.
    Pair,
    /// LDNP/STNP of W/X/S/D/Q.
    PairNt,
    /// LDP/STP of S/D/Q: offset, pre- and post-index.
    FpPair,
    /// LD1-LD4/ST1-ST4 multiple structures, no offset or post-index.
    Multiple,
    /// LD1-LD4/ST1-ST4 single structure (one lane), no offset or post-index.
    Single,
    /// LD1R-LD4R, no offset or post-index.
    Replicate,
    /// LDXR/LDAXR, alone or followed by STXR/STLXR to the same address.
    Exclusive,
    /// LDXP/LDAXP, alone or followed by STXP/STLXP.
    ExclusivePair,
    /// LDADD/LDCLR/LDEOR/LDSET/LDSMAX/LDSMIN/LDUMAX/LDUMIN/SWP (+A/L).
    Atomic,
    /// CAS (+A/L).
    Cas,
    /// CASP (+A/L).
    Casp,
    /// DC ZVA.
    DcZva,
}

/// Every class, in report order.
pub const ALL: [Class; 21] = [
    Class::GprImm,
    Class::GprUnscaled,
    Class::GprPost,
    Class::GprPre,
    Class::GprReg,
    Class::AcqRel,
    Class::FpImm,
    Class::FpIndexed,
    Class::FpReg,
    Class::Pair,
    Class::PairNt,
    Class::FpPair,
    Class::Multiple,
    Class::Single,
    Class::Replicate,
    Class::Exclusive,
    Class::ExclusivePair,
    Class::Atomic,
    Class::Cas,
    Class::Casp,
    Class::DcZva,
];

impl Class {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Class::GprImm => "ldr-str-imm",
            Class::GprUnscaled => "ldur-stur",
            Class::GprPost => "ldr-str-post",
            Class::GprPre => "ldr-str-pre",
            Class::GprReg => "ldr-str-reg",
            Class::AcqRel => "ldar-stlr",
            Class::FpImm => "fp-ldr-str-imm",
            Class::FpIndexed => "fp-ldur-pre-post",
            Class::FpReg => "fp-ldr-str-reg",
            Class::Pair => "ldp-stp-ldpsw",
            Class::PairNt => "ldnp-stnp",
            Class::FpPair => "fp-ldp-stp",
            Class::Multiple => "ld1-4-st1-4-multiple",
            Class::Single => "ld1-4-st1-4-single",
            Class::Replicate => "ld1r-ld4r",
            Class::Exclusive => "ldxr-stxr",
            Class::ExclusivePair => "ldxp-stxp",
            Class::Atomic => "lse-ldop-swp",
            Class::Cas => "cas",
            Class::Casp => "casp",
            Class::DcZva => "dc-zva",
        }
    }

    /// The position of the class in [`ALL`].
    pub fn index(self) -> usize {
        ALL.iter().position(|&c| c == self).unwrap_or(0)
    }

    /// True for the classes that need FEAT_LSE.
    pub fn needs_lse(self) -> bool {
        matches!(self, Class::Atomic | Class::Cas | Class::Casp)
    }
}

/// A set of classes from a comma-separated list of [`Class::name`]s (bit i =
/// `ALL[i]`); `None` if a name is unknown.
pub fn class_mask(list: &str) -> Option<u32> {
    let mut m = 0u32;
    for name in list.split(',').filter(|n| !n.is_empty()) {
        let c = ALL.iter().find(|c| c.name() == name)?;
        m |= 1 << c.index();
    }
    Some(m)
}

/// What the generator may use.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// FEAT_LSE (atomics, CAS, CASP).
    pub lse: bool,
    /// The DC ZVA block size, if DC ZVA is permitted.
    pub zva: Option<u64>,
    /// FEAT_LSE2: exclusives, atomics, CAS and acquire/release accesses may be
    /// placed unaligned inside one aligned 16-byte quantity on Normal memory.
    pub lse2: bool,
    /// The alignment the CPU itself needs, on Device memory, for LD1/ST1
    /// (multiple structures) with one register per structure: 1 when it follows
    /// the Arm ARM (each element aligned to its size suffices), 8 on a CPU that
    /// faults element-aligned ones below 8 bytes (QEMU 10, see
    /// [`crate::devalign`]). Such accesses never reach the emulator there, so
    /// the engine places them 8-byte aligned on Device memory.
    pub ld1_device_align: u64,
}

/// A register whose value is set from memory once the address is known (CAS
/// compare values that should match).
#[derive(Clone, Copy, Debug, Default)]
pub struct Fixup {
    /// General register number.
    pub reg: u8,
    /// Bytes to read (4 or 8, or 1/2 for CASB/CASH).
    pub size: u8,
    /// Byte offset from the access address.
    pub off: u8,
}

/// One generated test case.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// The class.
    pub class: Class,
    /// The instruction words (one, or two for exclusive load + store).
    pub words: [u32; 2],
    /// How many of `words` are used.
    pub nwords: usize,
    /// The base register: 0..=30, or 31 for SP.
    pub rn: u8,
    /// The access address is `base + addr_off` (wrapping).
    pub addr_off: u64,
    /// Bytes accessed from the address.
    pub len: u64,
    /// Alignment the address needs whatever the memory type (exclusives,
    /// atomics, DC ZVA block); 1 when none.
    pub align: u64,
    /// Element size: the alignment each access needs in Device memory.
    pub elem: u64,
    /// LD1/ST1 (multiple structures) with one register per structure (see
    /// [`Features::ld1_device_align`]).
    pub ld1_multiple: bool,
    /// Initial x0..x30 (the base register's value is set later).
    pub x: [u64; 31],
    /// Initial SP_EL0 (replaced by the base when `rn == 31`).
    pub sp: u64,
    /// Initial q0..q31.
    pub v: [u128; 32],
    /// Initial NZCV (bits 31:28).
    pub nzcv: u64,
    /// A load without writeback overwrites the base register.
    pub base_loaded: bool,
    /// Registers to set from memory at the access address.
    pub fixups: [Fixup; 2],
    /// How many of `fixups` are used.
    pub nfix: usize,
}

struct Regs(u32);

impl Regs {
    fn pick(&mut self, rng: &mut Rng, allow_zr: bool) -> u8 {
        let n = if allow_zr { 32 } else { 31 };
        for _ in 0..64 {
            let r = rng.below(n) as u8;
            if r == 31 || self.0 & (1 << r) == 0 {
                if r != 31 {
                    self.0 |= 1 << r;
                }
                return r;
            }
        }
        // Fall back to a linear scan (always succeeds: at most a few are used).
        for r in 0..31u8 {
            if self.0 & (1 << r) == 0 {
                self.0 |= 1 << r;
                return r;
            }
        }
        31
    }

    fn pick_even(&mut self, rng: &mut Rng) -> u8 {
        for _ in 0..64 {
            let r = (rng.below(15) * 2) as u8;
            if self.0 & (3 << r) == 0 {
                self.0 |= 3 << r;
                return r;
            }
        }
        for r in (0..29u8).step_by(2) {
            if self.0 & (3 << r) == 0 {
                self.0 |= 3 << r;
                return r;
            }
        }
        0
    }
}

fn sext(v: u64, bits: u32) -> i64 {
    let s = 64 - bits;
    ((v << s) as i64) >> s
}

/// Index register value and the offset it produces for `option`/`shift`.
fn index_value(rng: &mut Rng, option: u32, shift: u32) -> (u64, u64) {
    let hi = rng.next_u64() << 32;
    let (v, ext) = match option {
        0b010 => {
            let lo = rng.below(2048);
            (hi | lo, lo)
        }
        0b110 => {
            let lo = rng.range_i64(-1024, 1023) as u64 & 0xffff_ffff;
            (hi | lo, sext(lo, 32) as u64)
        }
        _ => {
            let v = rng.range_i64(-1024, 1023) as u64;
            (v, v)
        }
    };
    (v, ext.wrapping_shl(shift))
}

const OPTIONS: [u32; 4] = [0b010, 0b011, 0b110, 0b111];

impl Case {
    fn blank(class: Class, rng: &mut Rng) -> Self {
        let mut x = [0u64; 31];
        for r in x.iter_mut() {
            *r = rng.reg_value();
        }
        let mut v = [0u128; 32];
        for r in v.iter_mut() {
            *r = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
        }
        Self {
            class,
            words: [0; 2],
            nwords: 1,
            rn: 0,
            addr_off: 0,
            len: 1,
            align: 1,
            elem: 1,
            ld1_multiple: false,
            x,
            sp: rng.next_u64(),
            v,
            nzcv: rng.below(16) << 28,
            base_loaded: false,
            fixups: [Fixup::default(); 2],
            nfix: 0,
        }
    }

    fn set_x(&mut self, r: u8, v: u64) {
        if let Some(slot) = self.x.get_mut(usize::from(r)) {
            *slot = v;
        }
    }
}

/// Picks the base register: SP one time in eight when `sp_ok`.
fn pick_base(rng: &mut Rng, regs: &mut Regs, sp_ok: bool) -> u8 {
    if sp_ok && rng.chance(1, 8) {
        31
    } else {
        regs.pick(rng, false)
    }
}

/// Generates a case of `class`.
pub fn generate(rng: &mut Rng, class: Class, f: &Features) -> Case {
    let mut c = Case::blank(class, rng);
    let mut regs = Regs(0);
    match class {
        Class::GprImm | Class::GprUnscaled | Class::GprPost | Class::GprPre | Class::GprReg => {
            gpr_single(rng, &mut c, &mut regs)
        }
        Class::FpImm | Class::FpIndexed | Class::FpReg => fp_single(rng, &mut c, &mut regs),
        Class::AcqRel => {
            let size = rng.below(4) as u32;
            let rn = pick_base(rng, &mut regs, true);
            let load = rng.chance(1, 2);
            let rt = regs.pick(rng, true);
            c.words[0] = (size << 30)
                | (0b001000 << 24)
                | (1 << 23)
                | (u32::from(load) << 22)
                | (31 << 16)
                | (1 << 15)
                | (31 << 10)
                | (u32::from(rn) << 5)
                | u32::from(rt);
            c.rn = rn;
            c.len = 1 << size;
            c.align = c.len;
            c.elem = c.len;
        }
        Class::Pair | Class::PairNt | Class::FpPair => pair(rng, &mut c, &mut regs),
        Class::Multiple => multiple(rng, &mut c, &mut regs),
        Class::Single | Class::Replicate => single(rng, &mut c, &mut regs),
        Class::Exclusive => exclusive(rng, &mut c, &mut regs),
        Class::ExclusivePair => exclusive_pair(rng, &mut c, &mut regs),
        Class::Atomic => {
            let size = rng.below(4) as u32;
            let op = rng.below(9) as u32;
            let (o3, opc) = if op == 8 { (1, 0) } else { (0, op) };
            let rn = pick_base(rng, &mut regs, true);
            let rs = regs.pick(rng, true);
            let rt = regs.pick(rng, true);
            let a = rng.below(2) as u32;
            let r = rng.below(2) as u32;
            c.words[0] = (size << 30)
                | (0b111000 << 24)
                | (a << 23)
                | (r << 22)
                | (1 << 21)
                | (u32::from(rs) << 16)
                | (o3 << 15)
                | (opc << 12)
                | (u32::from(rn) << 5)
                | u32::from(rt);
            c.rn = rn;
            c.len = 1 << size;
            c.align = c.len;
            c.elem = c.len;
        }
        Class::Cas => {
            let size = rng.below(4) as u32;
            let rn = pick_base(rng, &mut regs, true);
            let rs = regs.pick(rng, true);
            let rt = regs.pick(rng, true);
            let l = rng.below(2) as u32;
            let o0 = rng.below(2) as u32;
            c.words[0] = (size << 30)
                | (0b0010001 << 23)
                | (l << 22)
                | (1 << 21)
                | (u32::from(rs) << 16)
                | (o0 << 15)
                | (31 << 10)
                | (u32::from(rn) << 5)
                | u32::from(rt);
            c.rn = rn;
            c.len = 1 << size;
            c.align = c.len;
            c.elem = c.len;
            if rs != 31 && rng.chance(1, 2) {
                c.fixups[0] = Fixup {
                    reg: rs,
                    size: c.len as u8,
                    off: 0,
                };
                c.nfix = 1;
            }
        }
        Class::Casp => {
            let sz = rng.below(2) as u32;
            let rs = regs.pick_even(rng);
            let rt = regs.pick_even(rng);
            let rn = pick_base(rng, &mut regs, true);
            let l = rng.below(2) as u32;
            let o0 = rng.below(2) as u32;
            c.words[0] = (sz << 30)
                | (0b0010000 << 23)
                | (l << 22)
                | (1 << 21)
                | (u32::from(rs) << 16)
                | (o0 << 15)
                | (31 << 10)
                | (u32::from(rn) << 5)
                | u32::from(rt);
            c.rn = rn;
            let e = 4u64 << sz;
            c.len = 2 * e;
            c.align = c.len;
            c.elem = c.len;
            if rng.chance(1, 2) {
                c.fixups[0] = Fixup {
                    reg: rs,
                    size: e as u8,
                    off: 0,
                };
                c.fixups[1] = Fixup {
                    reg: rs + 1,
                    size: e as u8,
                    off: e as u8,
                };
                c.nfix = 2;
            }
        }
        Class::DcZva => {
            let bs = f.zva.unwrap_or(64);
            let rt = regs.pick(rng, false);
            c.words[0] = 0xd50b_7420 | u32::from(rt);
            c.rn = rt;
            let jitter = rng.below(bs);
            c.addr_off = jitter.wrapping_neg();
            c.len = bs;
            c.align = bs;
            c.elem = bs;
        }
    }
    c
}

fn gpr_single(rng: &mut Rng, c: &mut Case, regs: &mut Regs) {
    let size = rng.below(4) as u32;
    // opc: 0 store, 1 load, 2 load signed into X (not for size 3), 3 load
    // signed into W (sizes 0 and 1 only).
    let opc = match rng.below(8) {
        0..=2 => 0,
        3..=5 => 1,
        _ => match size {
            0 | 1 => 2 + rng.below(2) as u32,
            2 => 2,
            _ => 1,
        },
    };
    let load = opc != 0;
    let wb = matches!(c.class, Class::GprPost | Class::GprPre);
    let rn = pick_base(rng, regs, true);
    let mut rt = regs.pick(rng, true);
    if load && !wb && rn != 31 && rng.chance(1, 16) {
        rt = rn;
        c.base_loaded = true;
    }
    let base = (size << 30) | (opc << 22) | (u32::from(rn) << 5) | u32::from(rt);
    c.rn = rn;
    c.len = 1 << size;
    c.elem = c.len;
    match c.class {
        Class::GprImm => {
            let imm12 = if rng.chance(1, 2) {
                rng.below(16)
            } else {
                rng.below(4096)
            } as u32;
            c.words[0] = base | (0b111001 << 24) | (imm12 << 10);
            c.addr_off = u64::from(imm12) << size;
        }
        Class::GprReg => {
            let option = OPTIONS[rng.below(4) as usize];
            let s = rng.below(2) as u32;
            let rm = if rng.chance(1, 10) {
                31
            } else {
                regs.pick(rng, false)
            };
            let shift = if s == 1 { size } else { 0 };
            c.words[0] = base
                | (0b111000 << 24)
                | (1 << 21)
                | (u32::from(rm) << 16)
                | (option << 13)
                | (s << 12)
                | (0b10 << 10);
            if rm == 31 {
                c.addr_off = 0;
            } else {
                let (v, off) = index_value(rng, option, shift);
                c.set_x(rm, v);
                c.addr_off = off;
            }
        }
        _ => {
            let imm9 = rng.range_i64(-256, 255);
            let mode = match c.class {
                Class::GprPost => 0b01,
                Class::GprPre => 0b11,
                _ => 0b00,
            };
            c.words[0] = base | (0b111000 << 24) | (((imm9 as u32) & 0x1ff) << 12) | (mode << 10);
            c.addr_off = if mode == 0b01 { 0 } else { imm9 as u64 };
        }
    }
}

fn fp_single(rng: &mut Rng, c: &mut Case, regs: &mut Regs) {
    // 0..=3: B/H/S/D (size = k, opc 0x), 4: Q (size 00, opc 1x).
    let k = rng.below(5) as u32;
    let load = rng.chance(1, 2) as u32;
    let (size, opc, scale) = if k == 4 {
        (0, 0b10 | load, 4)
    } else {
        (k, load, k)
    };
    let rn = pick_base(rng, regs, true);
    let rt = rng.below(32) as u32;
    let base = (size << 30) | (opc << 22) | (u32::from(rn) << 5) | rt;
    c.rn = rn;
    c.len = 1 << scale;
    c.elem = c.len;
    match c.class {
        Class::FpImm => {
            let imm12 = if rng.chance(1, 2) {
                rng.below(16)
            } else {
                rng.below(4096)
            } as u32;
            c.words[0] = base | (0b111101 << 24) | (imm12 << 10);
            c.addr_off = u64::from(imm12) << scale;
        }
        Class::FpReg => {
            let option = OPTIONS[rng.below(4) as usize];
            let s = rng.below(2) as u32;
            let rm = if rng.chance(1, 10) {
                31
            } else {
                regs.pick(rng, false)
            };
            let shift = if s == 1 { scale } else { 0 };
            c.words[0] = base
                | (0b111100 << 24)
                | (1 << 21)
                | (u32::from(rm) << 16)
                | (option << 13)
                | (s << 12)
                | (0b10 << 10);
            if rm == 31 {
                c.addr_off = 0;
            } else {
                let (v, off) = index_value(rng, option, shift);
                c.set_x(rm, v);
                c.addr_off = off;
            }
        }
        _ => {
            let imm9 = rng.range_i64(-256, 255);
            let mode = [0b00u32, 0b01, 0b11][rng.below(3) as usize];
            c.words[0] = base | (0b111100 << 24) | (((imm9 as u32) & 0x1ff) << 12) | (mode << 10);
            c.addr_off = if mode == 0b01 { 0 } else { imm9 as u64 };
        }
    }
}

fn pair(rng: &mut Rng, c: &mut Case, regs: &mut Regs) {
    let fp = c.class == Class::FpPair || (c.class == Class::PairNt && rng.chance(1, 2));
    let nt = c.class == Class::PairNt;
    let mut load = rng.chance(1, 2);
    // (opc, element size)
    let (opc, esize) = if fp {
        let k = rng.below(3) as u32;
        (k, 4u64 << k)
    } else if !nt && rng.chance(1, 4) {
        load = true; // LDPSW
        (0b01, 4)
    } else if rng.chance(1, 2) {
        (0b00, 4)
    } else {
        (0b10, 8)
    };
    let idx = if nt {
        0b00
    } else {
        [0b01u32, 0b10, 0b11][rng.below(3) as usize]
    };
    let wb = idx == 0b01 || idx == 0b11;
    let rn = pick_base(rng, regs, true);
    let (rt, rt2) = if fp {
        let a = rng.below(32) as u8;
        let mut b = rng.below(32) as u8;
        if load && a == b {
            b = (b + 1) % 32;
        }
        (a, b)
    } else {
        let a = regs.pick(rng, true);
        let mut b = regs.pick(rng, true);
        if load && a == b {
            // Both XZR: use a fresh register for the second.
            b = regs.pick(rng, false);
        }
        let mut a = a;
        if load && !wb && rn != 31 && rng.chance(1, 16) {
            if rng.chance(1, 2) {
                a = rn
            } else {
                b = rn
            }
            c.base_loaded = true;
        }
        (a, b)
    };
    let imm7 = rng.range_i64(-64, 63);
    c.words[0] = (opc << 30)
        | (0b101 << 27)
        | (u32::from(fp) << 26)
        | (idx << 23)
        | (u32::from(load) << 22)
        | (((imm7 as u32) & 0x7f) << 15)
        | (u32::from(rt2) << 10)
        | (u32::from(rn) << 5)
        | u32::from(rt);
    c.rn = rn;
    c.addr_off = if idx == 0b01 {
        0
    } else {
        (imm7 * esize as i64) as u64
    };
    c.len = 2 * esize;
    c.elem = esize;
}

fn post_reg(rng: &mut Rng, c: &mut Case, regs: &mut Regs) -> u32 {
    if rng.chance(1, 2) {
        31
    } else {
        let rm = regs.pick(rng, false);
        c.set_x(rm, rng.range_i64(-512, 511) as u64);
        u32::from(rm)
    }
}

fn multiple(rng: &mut Rng, c: &mut Case, regs: &mut Regs) {
    const TABLE: [(u32, u64, u64); 7] = [
        (0b0000, 4, 1),
        (0b0010, 1, 4),
        (0b0100, 3, 1),
        (0b0110, 1, 3),
        (0b0111, 1, 1),
        (0b1000, 2, 1),
        (0b1010, 1, 2),
    ];
    let (opcode, selem, rpt) = TABLE[rng.below(7) as usize];
    let mut q = rng.below(2) as u32;
    let size = rng.below(4) as u32;
    if size == 3 && q == 0 && selem > 1 {
        q = 1; // .1D is reserved for LD2-LD4/ST2-ST4
    }
    let load = rng.below(2) as u32;
    let rn = pick_base(rng, regs, true);
    let rt = rng.below(32) as u32;
    let post = rng.chance(1, 2);
    let mut w =
        (q << 30) | (load << 22) | (opcode << 12) | (size << 10) | (u32::from(rn) << 5) | rt;
    if post {
        let rm = post_reg(rng, c, regs);
        w |= (0b0011001 << 23) | (rm << 16);
    } else {
        w |= 0b0011000 << 23;
    }
    c.words[0] = w;
    c.rn = rn;
    c.len = (if q == 1 { 16 } else { 8 }) * selem * rpt;
    c.elem = 1 << size;
    c.ld1_multiple = selem == 1;
}

fn single(rng: &mut Rng, c: &mut Case, regs: &mut Regs) {
    let r = rng.below(2) as u32;
    let op0 = rng.below(2) as u32;
    let selem = u64::from((op0 << 1 | r) + 1);
    let (q, s, size, opcode, esize, load) = if c.class == Class::Replicate {
        let size = rng.below(4) as u32;
        (rng.below(2) as u32, 0, size, 0b110 | op0, 1u64 << size, 1)
    } else {
        let load = rng.below(2) as u32;
        match rng.below(4) {
            0 => {
                let i = rng.below(16) as u32;
                (i >> 3, (i >> 2) & 1, i & 3, op0, 1, load)
            }
            1 => {
                let i = rng.below(8) as u32;
                (i >> 2, (i >> 1) & 1, (i & 1) << 1, 0b010 | op0, 2, load)
            }
            2 => {
                let i = rng.below(4) as u32;
                (i >> 1, i & 1, 0b00, 0b100 | op0, 4, load)
            }
            _ => (rng.below(2) as u32, 0, 0b01, 0b100 | op0, 8, load),
        }
    };
    let rn = pick_base(rng, regs, true);
    let rt = rng.below(32) as u32;
    let mut w = (q << 30)
        | (load << 22)
        | (r << 21)
        | (opcode << 13)
        | (s << 12)
        | (size << 10)
        | (u32::from(rn) << 5)
        | rt;
    if rng.chance(1, 2) {
        let rm = post_reg(rng, c, regs);
        w |= (0b0011011 << 23) | (rm << 16);
    } else {
        w |= 0b0011010 << 23;
    }
    c.words[0] = w;
    c.rn = rn;
    c.len = selem * esize;
    c.elem = esize;
}

fn exclusive(rng: &mut Rng, c: &mut Case, regs: &mut Regs) {
    let size = rng.below(4) as u32;
    let rn = pick_base(rng, regs, true);
    let rt = regs.pick(rng, true);
    let a = rng.below(2) as u32;
    c.words[0] = (size << 30)
        | (0b001000 << 24)
        | (1 << 22)
        | (31 << 16)
        | (a << 15)
        | (31 << 10)
        | (u32::from(rn) << 5)
        | u32::from(rt);
    c.rn = rn;
    c.len = 1 << size;
    c.align = c.len;
    c.elem = c.len;
    if rng.chance(3, 4) {
        // A store exclusive to the same address; its data register may be the
        // one just loaded.
        // Ws is never the zero register: with Rt also XZR that would be Rs == Rt.
        let rs = regs.pick(rng, false);
        let rt2 = if rng.chance(1, 4) {
            rt
        } else {
            regs.pick(rng, true)
        };
        let l = rng.below(2) as u32;
        c.words[1] = (size << 30)
            | (0b001000 << 24)
            | (u32::from(rs) << 16)
            | (l << 15)
            | (31 << 10)
            | (u32::from(rn) << 5)
            | u32::from(rt2);
        c.nwords = 2;
    }
}

fn exclusive_pair(rng: &mut Rng, c: &mut Case, regs: &mut Regs) {
    let sz = rng.below(2) as u32;
    let rn = pick_base(rng, regs, true);
    let rt = regs.pick(rng, false);
    let rt2 = regs.pick(rng, false);
    let a = rng.below(2) as u32;
    c.words[0] = (1 << 31)
        | (sz << 30)
        | (0b001000 << 24)
        | (1 << 22)
        | (1 << 21)
        | (31 << 16)
        | (a << 15)
        | (u32::from(rt2) << 10)
        | (u32::from(rn) << 5)
        | u32::from(rt);
    c.rn = rn;
    let e = 4u64 << sz;
    c.len = 2 * e;
    c.align = c.len;
    c.elem = c.len;
    if rng.chance(3, 4) {
        let rs = regs.pick(rng, false);
        let (s1, s2) = if rng.chance(1, 4) {
            (rt, rt2)
        } else {
            (regs.pick(rng, true), regs.pick(rng, true))
        };
        let l = rng.below(2) as u32;
        c.words[1] = (1 << 31)
            | (sz << 30)
            | (0b001000 << 24)
            | (1 << 21)
            | (u32::from(rs) << 16)
            | (l << 15)
            | (u32::from(s2) << 10)
            | (u32::from(rn) << 5)
            | u32::from(s1);
        c.nwords = 2;
    }
}
