// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The integer interpreter (`kvm_nisv::a64`) against an independent model.
//!
//! The model does not share code with the interpreter: each word is decoded
//! by bad64 (Binary Ninja's A64 decoder, generated from the Arm ARM's ASL),
//! and executed from bad64's mnemonic and operands, i.e. from the
//! *disassembly* (aliases such as UBFX, CSET, NGC, MNEG, ROR included), with
//! 128-bit arithmetic for the results and flags. Words come from the three
//! encoding groups the interpreter covers, with random registers, flags, SP
//! and PC.
//!
//! Checked both ways: every word the interpreter executes must be one bad64
//! decodes to a supported operation (nothing unallocated or from another
//! extension slips in), and every word bad64 decodes to a supported operation
//! must be executed by the interpreter, except the documented exclusions
//! (SMULH/UMULH with a non-11111 Ra field).
//!
//! `KVM_NISV_A64_COUNT` sets the number of words (default 1 000 000),
//! `KVM_NISV_A64_SEED` the seed.

#![cfg(not(target_env = "musl"))]

use bad64::{Condition, Imm, Op, Operand, Reg, Shift};
use kvm_nisv::a64::{self, IntState};

/// The model's register state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct M {
    x: [u64; 31],
    sp: u64,
    n: bool,
    z: bool,
    c: bool,
    v: bool,
}

impl M {
    fn from(s: &IntState) -> Self {
        M {
            x: s.x,
            sp: s.sp,
            n: s.nzcv & 8 != 0,
            z: s.nzcv & 4 != 0,
            c: s.nzcv & 2 != 0,
            v: s.nzcv & 1 != 0,
        }
    }

    fn nzcv(&self) -> u8 {
        (u8::from(self.n) << 3)
            | (u8::from(self.z) << 2)
            | (u8::from(self.c) << 1)
            | u8::from(self.v)
    }
}

/// Register number and width in bits (0 = zero register, 31 = SP).
#[derive(Clone, Copy, Debug)]
enum R {
    X(usize, u32),
    Zr(u32),
    Sp(u32),
}

fn reg(r: Reg) -> R {
    let name = r.name();
    match name {
        "xzr" => R::Zr(64),
        "wzr" => R::Zr(32),
        "sp" => R::Sp(64),
        "wsp" => R::Sp(32),
        "fp" => R::X(29, 64),
        "lr" => R::X(30, 64),
        _ => {
            let (w, n) = name.split_at(1);
            let n: usize = n.parse().unwrap_or_else(|_| panic!("register {name}"));
            match w {
                "x" => R::X(n, 64),
                "w" => R::X(n, 32),
                _ => panic!("register {name}"),
            }
        }
    }
}

fn width(r: R) -> u32 {
    match r {
        R::X(_, w) | R::Zr(w) | R::Sp(w) => w,
    }
}

fn mask(w: u32) -> u128 {
    (1u128 << w) - 1
}

fn get(m: &M, r: R) -> u128 {
    let v = match r {
        R::X(n, _) => m.x[n],
        R::Zr(_) => 0,
        R::Sp(_) => m.sp,
    };
    u128::from(v) & mask(width(r))
}

fn set(m: &mut M, r: R, v: u128) {
    let v = (v & mask(width(r))) as u64;
    match r {
        R::X(n, _) => m.x[n] = v,
        R::Zr(_) => {}
        R::Sp(_) => m.sp = v,
    }
}

/// Two's complement value of the low `w` bits.
fn signed(v: u128, w: u32) -> i128 {
    let v = v & mask(w);
    if v >> (w - 1) & 1 == 1 {
        v as i128 - (1i128 << w)
    } else {
        v as i128
    }
}

fn imm(i: Imm) -> u128 {
    match i {
        Imm::Unsigned(u) => u128::from(u),
        Imm::Signed(s) => s as u64 as u128,
    }
}

/// The value of a source operand at width `w`.
fn src(m: &M, op: &Operand, w: u32) -> u128 {
    match *op {
        Operand::Reg { reg: r, .. } => get(m, reg(r)),
        Operand::Imm32 { imm: i, shift } | Operand::Imm64 { imm: i, shift } => {
            let v = imm(i);
            let v = match shift {
                None => v,
                Some(Shift::LSL(s)) => v << s,
                Some(s) => panic!("immediate shift {s:?}"),
            };
            v & mask(w)
        }
        Operand::ShiftReg { reg: r, shift } => {
            let r = reg(r);
            let rw = width(r);
            let v = get(m, r);
            let out = match shift {
                Shift::LSL(s) => v << s,
                Shift::LSR(s) => v >> s,
                Shift::ASR(s) => (signed(v, rw) >> s) as u128,
                Shift::ROR(s) => {
                    let s = s % rw;
                    if s == 0 {
                        v
                    } else {
                        (v >> s) | (v << (rw - s))
                    }
                }
                Shift::UXTB(s) => (v & 0xff) << s,
                Shift::UXTH(s) => (v & 0xffff) << s,
                Shift::UXTW(s) => (v & 0xffff_ffff) << s,
                Shift::UXTX(s) => v << s,
                Shift::SXTB(s) => (signed(v, 8) as u128) << s,
                Shift::SXTH(s) => (signed(v, 16) as u128) << s,
                Shift::SXTW(s) => (signed(v, 32.min(rw)) as u128) << s,
                Shift::SXTX(s) => (signed(v, 64.min(rw)) as u128) << s,
                Shift::MSL(_) => panic!("MSL"),
            };
            out & mask(w)
        }
        ref o => panic!("source operand {o:?}"),
    }
}

fn dst(op: &Operand) -> R {
    match *op {
        Operand::Reg { reg: r, .. } => reg(r),
        ref o => panic!("destination {o:?}"),
    }
}

fn uimm(op: &Operand) -> u32 {
    match *op {
        Operand::Imm32 { imm: i, .. } | Operand::Imm64 { imm: i, .. } => imm(i) as u32,
        ref o => panic!("immediate {o:?}"),
    }
}

fn cond_of(op: &Operand) -> Condition {
    match *op {
        Operand::Cond(c) => c,
        ref o => panic!("condition {o:?}"),
    }
}

fn label(op: &Operand) -> u64 {
    match *op {
        Operand::Label(i) => imm(i) as u64,
        ref o => panic!("label {o:?}"),
    }
}

/// The Arm ARM's condition table (C1.2.4), written out.
fn holds(m: &M, c: Condition) -> bool {
    use Condition::*;
    match c {
        EQ => m.z,
        NE => !m.z,
        CS => m.c,
        CC => !m.c,
        MI => m.n,
        PL => !m.n,
        VS => m.v,
        VC => !m.v,
        HI => m.c && !m.z,
        LS => !m.c || m.z,
        GE => m.n == m.v,
        LT => m.n != m.v,
        GT => !m.z && m.n == m.v,
        LE => m.z || m.n != m.v,
        AL | NV => true,
    }
}

fn bcond(op: Op) -> Option<Condition> {
    use Condition::*;
    Some(match op {
        Op::B_EQ => EQ,
        Op::B_NE => NE,
        Op::B_CS => CS,
        Op::B_CC => CC,
        Op::B_MI => MI,
        Op::B_PL => PL,
        Op::B_VS => VS,
        Op::B_VC => VC,
        Op::B_HI => HI,
        Op::B_LS => LS,
        Op::B_GE => GE,
        Op::B_LT => LT,
        Op::B_GT => GT,
        Op::B_LE => LE,
        Op::B_AL => AL,
        Op::B_NV => NV,
        _ => return None,
    })
}

/// `a + b + carry` at width `w`: the result and the flags, from the exact
/// unsigned and signed sums.
fn add(a: u128, b: u128, carry: bool, w: u32) -> (u128, [bool; 4]) {
    let a = a & mask(w);
    let b = b & mask(w);
    let usum = a + b + u128::from(carry);
    let ssum = signed(a, w) + signed(b, w) + i128::from(carry);
    let r = usum & mask(w);
    let flags = [
        r >> (w - 1) & 1 == 1,
        r == 0,
        usum != r,
        ssum != signed(r, w),
    ];
    (r, flags)
}

fn setf(m: &mut M, f: [bool; 4]) {
    [m.n, m.z, m.c, m.v] = f;
}

fn logic_flags(r: u128, w: u32) -> [bool; 4] {
    [r >> (w - 1) & 1 == 1, r & mask(w) == 0, false, false]
}

fn bits_of(v: u128, lsb: u32, width: u32) -> u128 {
    (v >> lsb) & mask(width)
}

/// Operations the interpreter must execute when bad64 decodes one.
fn supported(op: Op) -> bool {
    use Op::*;
    bcond(op).is_some()
        || matches!(
            op,
            ADD | ADDS
                | SUB
                | SUBS
                | CMP
                | CMN
                | NEG
                | NEGS
                | ADC
                | ADCS
                | SBC
                | SBCS
                | NGC
                | NGCS
                | AND
                | ANDS
                | ORR
                | EOR
                | BIC
                | BICS
                | ORN
                | EON
                | TST
                | MOV
                | MVN
                | MOVZ
                | MOVN
                | MOVK
                | ADR
                | ADRP
                | SBFM
                | BFM
                | UBFM
                | ASR
                | LSL
                | LSR
                | ROR
                | SXTB
                | SXTH
                | SXTW
                | UXTB
                | UXTH
                | SBFIZ
                | SBFX
                | UBFIZ
                | UBFX
                | BFI
                | BFXIL
                | BFC
                | EXTR
                | CSEL
                | CSINC
                | CSINV
                | CSNEG
                | CSET
                | CSETM
                | CINC
                | CINV
                | CNEG
                | CCMP
                | CCMN
                | ASRV
                | LSLV
                | LSRV
                | RORV
                | UDIV
                | SDIV
                | RBIT
                | REV16
                | REV32
                | REV
                | REV64
                | CLZ
                | CLS
                | MADD
                | MSUB
                | MUL
                | MNEG
                | SMADDL
                | SMSUBL
                | SMULL
                | SMNEGL
                | UMADDL
                | UMSUBL
                | UMULL
                | UMNEGL
                | SMULH
                | UMULH
                | B
                | BL
                | CBZ
                | CBNZ
                | TBZ
                | TBNZ
                | RET
        )
}

/// Execute the disassembled instruction at `pc`; the next PC.
fn model(m: &mut M, pc: u64, op: Op, o: &[Operand]) -> u64 {
    use Op::*;
    let next = pc.wrapping_add(4);
    if let Some(c) = bcond(op) {
        return if holds(m, c) { label(&o[0]) } else { next };
    }
    match op {
        ADD | ADDS | SUB | SUBS => {
            let d = dst(&o[0]);
            let w = width(d);
            let a = src(m, &o[1], w);
            let b = src(m, &o[2], w);
            let sub = matches!(op, SUB | SUBS);
            let (r, f) = if sub {
                add(a, !b, true, w)
            } else {
                add(a, b, false, w)
            };
            if matches!(op, ADDS | SUBS) {
                setf(m, f);
            }
            set(m, d, r);
        }
        CMP | CMN => {
            let w = width(dst(&o[0]));
            let a = src(m, &o[0], w);
            let b = src(m, &o[1], w);
            let (_, f) = if op == CMP {
                add(a, !b, true, w)
            } else {
                add(a, b, false, w)
            };
            setf(m, f);
        }
        NEG | NEGS => {
            let d = dst(&o[0]);
            let w = width(d);
            let (r, f) = add(0, !src(m, &o[1], w), true, w);
            if op == NEGS {
                setf(m, f);
            }
            set(m, d, r);
        }
        ADC | ADCS | SBC | SBCS => {
            let d = dst(&o[0]);
            let w = width(d);
            let a = src(m, &o[1], w);
            let b = src(m, &o[2], w);
            let b = if matches!(op, SBC | SBCS) { !b } else { b };
            let (r, f) = add(a, b, m.c, w);
            if matches!(op, ADCS | SBCS) {
                setf(m, f);
            }
            set(m, d, r);
        }
        NGC | NGCS => {
            let d = dst(&o[0]);
            let w = width(d);
            let (r, f) = add(0, !src(m, &o[1], w), m.c, w);
            if op == NGCS {
                setf(m, f);
            }
            set(m, d, r);
        }
        AND | ANDS | ORR | EOR | BIC | BICS | ORN | EON => {
            let d = dst(&o[0]);
            let w = width(d);
            let a = src(m, &o[1], w);
            let b = src(m, &o[2], w);
            let r = match op {
                AND | ANDS => a & b,
                ORR => a | b,
                EOR => a ^ b,
                BIC | BICS => a & !b,
                ORN => a | !b,
                _ => a ^ !b,
            } & mask(w);
            if matches!(op, ANDS | BICS) {
                setf(m, logic_flags(r, w));
            }
            set(m, d, r);
        }
        TST => {
            let w = width(dst(&o[0]));
            let r = src(m, &o[0], w) & src(m, &o[1], w);
            setf(m, logic_flags(r, w));
        }
        MOV | MOVZ => {
            let d = dst(&o[0]);
            let v = src(m, &o[1], width(d));
            set(m, d, v);
        }
        MVN | MOVN => {
            let d = dst(&o[0]);
            let v = !src(m, &o[1], width(d));
            set(m, d, v);
        }
        MOVK => {
            let d = dst(&o[0]);
            let sh = match o[1] {
                Operand::Imm32 {
                    shift: Some(Shift::LSL(s)),
                    ..
                }
                | Operand::Imm64 {
                    shift: Some(Shift::LSL(s)),
                    ..
                } => s,
                _ => 0,
            };
            let v = u128::from(uimm(&o[1]));
            let old = get(m, d);
            set(m, d, (old & !(0xffff << sh)) | (v << sh));
        }
        ADR | ADRP => {
            let d = dst(&o[0]);
            set(m, d, u128::from(label(&o[1])));
        }
        ASR | LSL | LSR | ROR | ASRV | LSLV | LSRV | RORV => {
            let d = dst(&o[0]);
            let w = width(d);
            let v = get(m, reg_of(&o[1]));
            let amount = match o[2] {
                Operand::Reg { reg: r, .. } => (get(m, reg(r)) % u128::from(w)) as u32,
                ref i => uimm(i),
            };
            let r = match op {
                ASR | ASRV => (signed(v, w) >> amount) as u128,
                LSL | LSLV => v << amount,
                LSR | LSRV => v >> amount,
                _ => {
                    if amount == 0 {
                        v
                    } else {
                        (v >> amount) | (v << (w - amount))
                    }
                }
            };
            set(m, d, r);
        }
        SXTB | SXTH | SXTW | UXTB | UXTH => {
            let d = dst(&o[0]);
            let v = get(m, reg_of(&o[1]));
            let r = match op {
                SXTB => signed(v, 8) as u128,
                SXTH => signed(v, 16) as u128,
                SXTW => signed(v, 32) as u128,
                UXTB => v & 0xff,
                _ => v & 0xffff,
            };
            set(m, d, r);
        }
        SBFX | UBFX | SBFIZ | UBFIZ | BFI | BFXIL => {
            let d = dst(&o[0]);
            let w = width(d);
            let n = get(m, reg_of(&o[1]));
            let lsb = uimm(&o[2]);
            let wd = uimm(&o[3]);
            let r = match op {
                SBFX => signed(bits_of(n, lsb, wd), wd) as u128,
                UBFX => bits_of(n, lsb, wd),
                SBFIZ => (signed(n, wd) as u128) << lsb,
                UBFIZ => (n & mask(wd)) << lsb,
                BFI => {
                    let old = get(m, d);
                    (old & !(mask(wd) << lsb)) | ((n & mask(wd)) << lsb)
                }
                _ => {
                    let old = get(m, d);
                    (old & !mask(wd)) | bits_of(n, lsb, wd)
                }
            } & mask(w);
            set(m, d, r);
        }
        BFC => {
            let d = dst(&o[0]);
            let lsb = uimm(&o[1]);
            let wd = uimm(&o[2]);
            let old = get(m, d);
            set(m, d, old & !(mask(wd) << lsb));
        }
        SBFM | BFM | UBFM => {
            // Only reached if bad64 printed no alias: apply the preferred
            // alias rule (C6.2 SBFM/BFM/UBFM) by hand.
            let d = dst(&o[0]);
            let w = width(d);
            let n = get(m, reg_of(&o[1]));
            let immr = uimm(&o[2]);
            let imms = uimm(&o[3]);
            let (lsb_src, lsb_dst, wd) = if imms >= immr {
                (immr, 0, imms - immr + 1)
            } else {
                (0, w - immr, imms + 1)
            };
            let field = bits_of(n, lsb_src, wd);
            let r = match op {
                SBFM => (signed(field, wd) as u128) << lsb_dst,
                UBFM => field << lsb_dst,
                _ => (get(m, d) & !(mask(wd) << lsb_dst)) | (field << lsb_dst),
            };
            set(m, d, r);
        }
        EXTR => {
            let d = dst(&o[0]);
            let w = width(d);
            let hi = get(m, reg_of(&o[1]));
            let lo = get(m, reg_of(&o[2]));
            let lsb = uimm(&o[3]);
            set(m, d, ((hi << w) | lo) >> lsb);
        }
        CSEL | CSINC | CSINV | CSNEG => {
            let d = dst(&o[0]);
            let w = width(d);
            let c = cond_of(&o[3]);
            let r = if holds(m, c) {
                src(m, &o[1], w)
            } else {
                let v = src(m, &o[2], w);
                match op {
                    CSEL => v,
                    CSINC => v + 1,
                    CSINV => !v,
                    _ => (!v).wrapping_add(1),
                }
            };
            set(m, d, r);
        }
        CSET | CSETM => {
            let d = dst(&o[0]);
            let r = if holds(m, cond_of(&o[1])) {
                if op == CSET { 1 } else { u128::MAX }
            } else {
                0
            };
            set(m, d, r);
        }
        CINC | CINV | CNEG => {
            let d = dst(&o[0]);
            let w = width(d);
            let v = src(m, &o[1], w);
            let r = if holds(m, cond_of(&o[2])) {
                match op {
                    CINC => v + 1,
                    CINV => !v,
                    _ => (!v).wrapping_add(1),
                }
            } else {
                v
            };
            set(m, d, r);
        }
        CCMP | CCMN => {
            let w = width(dst(&o[0]));
            let nzcv = uimm(&o[2]);
            if holds(m, cond_of(&o[3])) {
                let a = src(m, &o[0], w);
                let b = src(m, &o[1], w);
                let (_, f) = if op == CCMP {
                    add(a, !b, true, w)
                } else {
                    add(a, b, false, w)
                };
                setf(m, f);
            } else {
                setf(
                    m,
                    [nzcv & 8 != 0, nzcv & 4 != 0, nzcv & 2 != 0, nzcv & 1 != 0],
                );
            }
        }
        UDIV | SDIV => {
            let d = dst(&o[0]);
            let w = width(d);
            let a = src(m, &o[1], w);
            let b = src(m, &o[2], w);
            let r = if b == 0 {
                0
            } else if op == UDIV {
                a / b
            } else {
                // Round toward zero in i128: no overflow possible.
                (signed(a, w) / signed(b, w)) as u128
            };
            set(m, d, r);
        }
        RBIT | REV16 | REV32 | REV | REV64 | CLZ | CLS => {
            let d = dst(&o[0]);
            let w = width(d);
            let v = src(m, &o[1], w);
            let bytes: Vec<u8> = (0..w / 8).map(|i| (v >> (8 * i)) as u8).collect();
            let from_bytes = |b: &[u8]| {
                b.iter()
                    .rev()
                    .fold(0u128, |acc, &x| (acc << 8) | u128::from(x))
            };
            let r = match op {
                RBIT => (0..w).fold(0u128, |acc, i| acc | (((v >> i) & 1) << (w - 1 - i))),
                REV | REV64 => {
                    let mut b = bytes.clone();
                    b.reverse();
                    from_bytes(&b)
                }
                REV16 | REV32 => {
                    let chunk = if op == REV16 { 2 } else { 4 };
                    let b: Vec<u8> = bytes
                        .chunks(chunk)
                        .flat_map(|c| c.iter().rev().copied())
                        .collect();
                    from_bytes(&b)
                }
                CLZ => {
                    u128::from((0..w).take_while(|i| (v >> (w - 1 - i)) & 1 == 0).count() as u32)
                }
                _ => {
                    let top = (v >> (w - 1)) & 1;
                    u128::from((1..w).take_while(|i| (v >> (w - 1 - i)) & 1 == top).count() as u32)
                }
            };
            set(m, d, r);
        }
        MADD | MSUB | MUL | MNEG => {
            let d = dst(&o[0]);
            let w = width(d);
            let p = src(m, &o[1], w) * src(m, &o[2], w);
            let a = if matches!(op, MADD | MSUB) {
                src(m, &o[3], w)
            } else {
                0
            };
            let r = if matches!(op, MSUB | MNEG) {
                a.wrapping_sub(p)
            } else {
                a.wrapping_add(p)
            };
            set(m, d, r);
        }
        SMADDL | SMSUBL | SMULL | SMNEGL | UMADDL | UMSUBL | UMULL | UMNEGL => {
            let d = dst(&o[0]);
            let sgn = matches!(op, SMADDL | SMSUBL | SMULL | SMNEGL);
            let (a, b) = (src(m, &o[1], 32), src(m, &o[2], 32));
            let p: i128 = if sgn {
                signed(a, 32) * signed(b, 32)
            } else {
                (a * b) as i128
            };
            let acc = if matches!(op, SMADDL | SMSUBL | UMADDL | UMSUBL) {
                src(m, &o[3], 64) as i128
            } else {
                0
            };
            let r = if matches!(op, SMSUBL | SMNEGL | UMSUBL | UMNEGL) {
                acc - p
            } else {
                acc + p
            };
            set(m, d, r as u128);
        }
        SMULH | UMULH => {
            let d = dst(&o[0]);
            let (a, b) = (src(m, &o[1], 64), src(m, &o[2], 64));
            let r = if op == SMULH {
                // The full 128-bit signed product, then its top half.
                let p = signed(a, 64) * signed(b, 64);
                (p >> 64) as u128
            } else {
                // a, b < 2^64: the product fits 128 bits exactly.
                (a * b) >> 64
            };
            set(m, d, r);
        }
        B => return label(&o[0]),
        BL => {
            m.x[30] = next;
            return label(&o[0]);
        }
        CBZ | CBNZ => {
            let r = dst(&o[0]);
            let zero = get(m, r) == 0;
            return if zero == (op == CBZ) {
                label(&o[1])
            } else {
                next
            };
        }
        TBZ | TBNZ => {
            let r = dst(&o[0]);
            let b = uimm(&o[1]);
            let set_bit = (get(m, r) >> b) & 1 == 1;
            return if set_bit == (op == TBNZ) {
                label(&o[2])
            } else {
                next
            };
        }
        RET => {
            let r = o.first().map(dst).unwrap_or(R::X(30, 64));
            return get(m, r) as u64;
        }
        other => panic!("model has no {other:?}"),
    }
    next
}

fn reg_of(op: &Operand) -> R {
    dst(op)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn value(&mut self) -> u64 {
        match self.next() % 8 {
            0 => self.next() % 64,
            1 => (self.next() % 64).wrapping_neg(),
            2 => 0x8000_0000_0000_0000 ^ (self.next() % 4),
            3 => 0x8000_0000 ^ (self.next() % 4) ^ (self.next() << 32),
            4 => 0xffff_ffff ^ (self.next() % 2),
            _ => self.next(),
        }
    }

    fn word(&mut self) -> u32 {
        let r = self.next() as u32;
        match self.next() % 16 {
            // Data-processing (1 source), opcode 0..=7: RBIT..CLS.
            8 => (r & 0x8000_1fff) | 0x5ac0_0000,
            // RET Xn.
            9 => 0xd65f_0000 | (r & 0x3e0),
            // CSEL family with XZR operands (CSET, CSETM, CINC...).
            10 => (r & 0xc000_fc1f) | 0x1a80_0000 | (31 << 16) | (31 << 5),
            11 => (r & 0xc01f_fc1f) | 0x1a80_0000 | (((r >> 20) & 1) * (31 << 5)),
            // Move wide (MOVZ, MOVN, MOVK).
            12 => (r & 0xe07f_ffff) | 0x1280_0000,
            // Bitfield (SBFM, BFM, UBFM) with N = sf.
            13 => {
                let sf = r >> 31;
                (r & 0xe03f_ffff & !(1 << 22)) | 0x1300_0000 | (sf << 22)
            }
            // Data processing (immediate): bits 28:26 = 100.
            0..=2 => (r & !0x1c00_0000) | 0x1000_0000,
            // Data processing (register): bits 27:25 = 101.
            3..=5 => (r & !0x0e00_0000) | 0x0a00_0000,
            // Branches and system: bits 28:26 = 101.
            6 => (r & !0x1c00_0000) | 0x1400_0000,
            _ => r,
        }
    }
}

/// Known differences:
/// * on purpose: SMULH/UMULH with Ra != 11111 (should-be-one bits; the
///   interpreter leaves them to the CPU);
/// * bad64 deviates: a logical immediate with N = 0 and imms = 11111x has
///   `HighestSetBit(N:NOT(imms)) < 1`, which `DecodeBitMasks` makes UNDEFINED
///   (Arm ARM, shared pseudocode `DecodeBitMasks`: "if len < 1 then
///   UNDEFINED"); bad64 decodes it (e.g. `0xf214fa48` as `ands x8, x18,
///   #0xffffffffffffffff`);
/// * on purpose: B.cond with bit 4 set is BC.cond (FEAT_HBC), unallocated
///   without FEAT_HBC; bad64 decodes it as B.cond. The interpreter leaves it to
///   the CPU.
fn excluded(word: u32, op: Op) -> bool {
    if bcond(op).is_some() && word & 0x10 != 0 {
        return true;
    }
    let logical_imm = (word >> 23) & 0x3f == 0b100100;
    let n = (word >> 22) & 1;
    let imms = (word >> 10) & 0x3f;
    (matches!(op, Op::SMULH | Op::UMULH) && (word >> 10) & 0x1f != 0x1f)
        || (logical_imm && n == 0 && imms >= 0b111110)
}

/// Whether every register operand is a general-purpose register (SIMD MUL,
/// REV64, CLZ... share the operation names).
fn gpr_only(ops: &[Operand]) -> bool {
    let gpr = |r: Reg| {
        let n = r.name();
        matches!(n, "sp" | "wsp" | "xzr" | "wzr" | "fp" | "lr")
            || ((n.starts_with('x') || n.starts_with('w')) && n[1..].parse::<u8>().is_ok())
    };
    ops.iter().all(|o| match *o {
        Operand::Reg { reg: r, arrspec } => arrspec.is_none() && gpr(r),
        Operand::ShiftReg { reg: r, .. } => gpr(r),
        Operand::MultiReg { .. } | Operand::MemReg(_) | Operand::MemOffset { .. } => false,
        _ => true,
    })
}

fn canonical(t: u64) -> bool {
    (((t << 8) as i64) >> 8) as u64 == t
}

#[test]
fn interpreter_matches_the_bad64_model() {
    let count: u64 = std::env::var("KVM_NISV_A64_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = std::env::var("KVM_NISV_A64_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6b76_6d2d_6136_3420);
    let mut rng = Rng(seed | 1);
    let (mut executed, mut by_model, mut left_to_cpu) = (0u64, 0u64, 0u64);
    let mut ops = std::collections::BTreeSet::new();
    for i in 0..count {
        let word = rng.word();
        let pc = match rng.next() % 4 {
            0 => 0xffff_8000_0000_0000 | (rng.next() & 0x0000_7fff_ffff_fffc),
            1 => rng.next() & !3,
            _ => 0x4000_0000 + (rng.next() % 0x1000_0000) * 4,
        };
        let mut st = IntState {
            x: core::array::from_fn(|_| rng.value()),
            sp: rng.value(),
            nzcv: (rng.next() & 0xf) as u8,
        };
        let ours = a64::decode(word);
        let theirs = bad64::decode(word, pc).ok();
        let sup = theirs
            .as_ref()
            .filter(|d| supported(d.op()) && gpr_only(d.operands()));
        match (ours, sup) {
            (None, None) => continue,
            (None, Some(d)) => {
                assert!(
                    excluded(word, d.op()),
                    "case {i}: {word:#010x} ({d}) is not executed by the interpreter"
                );
                continue;
            }
            (Some(insn), None) => panic!(
                "case {i}: the interpreter executes {word:#010x} ({insn:?}) but bad64 says {:?}",
                theirs.map(|d| d.to_string())
            ),
            (Some(insn), Some(d)) => {
                ops.insert(format!("{:?}", d.op()));
                let before = st;
                let mut m = M::from(&st);
                let next = model(&mut m, pc, d.op(), d.operands());
                let r = a64::execute(&insn, pc, &mut st).unwrap();
                match r {
                    None => {
                        // Left to the CPU: only for a branch whose target the
                        // model also finds non-canonical, with nothing changed.
                        assert!(
                            !canonical(next),
                            "case {i}: {word:#010x} ({d}) at {pc:#x} not executed, target {next:#x}"
                        );
                        assert_eq!(st, before, "case {i}: state changed");
                        left_to_cpu += 1;
                    }
                    Some(npc) => {
                        executed += 1;
                        by_model += 1;
                        let got = M::from(&st);
                        assert_eq!(
                            (got, npc),
                            (m, next),
                            "case {i}: {word:#010x} ({d}) at {pc:#x} from {before:x?}\nnzcv ours {:04b} model {:04b}",
                            st.nzcv,
                            m.nzcv()
                        );
                    }
                }
            }
        }
    }
    eprintln!(
        "a64: {count} words, {executed} executed and matched the model ({by_model}), {left_to_cpu} branches left to the CPU, {} operations: {ops:?}",
        ops.len()
    );
    // The generator must reach every family, or the test proves little.
    assert!(executed > count / 3, "only {executed} executed");
    for must in [
        "ADD", "SUBS", "UBFX", "CSEL", "CCMP", "MADD", "SMULH", "EXTR", "B_NE", "TBZ", "RET",
        "ADRP", "MOVK", "CLS", "SDIV",
    ] {
        assert!(ops.contains(must), "{must} never generated");
    }
}
