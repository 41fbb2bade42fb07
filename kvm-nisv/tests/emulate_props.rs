// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Property tests: the emulator (fetch + decode + emulate) against a reference
//! model, class by class.
//!
//! Each case is an instruction *specification* (family and operands) from which
//! the test both encodes the A64 word (encodings written out here from the Arm
//! ARM, C4.1 "Loads and Stores") and computes the expected result with a
//! reference interpreter written from the instructions' pseudocode (C6.2),
//! which works on a flat byte array for the two-page data window and a plain
//! register file. It shares nothing with the emulator's element logic (no
//! `Insn`, no element list, no splitting).
//!
//! The environment is randomised: MMU off (all data Device-nGnRnE) or on (4K
//! pages, the two window pages mapped to non-adjacent IPAs), each window page
//! RAM, a device or nothing, Normal or Device memory, read-write, read-only or
//! unmapped; EL0, EL1 with SP_EL0 or SP_EL1; SCTLR_EL1.A, EE, E0E; addresses
//! biased towards the page boundary so elements and pairs straddle it. Device
//! pages are Device-nGnRE, -GRE, -nGRE or -nGnRnE, and the bus reports a random
//! `max_access_size`: the bus log is checked against the gathering rules
//! (docs/emulator.md, "Gathering") with a model of its own (`check_bus_log`),
//! built from the reference's `Mem[]` accesses.

#[path = "stage1_pt/mod.rs"]
mod pt;

#[path = "emulate_common/mod.rs"]
mod common;

use common::{Rng, WideBus};
use kvm_nisv::emulate::{Emulator, Outcome};
use kvm_nisv::mem::{BusAccess, VecBus};
use kvm_nisv::mem::{GuestRam, VecRam};
use kvm_nisv::regs::{Reg, RegisterFile, SysReg, VcpuRegs};
use kvm_nisv::stage1::{FaultKind, SCTLR_A, SCTLR_DZE, SCTLR_E0E, SCTLR_EE, SCTLR_M};
use proptest::prelude::*;

/// VA of the two-page data window.
const WIN: u64 = 0x10_0000;
const PAGE: u64 = 0x1000;
/// Code is at this VA (and IPA).
const CODE: u64 = 0x1000;
/// IPAs of the window pages when the MMU is on (non-adjacent on purpose).
const IPA_ON: [u64; 2] = [0x20_0000, 0x30_0000];

// ---------------------------------------------------------------------------
// Instruction specifications and their encodings.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Unsigned scaled 12-bit immediate (LDR/STR) or signed scaled imm7 (pairs).
    Offset(i64),
    /// Unscaled signed 9-bit (LDUR/STUR).
    Unscaled(i64),
    /// LDTR/STTR (unscaled imm9, checked as EL0 at EL1).
    Unpriv(i64),
    Pre(i64),
    Post(i64),
    /// LDR (literal): PC + imm19 * 4.
    Literal(i64),
    /// LDAR/STLR: [Xn|SP], aligned to the access size.
    Ordered,
    /// Register offset: Xm, option, S.
    Reg {
        m: u8,
        option: u8,
        s: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum AtomicKind {
    Add,
    Clr,
    Eor,
    Set,
    Smax,
    Smin,
    Umax,
    Umin,
    Swp,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Spec {
    /// LDR/STR/LDRB/.../LDRSW, and SIMD&FP LDR/STR (fp), any mode.
    Single {
        bytes: u8,
        load: bool,
        /// Sign-extend to 64 (true) or to 32 (false); GPR loads only.
        signed: Option<bool>,
        fp: bool,
        t: u8,
        n: u8,
        mode: Mode,
    },
    /// LDP/STP/LDNP/STNP/LDPSW (GPR or SIMD&FP).
    Pair {
        bytes: u8,
        load: bool,
        signed: bool,
        fp: bool,
        nontemporal: bool,
        t: u8,
        t2: u8,
        n: u8,
        mode: Mode,
    },
    /// LD1-4/ST1-4 multiple structures.
    Multi {
        load: bool,
        /// (opcode, rpt, selem)
        form: (u32, u8, u8),
        q: bool,
        esize: u8,
        t: u8,
        n: u8,
        /// None: no writeback; Some(31): immediate; Some(m): register.
        post: Option<u8>,
    },
    /// LD1-4/ST1-4 single structure and LD1R-LD4R.
    Lane {
        load: bool,
        selem: u8,
        esize: u8,
        index: u8,
        replicate: bool,
        q: bool,
        t: u8,
        n: u8,
        post: Option<u8>,
    },
    /// LDXR/STXR/LDAXR/STLXR/LDXP/STXP/...
    Excl {
        load: bool,
        pair: bool,
        bytes: u8,
        s: u8,
        t: u8,
        t2: u8,
        n: u8,
        ordered: bool,
    },
    /// LD<op>/SWP.
    Atomic {
        bytes: u8,
        op: AtomicKind,
        s: u8,
        t: u8,
        n: u8,
        a: bool,
        r: bool,
    },
    /// CAS/CASP.
    Cas {
        bytes: u8,
        pair: bool,
        s: u8,
        t: u8,
        n: u8,
    },
    /// DC ZVA, Xt.
    DcZva { t: u8 },
}

fn log2(b: u8) -> u32 {
    b.trailing_zeros()
}

fn encode(spec: &Spec) -> u32 {
    let r = |x: u8| u32::from(x) & 31;
    match *spec {
        Spec::Single {
            bytes,
            load,
            signed,
            fp,
            t,
            n,
            mode,
        } => {
            // size, V, opc (C4.1.94-ish "Load/store register").
            let (size, opc) = if fp {
                if bytes == 16 {
                    (0u32, if load { 3 } else { 2 })
                } else {
                    (log2(bytes), u32::from(load))
                }
            } else {
                let opc = match (load, signed) {
                    (false, _) => 0,
                    (true, None) => 1,
                    (true, Some(true)) => 2,
                    (true, Some(false)) => 3,
                };
                (log2(bytes), opc)
            };
            let v = u32::from(fp);
            if let Mode::Literal(imm) = mode {
                let opc = match (fp, bytes, signed) {
                    (_, 4, None) => 0u32,
                    (_, 8, _) => 1,
                    _ => 2, // LDRSW, or LDR Q
                };
                return (opc << 30)
                    | (0b011 << 27)
                    | (v << 26)
                    | (((imm as u32) & 0x7ffff) << 5)
                    | r(t);
            }
            if mode == Mode::Ordered {
                return (log2(bytes) << 30)
                    | (0b001000 << 24)
                    | (1 << 23)
                    | (u32::from(load) << 22)
                    | (0b11111 << 16)
                    | (1 << 15)
                    | (0b11111 << 10)
                    | (r(n) << 5)
                    | r(t);
            }
            let head = (size << 30) | (0b111 << 27) | (v << 26) | (opc << 22) | (r(n) << 5) | r(t);
            match mode {
                Mode::Offset(imm) => head | (1 << 24) | (((imm as u32) & 0xfff) << 10),
                Mode::Unscaled(imm) => head | (((imm as u32) & 0x1ff) << 12),
                Mode::Post(imm) => head | (((imm as u32) & 0x1ff) << 12) | (1 << 10),
                Mode::Unpriv(imm) => head | (((imm as u32) & 0x1ff) << 12) | (2 << 10),
                Mode::Pre(imm) => head | (((imm as u32) & 0x1ff) << 12) | (3 << 10),
                Mode::Literal(_) | Mode::Ordered => unreachable!(),
                Mode::Reg { m, option, s } => {
                    head | (1 << 21)
                        | (r(m) << 16)
                        | (u32::from(option) << 13)
                        | (u32::from(s) << 12)
                        | (2 << 10)
                }
            }
        }
        Spec::Pair {
            bytes,
            load,
            signed,
            fp,
            nontemporal,
            t,
            t2,
            n,
            mode,
        } => {
            let opc: u32 = if fp {
                match bytes {
                    4 => 0,
                    8 => 1,
                    _ => 2,
                }
            } else if signed {
                1
            } else if bytes == 4 {
                0
            } else {
                2
            };
            let (idx, imm) = match mode {
                Mode::Post(i) => (1u32, i),
                Mode::Offset(i) => (if nontemporal { 0 } else { 2 }, i),
                Mode::Pre(i) => (3, i),
                _ => unreachable!(),
            };
            (opc << 30)
                | (0b101 << 27)
                | (u32::from(fp) << 26)
                | (idx << 23)
                | (u32::from(load) << 22)
                | (((imm as u32) & 0x7f) << 15)
                | (r(t2) << 10)
                | (r(n) << 5)
                | r(t)
        }
        Spec::Multi {
            load,
            form,
            q,
            esize,
            t,
            n,
            post,
        } => {
            let base = (u32::from(q) << 30)
                | (0b0011000 << 23)
                | (u32::from(load) << 22)
                | (form.0 << 12)
                | (log2(esize) << 10)
                | (r(n) << 5)
                | r(t);
            match post {
                None => base,
                Some(m) => base | (1 << 23) | (r(m) << 16),
            }
        }
        Spec::Lane {
            load,
            selem,
            esize,
            index,
            replicate,
            q,
            t,
            n,
            post,
        } => {
            let sel = u32::from(selem - 1);
            let rbit = sel & 1;
            let (opcode, s, size, qb) = if replicate {
                (0b110 | (sel >> 1), 0, log2(esize), u32::from(q))
            } else {
                let i = u32::from(index);
                match esize {
                    1 => ((sel >> 1), (i >> 2) & 1, i & 3, i >> 3),
                    2 => (0b010 | (sel >> 1), (i >> 1) & 1, (i & 1) << 1, i >> 2),
                    4 => (0b100 | (sel >> 1), i & 1, 0, i >> 1),
                    _ => (0b100 | (sel >> 1), 0, 1, i),
                }
            };
            let base = (qb << 30)
                | (0b0011010 << 23)
                | (u32::from(load) << 22)
                | (rbit << 21)
                | (opcode << 13)
                | (s << 12)
                | (size << 10)
                | (r(n) << 5)
                | r(t);
            match post {
                None => base,
                Some(m) => base | (1 << 23) | (r(m) << 16),
            }
        }
        Spec::Excl {
            load,
            pair,
            bytes,
            s,
            t,
            t2,
            n,
            ordered,
        } => {
            // size 001000 o2 L o1 Rs o0 Rt2 Rn Rt; pairs: size = 1x.
            let size = if pair {
                2 | u32::from(bytes == 8)
            } else {
                log2(bytes)
            };
            let rs = if load { 31 } else { r(s) };
            let rt2 = if pair { r(t2) } else { 31 };
            (size << 30)
                | (0b001000 << 24)
                | (u32::from(load) << 22)
                | (u32::from(pair) << 21)
                | (rs << 16)
                | (u32::from(ordered) << 15)
                | (rt2 << 10)
                | (r(n) << 5)
                | r(t)
        }
        Spec::Atomic {
            bytes,
            op,
            s,
            t,
            n,
            a,
            r: rel,
        } => {
            let (o3, opc) = match op {
                AtomicKind::Add => (0, 0),
                AtomicKind::Clr => (0, 1),
                AtomicKind::Eor => (0, 2),
                AtomicKind::Set => (0, 3),
                AtomicKind::Smax => (0, 4),
                AtomicKind::Smin => (0, 5),
                AtomicKind::Umax => (0, 6),
                AtomicKind::Umin => (0, 7),
                AtomicKind::Swp => (1, 0),
            };
            (log2(bytes) << 30)
                | (0b111000 << 24)
                | (u32::from(a) << 23)
                | (u32::from(rel) << 22)
                | (1 << 21)
                | (r(s) << 16)
                | (o3 << 15)
                | (opc << 12)
                | (r(n) << 5)
                | r(t)
        }
        Spec::Cas {
            bytes,
            pair,
            s,
            t,
            n,
        } => {
            if pair {
                // 0 sz 001000 0 L 1 Rs o0 11111 Rn Rt
                (u32::from(bytes == 8) << 30)
                    | (0b001000 << 24)
                    | (1 << 21)
                    | (r(s) << 16)
                    | (0b11111 << 10)
                    | (r(n) << 5)
                    | r(t)
            } else {
                // size 001000 1 L 1 Rs o0 11111 Rn Rt
                (log2(bytes) << 30)
                    | (0b001000 << 24)
                    | (1 << 23)
                    | (1 << 21)
                    | (r(s) << 16)
                    | (0b11111 << 10)
                    | (r(n) << 5)
                    | r(t)
            }
        }
        Spec::DcZva { t } => 0xd50b_7420 | r(t),
    }
}

// ---------------------------------------------------------------------------
// The environment.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Backing {
    Ram,
    Device,
    Nothing,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct PageCfg {
    backing: Backing,
    /// Device memory type (always true with the MMU off).
    device_type: bool,
    /// MAIR_EL1 index of the mapping when the MMU is on (see `MAIR`): 0 for
    /// Normal, 1..=4 for the Device types.
    attr: u64,
    read_only: bool,
    unmapped: bool,
}

/// MAIR_EL1: Attr0 Normal write-back (0xff), Attr1 Device-nGnRE (0x04),
/// Attr2 Device-GRE (0x0c), Attr3 Device-nGRE (0x08), Attr4 Device-nGnRnE (0x00).
const MAIR: u64 = 0xff | (0x04 << 8) | (0x0c << 16) | (0x08 << 24);

impl PageCfg {
    /// Whether the page's memory type permits gathering (Normal or
    /// Device-GRE; with the MMU off every data access is Device-nGnRnE).
    fn gathers(&self, mmu: bool) -> bool {
        mmu && (!self.device_type || self.attr == 2)
    }
}

#[derive(Clone, Debug)]
struct Env {
    mmu: bool,
    /// What the bus answers to `max_access_size`.
    bus_max: usize,
    pages: [PageCfg; 2],
    /// 0: EL0, 1: EL1t (SP_EL0), 2: EL1h (SP_EL1).
    mode: u8,
    sctlr: u64,
    dczid: u64,
    regs: RegisterFile,
    window: Vec<u8>,
}

impl Env {
    fn el0(&self) -> bool {
        self.mode == 0
    }
    fn big(&self) -> bool {
        if self.el0() {
            self.sctlr & SCTLR_E0E != 0
        } else {
            self.sctlr & SCTLR_EE != 0
        }
    }
    fn sp(&self) -> Reg {
        if self.mode == 2 {
            Reg::SpEl1
        } else {
            Reg::SpEl0
        }
    }
    fn page_ipa(&self, i: usize) -> u64 {
        if self.mmu {
            IPA_ON[i]
        } else {
            WIN + i as u64 * PAGE
        }
    }
}

fn gen_env(rng: &mut Rng) -> Env {
    let mmu = rng.chance(2, 3);
    let mut pages = [PageCfg {
        backing: Backing::Ram,
        device_type: true,
        attr: 4,
        read_only: false,
        unmapped: false,
    }; 2];
    for p in &mut pages {
        p.backing = rng.pick(&[
            Backing::Ram,
            Backing::Device,
            Backing::Device,
            Backing::Nothing,
        ]);
        if rng.chance(1, 12) {
            p.backing = Backing::Nothing;
        }
        if mmu {
            p.device_type = rng.chance(1, 3);
            p.attr = if p.device_type {
                rng.pick(&[1, 2, 2, 3, 4])
            } else {
                0
            };
            p.read_only = rng.chance(1, 8);
            p.unmapped = rng.chance(1, 16);
        }
    }
    let mode = rng.below(3) as u8;
    let mut sctlr = SCTLR_DZE;
    if mmu {
        sctlr |= SCTLR_M;
    }
    if rng.chance(1, 6) {
        sctlr |= SCTLR_A;
    }
    if rng.chance(1, 4) {
        sctlr |= SCTLR_EE;
    }
    if rng.chance(1, 4) {
        sctlr |= SCTLR_E0E;
    }
    let mut regs = RegisterFile::default();
    for x in regs.x.iter_mut() {
        *x = rng.next();
    }
    for v in regs.v.iter_mut() {
        *v = (u128::from(rng.next()) << 64) | u128::from(rng.next());
    }
    regs.sp_el0 = rng.next();
    regs.sp_el1 = rng.next();
    regs.pc = CODE;
    regs.pstate = match mode {
        0 => 0,
        1 => 4,
        _ => 5,
    } | (rng.below(4) << 10)
        | 0x3c0;
    let dczid = rng.pick(&[2u64, 3, 4, 5, 6]);
    let mut window = vec![0u8; 2 * PAGE as usize];
    for b in window.iter_mut() {
        *b = rng.next() as u8;
    }
    // 8 is the default; 24 and 0 are rounded to 16 and 8.
    let bus_max = rng.pick(&[8, 8, 16, 64, 4096, 24, 0]);
    Env {
        mmu,
        bus_max,
        pages,
        mode,
        sctlr,
        dczid,
        regs,
        window,
    }
}

/// Build RAM, bus and registers for the emulator from the environment.
fn materialise(env: &Env, word: u32) -> (VecRam, VecBus, RegisterFile) {
    let mut regs = env.regs.clone();
    regs.set_sys(SysReg::SctlrEl1, env.sctlr);
    regs.set_sys(SysReg::DczidEl0, env.dczid);
    regs.set_sys(SysReg::MairEl1, MAIR);
    regs.set_sys(SysReg::IdAa64mmfr0El1, 5);
    let mut bus = VecBus::new();
    let mut ram = if env.mmu {
        let mut p = pt::Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
        p.be = env.sctlr & SCTLR_EE != 0;
        p.map(CODE, CODE, 3, pt::AF | pt::AP_RO | pt::AP_EL0);
        for (i, pc) in env.pages.iter().enumerate() {
            let mut attrs = pt::AF | pt::AP_EL0 | pt::attr(pc.attr);
            if pc.read_only {
                attrs |= pt::AP_RO;
            }
            let slot = p.map(WIN + i as u64 * PAGE, IPA_ON[i], 3, attrs);
            if pc.unmapped {
                p.wr(slot, 0);
            }
        }
        regs.set_sys(SysReg::TcrEl1, 25 | (5 << 32) | (1 << 23));
        regs.set_sys(SysReg::Ttbr0El1, p.root);
        p.ram
    } else {
        VecRam::new()
    };
    assert!(ram.add_region(0, 0x2000));
    ram.write(CODE, &word.to_le_bytes()).unwrap();
    for (i, pc) in env.pages.iter().enumerate() {
        let ipa = env.page_ipa(i);
        let bytes = env.window[i * PAGE as usize..(i + 1) * PAGE as usize].to_vec();
        match pc.backing {
            Backing::Ram => {
                assert!(ram.add_region(ipa, PAGE as usize));
                ram.write(ipa, &bytes).unwrap();
            }
            Backing::Device => assert!(bus.add_window(ipa, bytes)),
            Backing::Nothing => {}
        }
    }
    (ram, bus, regs)
}

/// Read back the window as the emulator left it.
fn window_after(env: &Env, ram: &VecRam, bus: &VecBus) -> Vec<u8> {
    let mut w = env.window.clone();
    for (i, pc) in env.pages.iter().enumerate() {
        let ipa = env.page_ipa(i);
        let dst = &mut w[i * PAGE as usize..(i + 1) * PAGE as usize];
        match pc.backing {
            Backing::Ram => ram.read(ipa, dst).unwrap(),
            Backing::Device => dst.copy_from_slice(bus.window(ipa).unwrap()),
            Backing::Nothing => {}
        }
    }
    w
}

// ---------------------------------------------------------------------------
// The reference model.

#[derive(Clone, Debug, PartialEq)]
enum RefOutcome {
    Done,
    NoDevice {
        va: u64,
    },
    Fault {
        va: u64,
        kind: FaultKind,
        write: bool,
    },
    Unsupported,
}

/// Reference machine: flat window bytes and a register file.
struct Ref<'a> {
    env: &'a Env,
    r: RegisterFile,
    w: Vec<u8>,
    big: bool,
    /// Accesses are checked as EL0 (EL0, or LDTR/STTR at EL1).
    as_el0: bool,
    /// The pseudocode's `Mem[]` accesses made, in order.
    mem_log: std::cell::RefCell<Vec<MemAcc>>,
}

/// One `Mem[address, size]` access of the reference, with the size of its
/// single-copy atomic parts (Arm ARM B2.2.1).
#[derive(Clone, Copy, Debug, PartialEq)]
struct MemAcc {
    a: u64,
    n: u64,
    /// Single-copy atomic size: the access size up to 8 bytes; 8 for a
    /// 128-bit SIMD&FP value or LDXP of X registers (pairs of 64-bit
    /// accesses); 16 for STXP and CASP of X registers.
    unit: u64,
    write: bool,
}

type RefResult<T> = Result<T, RefOutcome>;

impl Ref<'_> {
    fn x(&self, n: u8) -> u64 {
        if n == 31 { 0 } else { self.r.x[n as usize] }
    }
    fn set_x(&mut self, n: u8, v: u64) {
        if n != 31 {
            self.r.x[n as usize] = v;
        }
    }
    /// X[n] with 31 meaning SP (base registers).
    fn xsp(&self, n: u8) -> u64 {
        if n == 31 {
            let mut r = self.r.clone();
            r.get(self.env.sp()).unwrap()
        } else {
            self.r.x[n as usize]
        }
    }
    fn set_xsp(&mut self, n: u8, v: u64) {
        if n == 31 {
            let sp = self.env.sp();
            self.r.set(sp, v).unwrap();
        } else {
            self.r.x[n as usize] = v;
        }
    }

    /// Check one `Mem[a, n]` access (pseudocode `Mem[]` with `CheckAlignment`
    /// and the byte-by-byte split of unaligned accesses): returns the first
    /// problem in byte order.
    fn check(&self, a: u64, n: u64, write: bool, align_all: bool) -> RefResult<()> {
        let fault = |va, kind| RefOutcome::Fault { va, kind, write };
        let aligned = a.is_multiple_of(n);
        if align_all && self.env.sctlr & SCTLR_A != 0 && !aligned {
            return Err(fault(a, FaultKind::Alignment));
        }
        for i in 0..n {
            let va = a.wrapping_add(i);
            let off = va.wrapping_sub(WIN);
            assert!(off < 2 * PAGE, "generator kept accesses in the window");
            let pc = self.env.pages[(off / PAGE) as usize];
            if pc.unmapped {
                return Err(fault(va, FaultKind::Translation));
            }
            if pc.device_type && !aligned {
                return Err(fault(va, FaultKind::Alignment));
            }
            if self.env.mmu {
                let el0_ok = true; // pages are always EL0-accessible here
                if write && pc.read_only || (self.as_el0 && !el0_ok) {
                    return Err(fault(va, FaultKind::Permission));
                }
            }
            if pc.backing == Backing::Nothing {
                return Err(RefOutcome::NoDevice { va });
            }
        }
        Ok(())
    }

    fn rd(&self, a: u64, n: u64) -> u128 {
        self.rd_unit(a, n, n.min(8))
    }

    fn rd_unit(&self, a: u64, n: u64, unit: u64) -> u128 {
        self.mem_log.borrow_mut().push(MemAcc {
            a,
            n,
            unit,
            write: false,
        });
        let off = (a - WIN) as usize;
        let mut v = 0u128;
        for i in 0..n as usize {
            let b = u128::from(self.w[off + i]);
            if self.big {
                v = (v << 8) | b;
            } else {
                v |= b << (8 * i);
            }
        }
        v
    }

    fn wr(&mut self, a: u64, n: u64, v: u128) {
        self.wr_unit(a, n, v, n.min(8))
    }

    fn wr_unit(&mut self, a: u64, n: u64, v: u128, unit: u64) {
        self.mem_log.borrow_mut().push(MemAcc {
            a,
            n,
            unit,
            write: true,
        });
        let off = (a - WIN) as usize;
        for i in 0..n as usize {
            let b = if self.big {
                (v >> (8 * (n as usize - 1 - i))) as u8
            } else {
                (v >> (8 * i)) as u8
            };
            self.w[off + i] = b;
        }
    }
}

fn sx(v: u64, bytes: u64) -> u64 {
    let sh = 64 - 8 * bytes;
    (((v << sh) as i64) >> sh) as u64
}

fn mask(bytes: u64) -> u128 {
    if bytes >= 16 {
        u128::MAX
    } else {
        (1u128 << (8 * bytes)) - 1
    }
}

/// Address computation for the single/pair families: (address, writeback value).
/// `pair`: pre/post-index immediates are scaled (imm7) rather than bytes (imm9).
fn addr_mode(m: &Ref<'_>, n: u8, mode: Mode, scale: u64, pair: bool) -> (u64, Option<u64>) {
    let base = m.xsp(n);
    let wscale = if pair { scale } else { 1 };
    match mode {
        Mode::Offset(i) => (base.wrapping_add((i as u64).wrapping_mul(scale)), None),
        Mode::Unscaled(i) | Mode::Unpriv(i) => (base.wrapping_add(i as u64), None),
        Mode::Pre(i) => {
            let a = base.wrapping_add((i as u64).wrapping_mul(wscale));
            (a, Some(a))
        }
        Mode::Literal(i) => (m.r.pc.wrapping_add((i as u64).wrapping_mul(4)), None),
        Mode::Ordered => (base, None),
        Mode::Post(i) => (
            base,
            Some(base.wrapping_add((i as u64).wrapping_mul(wscale))),
        ),
        Mode::Reg { m: rm, option, s } => {
            let v = m.x(rm);
            let ext = match option {
                0b010 => v & 0xffff_ffff,
                0b110 => sx(v, 4),
                _ => v,
            };
            let sh = if s { scale.trailing_zeros() } else { 0 };
            (base.wrapping_add(ext << sh), None)
        }
    }
}

/// What the reference produced: the outcome, the new machine state, the new
/// monitor and the `Mem[]` accesses made.
type RefRun = (
    RefOutcome,
    RegisterFile,
    Vec<u8>,
    Option<(u64, u64)>,
    Vec<MemAcc>,
);

/// The reference interpreter. `monitor` is the exclusive monitor (address,
/// bytes) before the instruction.
fn reference(env: &Env, spec: &Spec, monitor: Option<(u64, u64)>) -> RefRun {
    let as_el0 = env.el0()
        || matches!(
            spec,
            Spec::Single {
                mode: Mode::Unpriv(_),
                ..
            }
        );
    let mut m = Ref {
        env,
        r: env.regs.clone(),
        w: env.window.clone(),
        big: env.big(),
        as_el0,
        mem_log: Default::default(),
    };
    let mut mon = monitor;
    let res = run_ref(&mut m, spec, &mut mon);
    match res {
        Ok(()) => {
            m.r.pc = m.r.pc.wrapping_add(4);
            m.r.pstate &= !(3 << 10);
            let log = m.mem_log.into_inner();
            (RefOutcome::Done, m.r, m.w, mon, log)
        }
        Err(o) => (o, env.regs.clone(), env.window.clone(), monitor, Vec::new()),
    }
}

fn run_ref(m: &mut Ref<'_>, spec: &Spec, mon: &mut Option<(u64, u64)>) -> RefResult<()> {
    match *spec {
        Spec::Single {
            bytes,
            load,
            signed,
            fp,
            t,
            n,
            mode,
        } => {
            let nb = u64::from(bytes);
            let (a, wb) = addr_mode(m, n, mode, nb, false);
            if mode == Mode::Ordered && !a.is_multiple_of(nb) {
                return Err(RefOutcome::Fault {
                    va: a,
                    kind: FaultKind::Alignment,
                    write: !load,
                });
            }
            m.check(a, nb, !load, true)?;
            if load {
                let v = m.rd(a, nb);
                if fp {
                    m.r.v[t as usize] = v;
                } else {
                    let v = v as u64;
                    let val = match signed {
                        None => v,
                        Some(true) => sx(v, nb),
                        Some(false) => sx(v, nb) & 0xffff_ffff,
                    };
                    m.set_x(t, val);
                }
            } else {
                let v = if fp {
                    m.r.v[t as usize] & mask(nb)
                } else {
                    u128::from(m.x(t)) & mask(nb)
                };
                m.wr(a, nb, v);
            }
            if let Some(w) = wb {
                m.set_xsp(n, w);
            }
        }
        Spec::Pair {
            bytes,
            load,
            signed,
            fp,
            t,
            t2,
            n,
            mode,
            ..
        } => {
            let nb = u64::from(bytes);
            let (a, wb) = addr_mode(m, n, mode, nb, true);
            m.check(a, nb, !load, true)?;
            m.check(a.wrapping_add(nb), nb, !load, true)?;
            if load {
                let d1 = m.rd(a, nb);
                let d2 = m.rd(a + nb, nb);
                if fp {
                    m.r.v[t as usize] = d1;
                    m.r.v[t2 as usize] = d2;
                } else if signed {
                    m.set_x(t, sx(d1 as u64, 4));
                    m.set_x(t2, sx(d2 as u64, 4));
                } else {
                    m.set_x(t, d1 as u64);
                    m.set_x(t2, d2 as u64);
                }
            } else {
                let (d1, d2) = if fp {
                    (m.r.v[t as usize] & mask(nb), m.r.v[t2 as usize] & mask(nb))
                } else {
                    (
                        u128::from(m.x(t)) & mask(nb),
                        u128::from(m.x(t2)) & mask(nb),
                    )
                };
                m.wr(a, nb, d1);
                m.wr(a + nb, nb, d2);
            }
            if let Some(w) = wb {
                m.set_xsp(n, w);
            }
        }
        Spec::Multi {
            load,
            form: (_, rpt, selem),
            q,
            esize,
            t,
            n,
            post,
        } => {
            // Pseudocode of LD1-4/ST1-4 (multiple structures), "Shared decode".
            let eb = u64::from(esize);
            let datasize = if q { 16 } else { 8 };
            let elements = datasize / eb;
            let a = m.xsp(n);
            // Check every access first (in order), then perform.
            let mut offs = 0u64;
            for _r in 0..rpt {
                for _e in 0..elements {
                    for _s in 0..selem {
                        m.check(a + offs, eb, !load, true)?;
                        offs += eb;
                    }
                }
            }
            let mut offs = 0u64;
            let mut vals: Vec<u128> = (0..32).map(|i| m.r.v[i]).collect();
            for r in 0..rpt {
                for e in 0..elements {
                    let mut tt = (t + r) % 32;
                    for _s in 0..selem {
                        let sh = 8 * e * eb;
                        if load {
                            if e == 0 {
                                vals[tt as usize] = 0; // V[tt] = rval (datasize), zero-extended
                            }
                            let d = m.rd(a + offs, eb);
                            vals[tt as usize] |= d << sh;
                        } else {
                            let d = (m.r.v[tt as usize] >> sh) & mask(eb);
                            m.wr(a + offs, eb, d);
                        }
                        offs += eb;
                        tt = (tt + 1) % 32;
                    }
                }
            }
            if load {
                for (i, v) in vals.into_iter().enumerate() {
                    m.r.v[i] = v;
                }
            }
            if let Some(rm) = post {
                let inc = if rm == 31 { offs } else { m.x(rm) };
                m.set_xsp(n, a.wrapping_add(inc));
            }
        }
        Spec::Lane {
            load,
            selem,
            esize,
            index,
            replicate,
            q,
            t,
            n,
            post,
        } => {
            let eb = u64::from(esize);
            let a = m.xsp(n);
            for s in 0..u64::from(selem) {
                m.check(a + s * eb, eb, !load, true)?;
            }
            let mut tt = t;
            let mut offs = 0;
            for _ in 0..selem {
                if replicate {
                    let d = m.rd(a + offs, eb);
                    let datasize = if q { 16 } else { 8 };
                    let mut v = 0u128;
                    for k in 0..datasize / eb {
                        v |= d << (8 * k * eb);
                    }
                    m.r.v[tt as usize] = v;
                } else {
                    let sh = 8 * u64::from(index) * eb;
                    if load {
                        let d = m.rd(a + offs, eb);
                        let old = m.r.v[tt as usize];
                        m.r.v[tt as usize] = (old & !(mask(eb) << sh)) | (d << sh);
                    } else {
                        let d = (m.r.v[tt as usize] >> sh) & mask(eb);
                        m.wr(a + offs, eb, d);
                    }
                }
                offs += eb;
                tt = (tt + 1) % 32;
            }
            if let Some(rm) = post {
                let inc = if rm == 31 { offs } else { m.x(rm) };
                m.set_xsp(n, a.wrapping_add(inc));
            }
        }
        Spec::Excl {
            load,
            pair,
            bytes,
            s,
            t,
            t2,
            n,
            ..
        } => {
            let nb = u64::from(bytes);
            let total = if pair { 2 * nb } else { nb };
            let a = m.xsp(n);
            if !a.is_multiple_of(total) {
                return Err(RefOutcome::Fault {
                    va: a,
                    kind: FaultKind::Alignment,
                    write: !load,
                });
            }
            m.check(a, total, !load, true)?;
            if load {
                let d = m.rd(a, total);
                if pair {
                    let (lo, hi) = (d & mask(nb), (d >> (8 * nb)) & mask(nb));
                    let (first, second) = if m.big { (hi, lo) } else { (lo, hi) };
                    m.set_x(t, first as u64);
                    m.set_x(t2, second as u64);
                } else {
                    m.set_x(t, d as u64);
                }
                *mon = Some((a, total));
            } else {
                let pass = *mon == Some((a, total));
                *mon = None;
                if pass {
                    let d = if pair {
                        let (x1, x2) = (
                            u128::from(m.x(t)) & mask(nb),
                            u128::from(m.x(t2)) & mask(nb),
                        );
                        if m.big {
                            (x1 << (8 * nb)) | x2
                        } else {
                            (x2 << (8 * nb)) | x1
                        }
                    } else {
                        u128::from(m.x(t)) & mask(nb)
                    };
                    // STXP: "a single-copy atomic update of the entire memory
                    // location" (both sizes).
                    m.wr_unit(a, total, d, total);
                }
                m.set_x(s, u64::from(!pass));
            }
        }
        Spec::Atomic {
            bytes, op, s, t, n, ..
        } => {
            let nb = u64::from(bytes);
            let a = m.xsp(n);
            if !a.is_multiple_of(nb) {
                return Err(RefOutcome::Fault {
                    va: a,
                    kind: FaultKind::Alignment,
                    write: true,
                });
            }
            m.check(a, nb, true, true)?;
            let old = m.rd(a, nb) as u64;
            let v = m.x(s) & (mask(nb) as u64);
            let (so, sv) = (sx(old, nb) as i64, sx(v, nb) as i64);
            let new = match op {
                AtomicKind::Add => old.wrapping_add(v),
                AtomicKind::Clr => old & !v,
                AtomicKind::Eor => old ^ v,
                AtomicKind::Set => old | v,
                AtomicKind::Smax => {
                    if so > sv {
                        old
                    } else {
                        v
                    }
                }
                AtomicKind::Smin => {
                    if so < sv {
                        old
                    } else {
                        v
                    }
                }
                AtomicKind::Umax => old.max(v),
                AtomicKind::Umin => old.min(v),
                AtomicKind::Swp => v,
            };
            m.wr(a, nb, u128::from(new) & mask(nb));
            m.set_x(t, old);
        }
        Spec::Cas {
            bytes,
            pair,
            s,
            t,
            n,
        } => {
            let nb = u64::from(bytes);
            let total = if pair { 2 * nb } else { nb };
            let a = m.xsp(n);
            if !a.is_multiple_of(total) {
                return Err(RefOutcome::Fault {
                    va: a,
                    kind: FaultKind::Alignment,
                    write: true,
                });
            }
            m.check(a, total, true, true)?;
            // CASP is single-copy atomic at its overall size.
            let data = m.rd_unit(a, total, total);
            let join = |m: &Ref<'_>, r1: u8| -> u128 {
                let (x1, x2) = (
                    u128::from(m.x(r1)) & mask(nb),
                    u128::from(m.x(r1.wrapping_add(1).min(31))) & mask(nb),
                );
                if m.big {
                    (x1 << (8 * nb)) | x2
                } else {
                    (x2 << (8 * nb)) | x1
                }
            };
            let (cmp, new) = if pair {
                (join(m, s), join(m, t))
            } else {
                (u128::from(m.x(s)) & mask(nb), u128::from(m.x(t)) & mask(nb))
            };
            if data == cmp {
                m.wr_unit(a, total, new, total);
            }
            if pair {
                let (lo, hi) = (data & mask(nb), (data >> (8 * nb)) & mask(nb));
                let (first, second) = if m.big { (hi, lo) } else { (lo, hi) };
                m.set_x(s, first as u64);
                m.set_x(s + 1, second as u64);
            } else {
                m.set_x(s, data as u64);
            }
        }
        Spec::DcZva { t } => {
            if m.env.el0() && m.env.sctlr & SCTLR_DZE == 0 {
                return Err(RefOutcome::Unsupported);
            }
            let block = 4u64 << m.env.dczid;
            let xt = m.x(t);
            let a = xt & !(block - 1);
            // Any Device-typed byte: alignment fault at Xt (the DC ZVA rule).
            for i in 0..block {
                let off = a + i - WIN;
                let pc = m.env.pages[(off / PAGE) as usize];
                if pc.unmapped {
                    return Err(RefOutcome::Fault {
                        va: xt,
                        kind: FaultKind::Translation,
                        write: true,
                    });
                }
                if pc.device_type {
                    return Err(RefOutcome::Fault {
                        va: xt,
                        kind: FaultKind::Alignment,
                        write: true,
                    });
                }
                if pc.read_only {
                    return Err(RefOutcome::Fault {
                        va: xt,
                        kind: FaultKind::Permission,
                        write: true,
                    });
                }
                if pc.backing == Backing::Nothing {
                    return Err(RefOutcome::NoDevice { va: a + i });
                }
            }
            m.mem_log.borrow_mut().push(MemAcc {
                a,
                n: block,
                unit: 1,
                write: true,
            });
            for i in 0..block {
                m.w[(a + i - WIN) as usize] = 0;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Spec generation.

/// Distinct registers 0..=30 (avoiding `avoid`).
fn regs_distinct(rng: &mut Rng, k: usize, avoid: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    while out.len() < k {
        let r = rng.below(31) as u8;
        if !out.contains(&r) && !avoid.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// Maybe the zero register for a data operand.
fn data_reg(rng: &mut Rng, r: u8) -> u8 {
    if rng.chance(1, 10) { 31 } else { r }
}

/// The access address: a third crossing the page boundary, a third near it,
/// a third anywhere in the window.
fn pick_addr(rng: &mut Rng, span: u64, align: u64) -> u64 {
    let max = (2 * PAGE - span) as i64;
    let off = match rng.below(3) {
        0 if span > 1 => PAGE as i64 - 1 - rng.below(span - 1) as i64,
        0 | 1 => PAGE as i64 - span as i64 - 8 + rng.below(2 * span + 16) as i64,
        _ => rng.below(max as u64 + 1) as i64,
    };
    let mut a = WIN + off.clamp(0, max) as u64;
    if rng.chance(1, 2) {
        a &= !(align - 1);
    }
    a
}

/// Set the base register (n = 31: the current SP) to `v`.
fn set_base(env: &mut Env, n: u8, v: u64) {
    if n == 31 {
        let sp = env.sp();
        env.regs.set(sp, v).unwrap();
    } else {
        env.regs.x[n as usize] = v;
    }
}

/// A single/pair addressing mode for an access at `a`; sets the base (and
/// index) registers. `pair` selects imm7 forms.
fn gen_mode(rng: &mut Rng, env: &mut Env, n: u8, a: u64, scale: u64, pair: bool, idx: u8) -> Mode {
    let choice = rng.below(if pair { 3 } else { 6 });
    match (pair, choice) {
        (true, 0) | (false, 0) => {
            let imm = if pair {
                rng.below(128) as i64 - 64
            } else {
                rng.below(64) as i64
            };
            set_base(env, n, a.wrapping_sub((imm as u64).wrapping_mul(scale)));
            Mode::Offset(imm)
        }
        (_, 1) => {
            let imm = if pair {
                rng.below(128) as i64 - 64
            } else {
                rng.below(512) as i64 - 256
            };
            set_base(
                env,
                n,
                a.wrapping_sub((imm as u64).wrapping_mul(if pair { scale } else { 1 })),
            );
            Mode::Pre(imm)
        }
        (_, 2) => {
            let imm = if pair {
                rng.below(128) as i64 - 64
            } else {
                rng.below(512) as i64 - 256
            };
            set_base(env, n, a);
            Mode::Post(imm)
        }
        (false, 3) => {
            let imm = rng.below(512) as i64 - 256;
            set_base(env, n, a.wrapping_sub(imm as u64));
            Mode::Unscaled(imm)
        }
        (false, 4) => {
            let imm = rng.below(512) as i64 - 256;
            set_base(env, n, a.wrapping_sub(imm as u64));
            Mode::Unpriv(imm)
        }
        _ => {
            let option = rng.pick(&[0b010u8, 0b011, 0b110, 0b111]);
            let s = rng.chance(1, 2);
            let sh = if s { scale.trailing_zeros() } else { 0 };
            // An index whose extension matters: garbage in the top half for
            // the W forms, negative values sometimes.
            let disp: i64 = rng.below(256) as i64 - 128;
            let ext = (disp as u64) << sh;
            let xm = match option {
                0b010 => (rng.next() << 32) | (disp as u64 & 0xffff_ffff),
                0b110 => (rng.next() << 32) | (disp as u64 & 0xffff_ffff),
                _ => disp as u64,
            };
            let ext = if option == 0b010 {
                (xm & 0xffff_ffff) << sh
            } else {
                ext
            };
            env.regs.x[idx as usize] = xm;
            set_base(env, n, a.wrapping_sub(ext));
            Mode::Reg { m: idx, option, s }
        }
    }
}

fn base_reg(rng: &mut Rng, r: u8) -> u8 {
    if rng.chance(1, 3) { 31 } else { r }
}

fn gen_spec(rng: &mut Rng, env: &mut Env, class: u8) -> Spec {
    let rs = regs_distinct(rng, 5, &[]);
    match class {
        // GPR single.
        0 | 2 => {
            let fp = class == 2;
            let bytes: u8 = if fp {
                rng.pick(&[1, 2, 4, 8, 16])
            } else {
                rng.pick(&[1, 2, 4, 8])
            };
            let load = rng.chance(1, 2);
            let signed = if !fp && load && bytes < 8 && rng.chance(1, 2) {
                Some(bytes == 4 || rng.chance(1, 2))
            } else {
                None
            };
            let n = base_reg(rng, rs[0]);
            let a = pick_addr(rng, u64::from(bytes), u64::from(bytes));
            let mut mode = gen_mode(rng, env, n, a, u64::from(bytes), false, rs[2]);
            if fp && matches!(mode, Mode::Unpriv(_)) {
                mode = Mode::Unscaled(0);
                set_base(env, n, a);
            }
            let t = if fp { rs[1] } else { data_reg(rng, rs[1]) };
            let (mut load, mut signed, mut bytes) = (load, signed, bytes);
            if rng.chance(1, 8) {
                // LDR (literal): W/X/LDRSW or S/D/Q, first page only (imm19).
                load = true;
                (bytes, signed) = if fp {
                    (rng.pick(&[4, 8, 16]), None)
                } else {
                    rng.pick(&[(4, None), (8, None), (4, Some(true))])
                };
                let a = WIN + 4 * rng.below(0x3fc);
                mode = Mode::Literal(((a - CODE) / 4) as i64);
            } else if !fp && signed.is_none() && rng.chance(1, 8) {
                // LDAR/STLR.
                mode = Mode::Ordered;
                set_base(env, n, a);
            }
            Spec::Single {
                bytes,
                load,
                signed,
                fp,
                t,
                n,
                mode,
            }
        }
        // Pairs.
        1 | 3 => {
            let fp = class == 3;
            let bytes: u8 = if fp {
                rng.pick(&[4, 8, 16])
            } else {
                rng.pick(&[4, 8])
            };
            let load = rng.chance(1, 2);
            let signed = !fp && load && bytes == 4 && rng.chance(1, 3);
            let n = base_reg(rng, rs[0]);
            let a = pick_addr(rng, 2 * u64::from(bytes), u64::from(bytes));
            let mode = gen_mode(rng, env, n, a, u64::from(bytes), true, 0);
            let nontemporal = matches!(mode, Mode::Offset(_)) && !signed && rng.chance(1, 3);
            let (t, t2) = if fp {
                (rs[1], rs[2])
            } else if load {
                (data_reg(rng, rs[1]), rs[2])
            } else {
                (data_reg(rng, rs[1]), data_reg(rng, rs[2]))
            };
            Spec::Pair {
                bytes,
                load,
                signed,
                fp,
                nontemporal,
                t,
                t2,
                n,
                mode,
            }
        }
        // Multiple structures.
        4 => {
            let form = rng.pick(&[
                (0b0000u32, 1u8, 4u8),
                (0b0010, 4, 1),
                (0b0100, 1, 3),
                (0b0110, 3, 1),
                (0b0111, 1, 1),
                (0b1000, 1, 2),
                (0b1010, 2, 1),
            ]);
            let q = rng.chance(1, 2);
            let esize: u8 = if q || form.2 == 1 {
                rng.pick(&[1, 2, 4, 8])
            } else {
                rng.pick(&[1, 2, 4])
            };
            let total = u64::from(form.1) * u64::from(form.2) * if q { 16 } else { 8 };
            let n = base_reg(rng, rs[0]);
            let a = pick_addr(rng, total, u64::from(esize));
            set_base(env, n, a);
            let post = match rng.below(3) {
                0 => None,
                1 => Some(31),
                _ => Some(rs[1]),
            };
            Spec::Multi {
                load: rng.chance(1, 2),
                form,
                q,
                esize,
                t: rng.below(32) as u8,
                n,
                post,
            }
        }
        // Single structure / replicate.
        5 => {
            let selem = rng.pick(&[1u8, 2, 3, 4]);
            let replicate = rng.chance(1, 3);
            let load = replicate || rng.chance(1, 2);
            let esize: u8 = rng.pick(&[1, 2, 4, 8]);
            let q = rng.chance(1, 2);
            let index = if replicate {
                0
            } else {
                rng.below(16 / u64::from(esize)) as u8
            };
            let n = base_reg(rng, rs[0]);
            let a = pick_addr(rng, u64::from(selem) * u64::from(esize), u64::from(esize));
            set_base(env, n, a);
            let post = match rng.below(3) {
                0 => None,
                1 => Some(31),
                _ => Some(rs[1]),
            };
            Spec::Lane {
                load,
                selem,
                esize,
                index,
                replicate,
                q,
                t: rng.below(32) as u8,
                n,
                post,
            }
        }
        // Exclusives.
        6 => {
            let pair = rng.chance(1, 3);
            let bytes: u8 = if pair {
                rng.pick(&[4, 8])
            } else {
                rng.pick(&[1, 2, 4, 8])
            };
            let total = u64::from(bytes) * if pair { 2 } else { 1 };
            let n = base_reg(rng, rs[0]);
            let a = pick_addr(rng, total, total);
            set_base(env, n, a);
            Spec::Excl {
                load: rng.chance(1, 2),
                pair,
                bytes,
                s: rs[3],
                t: data_reg(rng, rs[1]),
                t2: rs[2],
                n,
                ordered: rng.chance(1, 2),
            }
        }
        // Atomics.
        7 => {
            let bytes: u8 = rng.pick(&[1, 2, 4, 8]);
            let n = base_reg(rng, rs[0]);
            let a = pick_addr(rng, u64::from(bytes), u64::from(bytes));
            set_base(env, n, a);
            Spec::Atomic {
                bytes,
                op: rng.pick(&[
                    AtomicKind::Add,
                    AtomicKind::Clr,
                    AtomicKind::Eor,
                    AtomicKind::Set,
                    AtomicKind::Smax,
                    AtomicKind::Smin,
                    AtomicKind::Umax,
                    AtomicKind::Umin,
                    AtomicKind::Swp,
                ]),
                s: data_reg(rng, rs[1]),
                t: data_reg(rng, rs[2]),
                n,
                a: rng.chance(1, 2),
                r: rng.chance(1, 2),
            }
        }
        // CAS / CASP.
        8 => {
            let pair = rng.chance(1, 2);
            let bytes: u8 = if pair {
                rng.pick(&[4, 8])
            } else {
                rng.pick(&[1, 2, 4, 8])
            };
            let total = u64::from(bytes) * if pair { 2 } else { 1 };
            let n = base_reg(rng, rs[0]);
            let a = pick_addr(rng, total, total);
            set_base(env, n, a);
            let (s, t) = if pair {
                // Even, distinct pairs, not overlapping the base.
                let mut ev = Vec::new();
                while ev.len() < 2 {
                    let r = (rng.below(15) * 2) as u8;
                    if !ev.contains(&r) && r != n && r + 1 != n {
                        ev.push(r);
                    }
                }
                (ev[0], ev[1])
            } else {
                (rs[1], data_reg(rng, rs[2]))
            };
            // Make the comparison succeed half the time.
            if rng.chance(1, 2) && a >= WIN && a + total <= WIN + 2 * PAGE {
                let off = (a - WIN) as usize;
                let mut data = 0u128;
                for i in 0..total as usize {
                    let b = u128::from(env.window[off + i]);
                    if env.big() {
                        data = (data << 8) | b;
                    } else {
                        data |= b << (8 * i);
                    }
                }
                let nb = u64::from(bytes);
                if pair {
                    let (lo, hi) = (
                        (data & mask(nb)) as u64,
                        ((data >> (8 * nb)) & mask(nb)) as u64,
                    );
                    let (f, sc) = if env.big() { (hi, lo) } else { (lo, hi) };
                    env.regs.x[s as usize] = f | ((rng.next() << 32) * u64::from(nb == 4));
                    env.regs.x[s as usize + 1] = sc;
                } else {
                    env.regs.x[s as usize] =
                        data as u64 | ((rng.next() << 32) * u64::from(nb == 4));
                }
                // Sometimes differ in one bit only, anywhere in the compared bytes.
                if rng.chance(1, 3) {
                    let r = if pair && rng.chance(1, 2) {
                        s as usize + 1
                    } else {
                        s as usize
                    };
                    env.regs.x[r] ^= 1 << rng.below(8 * nb);
                }
            }
            Spec::Cas {
                bytes,
                pair,
                s,
                t,
                n,
            }
        }
        // DC ZVA.
        _ => {
            let t = rs[0];
            let block = 4u64 << env.dczid;
            let a = pick_addr(rng, block, 1);
            env.regs.x[t as usize] = a;
            Spec::DcZva { t }
        }
    }
}

// ---------------------------------------------------------------------------
// Running one case.

fn to_ref(o: &Outcome) -> RefOutcome {
    match o {
        Outcome::Emulated { .. } => RefOutcome::Done,
        Outcome::NoDevice { va, .. } => RefOutcome::NoDevice { va: *va },
        Outcome::GuestFault(g) => RefOutcome::Fault {
            va: g.va,
            kind: g.fault.kind,
            write: g.write,
        },
        Outcome::Unsupported { .. } => RefOutcome::Unsupported,
        o => panic!("an outcome this test does not know: {o:?}"),
    }
}

/// Whether the spec's access span stays inside the window (the generator
/// aims for it; a few register-offset/imm combinations leave it).
fn span_ok(spec: &Spec, env: &Env) -> bool {
    let (a, len) = span(spec, env);
    a >= WIN && a.checked_add(len).is_some_and(|e| e <= WIN + 2 * PAGE)
}

/// The first byte and length of the bytes the instruction accesses.
fn span(spec: &Spec, env: &Env) -> (u64, u64) {
    let mut m = Ref {
        env,
        r: env.regs.clone(),
        w: vec![],
        big: false,
        as_el0: false,
        mem_log: Default::default(),
    };
    let (a, len) = match *spec {
        Spec::Single { bytes, n, mode, .. } => (
            addr_mode(&m, n, mode, u64::from(bytes), false).0,
            u64::from(bytes),
        ),
        Spec::Pair { bytes, n, mode, .. } => (
            addr_mode(&m, n, mode, u64::from(bytes), true).0,
            2 * u64::from(bytes),
        ),
        Spec::Multi { form, q, n, .. } => (
            m.xsp(n),
            u64::from(form.1) * u64::from(form.2) * if q { 16 } else { 8 },
        ),
        Spec::Lane {
            selem, esize, n, ..
        } => (m.xsp(n), u64::from(selem) * u64::from(esize)),
        Spec::Excl { pair, bytes, n, .. } | Spec::Cas { pair, bytes, n, .. } => {
            (m.xsp(n), u64::from(bytes) * if pair { 2 } else { 1 })
        }
        Spec::Atomic { bytes, n, .. } => (m.xsp(n), u64::from(bytes)),
        Spec::DcZva { t } => {
            let b = 4u64 << env.dczid;
            (m.x(t) & !(b - 1), b)
        }
    };
    m.w.clear();
    (a, len)
}

/// Run one random case of `class` from `seed`; returns an error text on mismatch.
fn run_case(seed: u64, class: u8) -> Result<Option<String>, String> {
    let mut rng = Rng(seed);
    let mut env = gen_env(&mut rng);
    let spec = gen_spec(&mut rng, &mut env, class);
    if !span_ok(&spec, &env) {
        return Ok(None);
    }
    let word = encode(&spec);
    // Exclusive stores: sometimes arm the monitor first with a matching (or
    // not) load-exclusive, through the emulator itself.
    let mut emu = Emulator::new();
    let mut monitor = None;
    if let Spec::Excl {
        load: false,
        pair,
        bytes,
        n,
        ..
    } = spec
        && rng.chance(2, 3)
    {
        let m = Ref {
            env: &env,
            r: env.regs.clone(),
            w: vec![],
            big: false,
            as_el0: false,
            mem_log: Default::default(),
        };
        let a = m.xsp(n);
        let total = u64::from(bytes) * if pair { 2 } else { 1 };
        let la = if rng.chance(3, 4) { a } else { a ^ 0x40 };
        let pre = Spec::Excl {
            load: true,
            pair,
            bytes,
            s: 31,
            t: 2,
            t2: 3,
            n: 0,
            ordered: false,
        };
        // Arm through a RAM-only scratch machine at the same VA: the monitor
        // holds the VA, so any backing works. Use a copy of the environment
        // where the window is RAM and normal memory.
        let mut e2 = env.clone();
        for p in &mut e2.pages {
            *p = PageCfg {
                backing: Backing::Ram,
                device_type: !env.mmu,
                attr: 0,
                read_only: false,
                unmapped: false,
            };
        }
        e2.regs.x[0] = la;
        e2.sctlr &= !SCTLR_A;
        let (ram2, mut bus2, mut regs2) = materialise(&e2, encode(&pre));
        let o = emu
            .emulate(&mut regs2, &ram2, &mut bus2, None)
            .map_err(|e| format!("arming load-exclusive failed: {e}"))?;
        if matches!(o, Outcome::Emulated { .. }) {
            monitor = Some((la, total));
        }
    }
    let (exp_out, exp_regs, exp_win, _, mem_log) = reference(&env, &spec, monitor);
    let (ram, mut bus, mut regs) = materialise(&env, word);
    let before = regs.clone();
    let mut wide = WideBus {
        bus: &mut bus,
        max: env.bus_max,
    };
    let got = emu
        .emulate(&mut regs, &ram, &mut wide, None)
        .map_err(|e| format!("{spec:?} word {word:#010x}: error {e}\n{env:?}"))?;
    let got_out = to_ref(&got);
    let ctx = || {
        format!(
            "seed {seed:#x} class {class}\nspec {spec:?}\nword {word:#010x}\npages {:?} mmu {} mode {} sctlr {:#x}\noutcome {got:?}",
            env.pages, env.mmu, env.mode, env.sctlr
        )
    };
    if got_out != exp_out {
        return Err(format!("outcome: expected {exp_out:?}\n{}", ctx()));
    }
    let win = window_after(&env, &ram, &bus);
    if exp_out == RefOutcome::Done {
        // Compare registers except the system registers we added.
        let mut r = regs.clone();
        r.sys = exp_regs.sys;
        if r != exp_regs {
            let diff: Vec<String> = (0..31)
                .filter(|&i| r.x[i] != exp_regs.x[i])
                .map(|i| format!("x{i}: got {:#x} want {:#x}", r.x[i], exp_regs.x[i]))
                .chain(
                    (0..32)
                        .filter(|&i| r.v[i] != exp_regs.v[i])
                        .map(|i| format!("v{i}: got {:#x} want {:#x}", r.v[i], exp_regs.v[i])),
                )
                .collect();
            return Err(format!(
                "registers differ: {diff:?} sp0 {:#x}/{:#x} sp1 {:#x}/{:#x} pc {:#x}/{:#x} pstate {:#x}/{:#x}\n{}",
                r.sp_el0,
                exp_regs.sp_el0,
                r.sp_el1,
                exp_regs.sp_el1,
                r.pc,
                exp_regs.pc,
                r.pstate,
                exp_regs.pstate,
                ctx()
            ));
        }
        if win != exp_win {
            let first = win.iter().zip(&exp_win).position(|(a, b)| a != b).unwrap();
            return Err(format!(
                "memory differs first at window offset {first:#x}\n{}",
                ctx()
            ));
        }
    } else {
        // Nothing may change on a fault, no-device or unsupported outcome.
        if regs != before || win != env.window || !bus.log().is_empty() {
            return Err(format!("state changed on {exp_out:?}\n{}", ctx()));
        }
    }
    // Device accesses: powers of two, naturally aligned, at most the bus's
    // limit, and per page as the memory type requires.
    if exp_out == RefOutcome::Done {
        check_bus_log(&env, &mem_log, bus.log())
            .map_err(|e| format!("{e}\nbus max {}\n{}", env.bus_max, ctx()))?;
    }
    // A category for the coverage summary.
    let cat = match &exp_out {
        RefOutcome::Done => {
            let (a, len) = span(&spec, &env);
            let crosses = a < WIN + PAGE && a + len > WIN + PAGE;
            let b = |p: PageCfg| match p.backing {
                Backing::Ram => "RAM",
                Backing::Device => "device",
                Backing::Nothing => "nothing",
            };
            if crosses {
                format!("done: crosses page {}|{}", b(env.pages[0]), b(env.pages[1]))
            } else if bus.log().is_empty() {
                "done: RAM only".to_string()
            } else if env.pages[((a - WIN) / PAGE) as usize].gathers(env.mmu) {
                "done: device, gathering".to_string()
            } else {
                "done: device, non-gathering".to_string()
            }
        }
        RefOutcome::NoDevice { .. } => "no device".to_string(),
        RefOutcome::Fault { kind, .. } => format!("fault {kind:?}"),
        RefOutcome::Unsupported => "unsupported".to_string(),
    };
    Ok(Some(cat))
}

/// The widest access the emulator may make with a bus answering `max` to
/// `max_access_size` (the documented rule: at least 8, at most 4096, rounded
/// down to a power of two).
fn effective_max(max: usize) -> u64 {
    let m = max.clamp(8, 4096) as u64;
    1 << (63 - m.leading_zeros())
}

/// Check the bus log of an emulated instruction against the reference's
/// `Mem[]` accesses (docs/emulator.md, "Gathering"):
///
/// - every access is a power of two in size, naturally aligned, at most the
///   effective `max_access_size`;
/// - on a device page whose memory type does not permit gathering, the
///   accesses are exactly the single-copy atomic parts of each `Mem[]` access
///   in order (one per element; 8-byte halves of a 128-bit SIMD&FP value;
///   a 16-byte STXP/CASP as one access when the bus takes 16 bytes);
/// - on a device page that permits gathering (Normal, Device-GRE), the
///   accesses cover exactly the bytes of the `Mem[]` accesses in order, and
///   no two consecutive ones could have been one naturally aligned access
///   within the limit (they are gathered as far as the rules allow).
fn check_bus_log(env: &Env, mem: &[MemAcc], log: &[BusAccess]) -> Result<(), String> {
    let max = effective_max(env.bus_max);
    for &BusAccess { ipa, len, .. } in log {
        let l = len as u64;
        if !l.is_power_of_two() || ipa % l != 0 || l > max {
            return Err(format!("bad bus access {ipa:#x}+{len} (limit {max})"));
        }
    }
    for (page, pc) in env.pages.iter().enumerate() {
        if pc.backing != Backing::Device {
            continue;
        }
        let va0 = WIN + page as u64 * PAGE;
        let ipa0 = env.page_ipa(page);
        let got: Vec<BusAccess> = log
            .iter()
            .filter(|a| (ipa0..ipa0 + PAGE).contains(&a.ipa))
            .copied()
            .collect();
        let in_page = |va: u64| (va0..va0 + PAGE).contains(&va);
        if !pc.gathers(env.mmu) {
            let mut want = Vec::new();
            for m in mem {
                let part = m.unit.min(max);
                let mut a = m.a;
                while a < m.a + m.n {
                    if in_page(a) {
                        let len = part as usize;
                        let ipa = ipa0 + (a - va0);
                        want.push(if m.write {
                            BusAccess::write(ipa, len)
                        } else {
                            BusAccess::read(ipa, len)
                        });
                    }
                    a += part;
                }
            }
            if got != want {
                return Err(format!(
                    "page {page} (no gathering): bus accesses {got:?}, want {want:?}"
                ));
            }
        } else {
            let want: Vec<(u64, bool)> = mem
                .iter()
                .flat_map(|m| (m.a..m.a + m.n).map(move |a| (a, m.write)))
                .filter(|&(a, _)| in_page(a))
                .map(|(a, w)| (ipa0 + (a - va0), w))
                .collect();
            let bytes: Vec<(u64, bool)> = got
                .iter()
                .flat_map(|b| (b.ipa..b.ipa + b.len as u64).map(move |a| (a, b.write)))
                .collect();
            if bytes != want {
                return Err(format!(
                    "page {page} (gathering): bus accesses {got:?} do not cover the bytes accessed"
                ));
            }
            for w in got.windows(2) {
                let (a, b) = (w[0], w[1]);
                let s = a.len as u64;
                if a.write == b.write
                    && a.len == b.len
                    && a.ipa + s == b.ipa
                    && a.ipa % (2 * s) == 0
                    && 2 * s <= max
                {
                    return Err(format!(
                        "page {page} (gathering): {a:?} and {b:?} should be one access"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

fn check_class(class: u8) {
    let cats = std::cell::RefCell::new(std::collections::BTreeMap::<String, u32>::new());
    let skipped = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&any::<u64>(), |seed| {
        match run_case(seed, class) {
            Ok(Some(c)) => *cats.borrow_mut().entry(c).or_insert(0) += 1,
            Ok(None) => skipped.set(skipped.get() + 1),
            Err(e) => return Err(TestCaseError::fail(e)),
        }
        Ok(())
    });
    let cats = cats.into_inner();
    let run: u32 = cats.values().sum();
    eprintln!(
        "class {class}: {run} cases compared, {} out-of-window skipped: {cats:?}",
        skipped.get()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        run > cases() / 2,
        "too many skipped cases: {}",
        skipped.get()
    );
    // The generator must reach emulated device accesses and faults.
    if cases() >= 1000 {
        assert!(cats.contains_key("done: device, gathering"), "{cats:?}");
        // DC ZVA to any Device memory is an alignment fault.
        if class != 9 {
            assert!(cats.contains_key("done: device, non-gathering"), "{cats:?}");
        }
        assert!(cats.keys().any(|k| k.starts_with("fault")), "{cats:?}");
    }
}

#[test]
fn gpr_single() {
    check_class(0);
}

#[test]
fn gpr_pair() {
    check_class(1);
}

#[test]
fn fp_single() {
    check_class(2);
}

#[test]
fn fp_pair() {
    check_class(3);
}

#[test]
fn simd_multiple() {
    check_class(4);
}

#[test]
fn simd_single_and_replicate() {
    check_class(5);
}

#[test]
fn exclusive() {
    check_class(6);
}

#[test]
fn atomic() {
    check_class(7);
}

#[test]
fn compare_and_swap() {
    check_class(8);
}

#[test]
fn dc_zva() {
    check_class(9);
}
