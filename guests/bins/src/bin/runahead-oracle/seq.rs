// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Random instruction sequences for the run-ahead oracle.
//!
//! A sequence is up to [`MAXW`] words ending in `svc #SVC_DONE`:
//!
//! ```text
//!       a load/store to the device without a valid syndrome (the exit)
//! A:    0-4 instructions
//! loop: 2-8 instructions (body), repeated 1-5 times by
//!                                   subs CNT, CNT, #1; b.ne body
//!                               or  sub CNT, CNT, #1; cbnz CNT, body
//! B:    0-4 instructions
//!       svc #0x77
//! ```
//!
//! Instructions are integer data processing of every family the run-ahead
//! interpreter models, forward branches (B.cond, CBZ/CBNZ, TBZ/TBNZ, B, BL,
//! ADR + RET) inside their block, DMB/DSB/ISB, now and then an instruction
//! run-ahead stops at (NOP, MRS), and loads/stores through three pointer
//! registers: P0 and P1 point into the sequence's slot of the device-side
//! region, P2 into its slot of a RAM scratch region. Registers have roles:
//! pointers are only changed by writeback and `add P, P, #imm` (so the two
//! runs differ in them by a known distance), CNT only by the loop control,
//! IDX (a small index) never; everything else is data. Offsets and pointer
//! steps are bounded so that every access stays inside the slot.

use guest_rt::rng::Rng;

/// Bytes of one sequence's slot (per region).
pub const SLOT: u64 = 4096;
/// Most words of a sequence.
pub const MAXW: usize = 48;
/// `svc #0x77`.
pub const SVC: u32 = guest_rt::run::SVC_WORD;

/// Register roles.
#[derive(Clone, Copy, Debug)]
pub struct Roles {
    /// P0, P1 (device side), P2 (RAM scratch).
    pub p: [u8; 3],
    /// Loop counter.
    pub cnt: u8,
    /// Index register for register-offset addressing.
    pub idx: u8,
}

/// A generated sequence.
#[derive(Clone, Debug)]
pub struct Seq {
    /// The code.
    pub words: [u32; MAXW],
    /// Number of words.
    pub n: usize,
    /// Initial x0..x30; pointer registers hold offsets within their slot.
    pub x: [u64; 31],
    /// Register roles.
    pub roles: Roles,
    /// Initial NZCV (bits 31:28).
    pub nzcv: u64,
    /// Initial q0..q31.
    pub v: [u128; 32],
}

/// Start offsets of the pointers are in `[LO, LO + SPREAD)`; their total
/// forward (backward) movement is at most `UP` (`DOWN`); immediate offsets
/// are in `[-256, 512)`. Every access is then inside `[256, 3600)` of the
/// slot.
const LO: u64 = 1024;
const SPREAD: u64 = 512;
const UP: i64 = 1280;
const DOWN: i64 = 256;

struct Gen<'a> {
    rng: &'a mut Rng,
    aligned: bool,
    lse: bool,
    roles: Roles,
    data: [u8; 31],
    ndata: usize,
    up: [i64; 3],
    down: [i64; 3],
    /// How many times the instruction being generated may run (the loop
    /// count inside the body, else 1).
    mult: i64,
    /// Only P0/P1 (the device side).
    device_only: bool,
    /// First of the four SIMD&FP registers the sequence uses.
    vbase: u32,
    words: [u32; MAXW],
    n: usize,
}

fn r(x: u8) -> u32 {
    u32::from(x)
}

impl Gen<'_> {
    fn below(&mut self, n: u64) -> u32 {
        self.rng.below(n) as u32
    }

    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.rng.chance(num, den)
    }

    fn push(&mut self, w: u32) {
        if let Some(s) = self.words.get_mut(self.n) {
            *s = w;
            self.n += 1;
        }
    }

    /// A SIMD&FP register of the sequence's window of four.
    fn vreg(&mut self) -> u32 {
        (self.vbase + self.below(4)) % 32
    }

    /// A data register.
    fn d(&mut self) -> u32 {
        let i = self.rng.below(self.ndata as u64) as usize;
        r(self.data.get(i).copied().unwrap_or(0))
    }

    /// A source register: data, CNT, IDX or (if `zr`) the zero register.
    fn src(&mut self, zr: bool) -> u32 {
        match self.below(20) {
            0 | 1 => r(self.roles.cnt),
            2 | 3 => r(self.roles.idx),
            4 if zr => 31,
            _ => self.d(),
        }
    }

    /// A destination that may be the zero register (flag-setting forms).
    fn dz(&mut self) -> u32 {
        if self.chance(1, 6) { 31 } else { self.d() }
    }

    /// Take `step` (bytes, signed) from pointer `p`'s movement budget.
    fn step_ok(&mut self, p: usize, step: i64) -> bool {
        let cost = step.saturating_mul(self.mult);
        if step >= 0 {
            if self.up[p] >= cost {
                self.up[p] -= cost;
                return true;
            }
        } else if self.down[p] >= -cost {
            self.down[p] += cost;
            return true;
        }
        false
    }

    /// A pointer step for writeback: a multiple of `unit` (16 when aligned)
    /// in about [-16, 64].
    fn step(&mut self, unit: i64) -> i64 {
        let unit = if self.aligned { unit.max(16) } else { unit };
        let k = i64::from(self.below(7)) - 1; // -1..=5
        k * unit.min(16)
    }

    /// One integer data-processing instruction.
    fn dp(&mut self) -> u32 {
        let sf = u32::from(self.chance(1, 2));
        let lim = if sf == 1 { 64 } else { 32 };
        match self.below(15) {
            0 => {
                // ADD/SUB(S) immediate (register 31 would be SP: not used).
                let (op, s) = (self.below(2), self.below(2));
                let rd = if s == 1 { self.dz() } else { self.d() };
                let rn = self.src(false);
                (sf << 31)
                    | (op << 30)
                    | (s << 29)
                    | 0x1100_0000
                    | (self.below(2) << 22)
                    | (self.below(4096) << 10)
                    | (rn << 5)
                    | rd
            }
            1 => {
                // ADD/SUB(S) shifted register.
                let (op, s) = (self.below(2), self.below(2));
                let rd = if s == 1 { self.dz() } else { self.d() };
                let (rn, rm) = (self.src(true), self.src(true));
                (sf << 31)
                    | (op << 30)
                    | (s << 29)
                    | 0x0b00_0000
                    | (self.below(3) << 22)
                    | (rm << 16)
                    | (self.below(lim) << 10)
                    | (rn << 5)
                    | rd
            }
            2 => {
                // ADD/SUB(S) extended register (Rn/Rd 31 = SP: not used).
                let (op, s) = (self.below(2), self.below(2));
                let rd = if s == 1 { self.dz() } else { self.d() };
                let (rn, rm) = (self.src(false), self.src(true));
                (sf << 31)
                    | (op << 30)
                    | (s << 29)
                    | 0x0b20_0000
                    | (rm << 16)
                    | (self.below(8) << 13)
                    | (self.below(5) << 10)
                    | (rn << 5)
                    | rd
            }
            3 => {
                // ADC/SBC(S).
                let (op, s) = (self.below(2), self.below(2));
                let (rd, rn, rm) = (self.d(), self.src(true), self.src(true));
                (sf << 31) | (op << 30) | (s << 29) | 0x1a00_0000 | (rm << 16) | (rn << 5) | rd
            }
            4 => {
                // Logical immediate with a valid bitmask.
                let opc = self.below(4);
                let rd = if opc == 3 { self.dz() } else { self.d() };
                let rn = self.src(true);
                loop {
                    let n = if sf == 1 { self.below(2) } else { 0 };
                    let imms = self.below(64);
                    let immr = self.below(64);
                    let comb = (n << 6) | (!imms & 0x3f);
                    if comb < 2 {
                        continue; // len < 1
                    }
                    let len = 31 - comb.leading_zeros();
                    let levels = (1u32 << len) - 1;
                    if imms & levels == levels {
                        continue; // all ones
                    }
                    break (sf << 31)
                        | (opc << 29)
                        | 0x1200_0000
                        | (n << 22)
                        | (immr << 16)
                        | (imms << 10)
                        | (rn << 5)
                        | rd;
                }
            }
            5 => {
                // Logical shifted register (AND..BICS, any shift incl. ROR).
                let opc = self.below(4);
                let rd = if opc == 3 { self.dz() } else { self.d() };
                let (rn, rm) = (self.src(true), self.src(true));
                (sf << 31)
                    | (opc << 29)
                    | 0x0a00_0000
                    | (self.below(4) << 22)
                    | (self.below(2) << 21)
                    | (rm << 16)
                    | (self.below(lim) << 10)
                    | (rn << 5)
                    | rd
            }
            6 => {
                // MOVN/MOVZ/MOVK.
                let opc = [0, 2, 3][self.below(3) as usize];
                let hw = self.below(if sf == 1 { 4 } else { 2 });
                (sf << 31)
                    | (opc << 29)
                    | 0x1280_0000
                    | (hw << 21)
                    | (self.below(65536) << 5)
                    | self.d()
            }
            7 => {
                // ADR/ADRP: code addresses, identical in both runs.
                let imm = self.below(1 << 21);
                (self.below(2) << 31)
                    | ((imm & 3) << 29)
                    | 0x1000_0000
                    | ((imm >> 2) << 5)
                    | self.d()
            }
            8 => {
                // SBFM/BFM/UBFM.
                let opc = self.below(3);
                let (rd, rn) = (self.d(), self.src(true));
                (sf << 31)
                    | (opc << 29)
                    | 0x1300_0000
                    | (sf << 22)
                    | (self.below(lim) << 16)
                    | (self.below(lim) << 10)
                    | (rn << 5)
                    | rd
            }
            9 => {
                // EXTR.
                let (rd, rn, rm) = (self.d(), self.src(true), self.src(true));
                (sf << 31)
                    | 0x1380_0000
                    | (sf << 22)
                    | (rm << 16)
                    | (self.below(lim) << 10)
                    | (rn << 5)
                    | rd
            }
            10 => {
                // CSEL/CSINC/CSINV/CSNEG.
                let (rd, rn, rm) = (self.d(), self.src(true), self.src(true));
                (sf << 31)
                    | (self.below(2) << 30)
                    | 0x1a80_0000
                    | (rm << 16)
                    | (self.below(16) << 12)
                    | (self.below(2) << 10)
                    | (rn << 5)
                    | rd
            }
            11 => {
                // CCMP/CCMN, register or immediate.
                let imm = self.below(2);
                let m = if imm == 1 {
                    self.below(32)
                } else {
                    self.src(true)
                };
                let rn = self.src(true);
                (sf << 31)
                    | (self.below(2) << 30)
                    | 0x3a40_0000
                    | (m << 16)
                    | (self.below(16) << 12)
                    | (imm << 11)
                    | (rn << 5)
                    | self.below(16)
            }
            12 => {
                // UDIV/SDIV/LSLV/LSRV/ASRV/RORV.
                let op = [2, 3, 8, 9, 10, 11][self.below(6) as usize];
                let (rd, rn, rm) = (self.d(), self.src(true), self.src(true));
                (sf << 31) | 0x1ac0_0000 | (rm << 16) | (op << 10) | (rn << 5) | rd
            }
            13 => {
                // RBIT/REV16/REV32/REV/CLZ/CLS.
                let op = if sf == 1 {
                    [0, 1, 2, 3, 4, 5][self.below(6) as usize]
                } else {
                    [0, 1, 2, 4, 5][self.below(5) as usize]
                };
                let (rd, rn) = (self.d(), self.src(true));
                (sf << 31) | 0x5ac0_0000 | (op << 10) | (rn << 5) | rd
            }
            _ => {
                // Multiply: MADD/MSUB, SMADDL..UMSUBL, SMULH/UMULH.
                let (rd, rn, rm, ra) = (self.d(), self.src(true), self.src(true), self.src(true));
                match self.below(3) {
                    0 => {
                        (sf << 31)
                            | 0x1b00_0000
                            | (rm << 16)
                            | (self.below(2) << 15)
                            | (ra << 10)
                            | (rn << 5)
                            | rd
                    }
                    1 => {
                        let op31 = [1, 5][self.below(2) as usize];
                        0x9b00_0000
                            | (op31 << 21)
                            | (rm << 16)
                            | (self.below(2) << 15)
                            | (ra << 10)
                            | (rn << 5)
                            | rd
                    }
                    _ => {
                        let op31 = [2, 6][self.below(2) as usize];
                        0x9b00_0000 | (op31 << 21) | (rm << 16) | (31 << 10) | (rn << 5) | rd
                    }
                }
            }
        }
    }

    /// A pointer: P0/P1 (device side) or P2 (RAM scratch).
    fn ptr(&mut self) -> usize {
        if self.device_only {
            return self.below(2) as usize;
        }
        match self.below(10) {
            0..=3 => 0,
            4..=7 => 1,
            _ => 2,
        }
    }

    /// One load/store through a pointer register.
    fn mem(&mut self) -> u32 {
        let p = self.ptr();
        let rn = r(self.roles.p[p]);
        let al = self.aligned;
        match self.below(if self.lse && al { 9 } else { 8 }) {
            0 | 1 => {
                // GPR, unsigned scaled offset: STR, LDR, LDRS*.
                let s = self.below(4);
                let opc = match (self.below(4), s) {
                    (0, _) => 0,
                    (1, _) => 1,
                    (2, 0..=2) => 2,
                    (3, 0 | 1) => 3,
                    _ => 1,
                };
                let k = self.below(256 >> s);
                0x3900_0000 | (s << 30) | (opc << 22) | (k << 10) | (rn << 5) | self.d()
            }
            2 => {
                // GPR unscaled / post-index / pre-index.
                let s = self.below(4);
                let opc = [0, 1, 1, if s < 3 { 2 } else { 0 }][self.below(4) as usize];
                let mode = [0, 1, 3][self.below(3) as usize];
                let (imm, mode) = if mode == 0 {
                    let size = 1i64 << s;
                    let k = i64::from(self.below(512 >> s)) - (256 >> s);
                    (if al { k * size } else { k }, 0)
                } else {
                    let st = self.step(1 << s);
                    if self.step_ok(p, st) {
                        (st, mode)
                    } else {
                        (0, 0)
                    }
                };
                0x3800_0000
                    | (s << 30)
                    | (opc << 22)
                    | (((imm as u32) & 0x1ff) << 12)
                    | (mode << 10)
                    | (rn << 5)
                    | self.d()
            }
            3 => {
                // GPR register offset: [Pn, IDX{, <extend> #s}].
                let s = self.below(4);
                let opc = [0, 1, 1, if s < 3 { 2 } else { 1 }][self.below(4) as usize];
                let option = [2, 3, 6, 7][self.below(4) as usize];
                0x3820_0800
                    | (s << 30)
                    | (opc << 22)
                    | (r(self.roles.idx) << 16)
                    | (option << 13)
                    | (self.below(2) << 12)
                    | (rn << 5)
                    | self.d()
            }
            4 => {
                // LDP/STP/LDPSW (W, X), offset, post- or pre-index.
                let (opc, l) = match self.below(5) {
                    0 | 1 => (0, self.below(2)),
                    2 | 3 => (2, self.below(2)),
                    _ => (1, 1),
                };
                let esize: i64 = if opc == 2 { 8 } else { 4 };
                let rt = self.d();
                let mut rt2 = self.d();
                if l == 1 {
                    while rt2 == rt {
                        rt2 = self.d();
                    }
                }
                let mut mode = [2, 1, 3][self.below(3) as usize];
                let k = if mode == 2 {
                    i64::from(self.below(25)) - 8
                } else {
                    let st = self.step(esize);
                    if self.step_ok(p, st) {
                        st / esize
                    } else {
                        mode = 2;
                        0
                    }
                };
                0x2800_0000
                    | (opc << 30)
                    | (mode << 23)
                    | (l << 22)
                    | (((k as u32) & 0x7f) << 15)
                    | (rt2 << 10)
                    | (rn << 5)
                    | rt
            }
            5 => {
                // SIMD&FP single: B/H/S/D/Q, unsigned offset or post-index.
                let (size, q) = match self.below(5) {
                    4 => (0, 1),
                    s => (s, 0),
                };
                let bytes = if q == 1 { 16 } else { 1u32 << size };
                let l = self.below(2);
                let opc = (q << 1) | l;
                let vt = self.vreg();
                if self.chance(1, 2) {
                    let k = self.below(u64::from(256 / bytes));
                    0x3d00_0000 | (size << 30) | (opc << 22) | (k << 10) | (rn << 5) | vt
                } else {
                    let st = self.step(i64::from(bytes));
                    let st = if self.step_ok(p, st) { st } else { 0 };
                    0x3c00_0400
                        | (size << 30)
                        | (opc << 22)
                        | (((st as u32) & 0x1ff) << 12)
                        | (rn << 5)
                        | vt
                }
            }
            6 => {
                // SIMD&FP pair: S, D, Q.
                let opc = self.below(3);
                let esize = 4i64 << opc;
                let l = self.below(2);
                let vt = self.vreg();
                let mut vt2 = self.vreg();
                if l == 1 {
                    while vt2 == vt {
                        vt2 = self.vreg();
                    }
                }
                let mut mode = [2, 1, 3][self.below(3) as usize];
                let k = if mode == 2 {
                    i64::from(self.below(13)) - 4
                } else {
                    let st = self.step(esize);
                    let st = (st / esize) * esize;
                    if self.step_ok(p, st) {
                        st / esize
                    } else {
                        mode = 2;
                        0
                    }
                };
                0x2c00_0000
                    | (opc << 30)
                    | (mode << 23)
                    | (l << 22)
                    | (((k as u32) & 0x7f) << 15)
                    | (vt2 << 10)
                    | (rn << 5)
                    | vt
            }
            7 => {
                // LD1-LD4/ST1-ST4 multiple structures, no offset or post-index.
                let q = self.below(2);
                let (opcode, nregs) = match self.below(7) {
                    0 => (0b0111, 1u32),
                    1 => (0b1010, 2),
                    2 => (0b0110, 3),
                    3 => (0b0010, 4),
                    4 => (0b1000, 2),
                    5 => (0b0100, 3),
                    _ => (0b0000, 4),
                };
                let mut size = self.below(4);
                if q == 0
                    && size == 3
                    && nregs > 1
                    && opcode != 0b1010
                    && opcode != 0b0110
                    && opcode != 0b0010
                {
                    size = 2; // .1D is reserved for LD2-LD4.
                }
                let l = self.below(2);
                let vt = (self.vbase + self.below(u64::from(5 - nregs))) % 32;
                let total = i64::from(nregs) * if q == 1 { 16 } else { 8 };
                // Aligned phases keep the pointers 16-byte aligned.
                if self.chance(1, 2) && (!al || total % 16 == 0) && self.step_ok(p, total) {
                    0x0c80_0000
                        | (q << 30)
                        | (l << 22)
                        | (0x1f << 16)
                        | (opcode << 12)
                        | (size << 10)
                        | (rn << 5)
                        | vt
                } else {
                    0x0c00_0000
                        | (q << 30)
                        | (l << 22)
                        | (opcode << 12)
                        | (size << 10)
                        | (rn << 5)
                        | vt
                }
            }
            _ => {
                // LSE: LD<op>/SWP or CAS at the pointer (aligned phases only).
                let s = self.below(4);
                if self.chance(1, 3) {
                    // CAS writes the old value into Rs: a data register.
                    let (rs, rt) = (self.d(), self.d());
                    0x08a0_7c00
                        | (s << 30)
                        | (self.below(2) << 22)
                        | (rs << 16)
                        | (self.below(2) << 15)
                        | (rn << 5)
                        | rt
                } else {
                    let (rs, rt) = (self.src(true), self.d());
                    let (o3, opc) = if self.chance(1, 8) {
                        (1, 0)
                    } else {
                        (0, self.below(8))
                    };
                    0x3820_0000
                        | (s << 30)
                        | (self.below(2) << 23)
                        | (self.below(2) << 22)
                        | (rs << 16)
                        | (o3 << 15)
                        | (opc << 12)
                        | (rn << 5)
                        | rt
                }
            }
        }
    }

    /// `add P, P, #imm` within the pointer's budget (else a data-processing
    /// instruction).
    fn ptr_add(&mut self) -> u32 {
        let p = self.ptr();
        let st = if self.aligned {
            16 * i64::from(self.below(4))
        } else {
            i64::from(self.below(64))
        };
        if self.step_ok(p, st) {
            let rp = r(self.roles.p[p]);
            0x9100_0000 | ((st as u32) << 10) | (rp << 5) | rp
        } else {
            self.dp()
        }
    }

    /// A block of `len` instructions whose forward branches stay inside it
    /// (they may target the word just after it). Branch targets are chosen
    /// once the block is complete, among the words a branch may land on (not
    /// the RET of an ADR + RET pair, whose register the ADR sets).
    fn block(&mut self, len: usize) {
        let start = self.n;
        let end = start + len;
        // (position, kind): 0 B.cond, 1 CBZ/CBNZ, 2 TBZ/TBNZ, 3 B, 4 BL.
        let mut pending: [(usize, u32); MAXW] = [(0, 0); MAXW];
        let mut npend = 0;
        let mut no_land = [false; MAXW];
        while self.n < end {
            let left = end - self.n;
            let w = match self.below(20) {
                0..=6 => self.mem(),
                7..=12 => self.dp(),
                13 => self.ptr_add(),
                14..=16 if left > 1 => {
                    if let Some(p) = pending.get_mut(npend) {
                        *p = (self.n, self.below(5));
                        npend += 1;
                    }
                    0 // patched below
                }
                17 if left > 2 => {
                    // adr Xd, .+8; ret Xd: lands on the word after the RET.
                    let d = self.d();
                    self.push(0x1000_0000 | (2 << 5) | d);
                    if let Some(f) = no_land.get_mut(self.n) {
                        *f = true;
                    }
                    0xd65f_0000 | (d << 5)
                }
                18 => match self.below(3) {
                    0 => 0xd503_3bbf, // dmb ish
                    1 => 0xd503_3f9f, // dsb sy
                    _ => 0xd503_3fdf, // isb
                },
                19 if self.chance(1, 3) => {
                    // Something run-ahead leaves to the CPU: nop, mrs Xd, tpidr_el0.
                    if self.chance(1, 2) {
                        0xd503_201f
                    } else {
                        0xd53b_d040 | self.d()
                    }
                }
                _ => self.dp(),
            };
            self.push(w);
        }
        for &(pos, kind) in pending.iter().take(npend) {
            // Up to three landing places after the next word, `end` included.
            let mut cand = [end; 3];
            let mut nc = 0;
            for t in pos + 2..=end {
                if nc < 3 && (t == end || !no_land.get(t).copied().unwrap_or(false)) {
                    cand[nc] = t;
                    nc += 1;
                }
            }
            let t = cand[self.rng.below(nc.max(1) as u64) as usize];
            let off = (t - pos) as u32;
            let w = match kind {
                0 => 0x5400_0000 | (off << 5) | self.below(16),
                1 => {
                    let sf = self.below(2);
                    0x3400_0000 | (sf << 31) | (self.below(2) << 24) | (off << 5) | self.src(false)
                }
                2 => {
                    let b = self.below(64);
                    0x3600_0000
                        | ((b >> 5) << 31)
                        | (self.below(2) << 24)
                        | ((b & 31) << 19)
                        | (off << 5)
                        | self.src(false)
                }
                // B, or BL (writes x30, a data register).
                3 => 0x1400_0000 | off,
                _ => 0x9400_0000 | off,
            };
            if let Some(s) = self.words.get_mut(pos) {
                *s = w;
            }
        }
    }
}

/// Whether a generated access has a valid syndrome (ISV = 1, a
/// `KVM_EXIT_MMIO`): a single general-purpose register, no writeback
/// (unsigned offset, unscaled, register offset).
fn isv(w: u32) -> bool {
    (w & 0x3f00_0000) == 0x3900_0000
        || (w & 0x3f20_0c00) == 0x3800_0000
        || (w & 0x3f20_0c00) == 0x3820_0800
}

/// Generate one sequence. `aligned`: every access aligned to its element
/// size (Device memory). `lse`: FEAT_LSE atomics may be used (aligned only).
pub fn generate(rng: &mut Rng, aligned: bool, lse: bool) -> Seq {
    // Roles: five distinct registers among x0..x29 (x30 stays data: BL).
    let mut pool: [u8; 30] = core::array::from_fn(|i| i as u8);
    for i in 0..29 {
        let j = i + rng.below((30 - i) as u64) as usize;
        pool.swap(i, j);
    }
    let roles = Roles {
        p: [pool[0], pool[1], pool[2]],
        cnt: pool[3],
        idx: pool[4],
    };
    // Data registers: a random 3 to 8 of the others, and x30 (for BL). A
    // sequence touches few registers, as real code does: on KVM each one
    // run-ahead reads or writes back is an ioctl, which is what an exit costs.
    let mut data = [0u8; 31];
    let mut ndata = 0;
    let want = 4 + rng.below(6) as usize;
    for &x in pool[5..].iter() {
        if ndata < want - 1 {
            data[ndata] = x;
            ndata += 1;
        }
    }
    data[ndata] = 30;
    ndata += 1;
    let vbase = rng.below(32) as u32;
    let mut g = Gen {
        rng,
        aligned,
        lse,
        roles,
        data,
        ndata,
        up: [UP; 3],
        down: [DOWN; 3],
        mult: 1,
        device_only: false,
        vbase,
        words: [0; MAXW],
        n: 0,
    };
    // The first instruction: a device access without a valid syndrome, so
    // the device run exits at once and run-ahead executes everything after it
    // (instructions before it would run natively in both runs, testing
    // nothing, and an ISV = 1 access would cost a KVM_EXIT_MMIO).
    g.device_only = true;
    let first = loop {
        let w = g.mem();
        if !isv(w) {
            break w;
        }
    };
    g.device_only = false;
    g.push(first);
    let a = g.below(5) as usize;
    g.block(a);
    if g.chance(7, 10) {
        let count = 1 + i64::from(g.below(5));
        g.mult = count;
        let body_start = g.n;
        let len = 2 + g.below(7) as usize;
        g.block(len);
        g.mult = 1;
        let back = (body_start as i64 - (g.n as i64 + 1)) as u32 & 0x7ffff;
        let c = r(g.roles.cnt);
        if g.chance(1, 2) {
            g.push(0xf100_0400 | (c << 5) | c); // subs CNT, CNT, #1
            g.push(0x5400_0001 | (back << 5)); // b.ne body
        } else {
            g.push(0xd100_0400 | (c << 5) | c); // sub CNT, CNT, #1
            g.push(0xb500_0000 | (back << 5) | c); // cbnz CNT, body
        }
        // The counter starts at `count` (set in `finish`).
        let b = g.below(5) as usize;
        g.block(b);
        g.push(SVC);
        finish(g, count as u64)
    } else {
        let b = g.below(5) as usize;
        g.block(b);
        g.push(SVC);
        finish(g, 1)
    }
}

fn finish(g: Gen<'_>, count: u64) -> Seq {
    let roles = g.roles;
    let aligned = g.aligned;
    let rng = g.rng;
    let mut x = [0u64; 31];
    for (i, v) in x.iter_mut().enumerate() {
        *v = rng.reg_value();
        let i = i as u8;
        if roles.p.contains(&i) {
            let o = if aligned {
                LO + 16 * rng.below(SPREAD / 16)
            } else {
                LO + rng.below(SPREAD)
            };
            *v = o;
        } else if i == roles.cnt {
            *v = count;
        } else if i == roles.idx {
            *v = if aligned {
                16 * rng.below(4)
            } else {
                rng.below(64)
            };
        }
    }
    let v: [u128; 32] =
        core::array::from_fn(|_| (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()));
    Seq {
        words: g.words,
        n: g.n,
        x,
        roles,
        nzcv: (rng.next_u64() & 0xf) << 28,
        v,
    }
}
