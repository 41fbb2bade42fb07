// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Execution of decoded integer instructions (pseudocode of the Arm ARM's
//! instruction pages: `AddWithCarry`, `ShiftReg`, `ExtendReg`,
//! `DecodeBitMasks`, `ConditionHolds`).

use super::{
    BitfieldOp, ExtendKind, Gpr, IntInsn, LogicOp, MoveOp, Operand, SelectOp, ShiftKind, UnaryOp,
};

/// The register state the interpreter reads and writes.
pub trait Cpu {
    /// What a register access can fail with.
    type Error;
    /// X`n`, n in 0..=30.
    fn x(&mut self, n: u8) -> Result<u64, Self::Error>;
    /// Write X`n`, n in 0..=30.
    fn set_x(&mut self, n: u8, v: u64) -> Result<(), Self::Error>;
    /// The current stack pointer.
    fn sp(&mut self) -> Result<u64, Self::Error>;
    /// Write the current stack pointer.
    fn set_sp(&mut self, v: u64) -> Result<(), Self::Error>;
    /// NZCV in bits 3:0 (N in bit 3).
    fn nzcv(&mut self) -> Result<u8, Self::Error>;
    /// Write NZCV (bits 3:0).
    fn set_nzcv(&mut self, nzcv: u8) -> Result<(), Self::Error>;
}

/// A plain register state implementing [`Cpu`], for tests and models.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IntState {
    /// X0..=X30.
    pub x: [u64; 31],
    /// The current stack pointer.
    pub sp: u64,
    /// NZCV in bits 3:0.
    pub nzcv: u8,
}

impl Cpu for IntState {
    type Error = core::convert::Infallible;
    fn x(&mut self, n: u8) -> Result<u64, Self::Error> {
        Ok(self.x.get(usize::from(n)).copied().unwrap_or(0))
    }
    fn set_x(&mut self, n: u8, v: u64) -> Result<(), Self::Error> {
        if let Some(r) = self.x.get_mut(usize::from(n)) {
            *r = v;
        }
        Ok(())
    }
    fn sp(&mut self) -> Result<u64, Self::Error> {
        Ok(self.sp)
    }
    fn set_sp(&mut self, v: u64) -> Result<(), Self::Error> {
        self.sp = v;
        Ok(())
    }
    fn nzcv(&mut self) -> Result<u8, Self::Error> {
        Ok(self.nzcv)
    }
    fn set_nzcv(&mut self, nzcv: u8) -> Result<(), Self::Error> {
        self.nzcv = nzcv & 0xf;
        Ok(())
    }
}

const N: u8 = 8;
const Z: u8 = 4;
const C: u8 = 2;
const V: u8 = 1;

fn width_mask(sf: bool) -> u64 {
    if sf { u64::MAX } else { 0xffff_ffff }
}

fn datasize(sf: bool) -> u32 {
    if sf { 64 } else { 32 }
}

fn read<C: Cpu>(cpu: &mut C, r: Gpr, sf: bool) -> Result<u64, C::Error> {
    let v = match r {
        Gpr::X(n) => cpu.x(n)?,
        Gpr::Zr => 0,
        Gpr::Sp => cpu.sp()?,
    };
    Ok(v & width_mask(sf))
}

fn write<C: Cpu>(cpu: &mut C, r: Gpr, sf: bool, v: u64) -> Result<(), C::Error> {
    let v = v & width_mask(sf);
    match r {
        Gpr::X(n) => cpu.set_x(n, v),
        Gpr::Zr => Ok(()),
        Gpr::Sp => cpu.set_sp(v),
    }
}

/// `AddWithCarry(x, y, carry_in)` at the data size: the result and NZCV.
fn add_with_carry(x: u64, y: u64, carry: bool, sf: bool) -> (u64, u8) {
    let bits = datasize(sf);
    let m = width_mask(sf);
    let (x, y) = (x & m, y & m);
    let wide = u128::from(x) + u128::from(y) + u128::from(carry);
    let r = (wide as u64) & m;
    let sign = 1u64 << (bits - 1);
    let mut f = 0;
    if r & sign != 0 {
        f |= N;
    }
    if r == 0 {
        f |= Z;
    }
    if wide > u128::from(m) {
        f |= C;
    }
    // Signed overflow: both operands have the same sign and the result not.
    if (x ^ r) & (y ^ r) & sign != 0 {
        f |= V;
    }
    (r, f)
}

/// `ConditionHolds(cond)` for NZCV in bits 3:0.
pub fn condition_holds(cond: u8, nzcv: u8) -> bool {
    let n = nzcv & N != 0;
    let z = nzcv & Z != 0;
    let c = nzcv & C != 0;
    let v = nzcv & V != 0;
    let r = match (cond >> 1) & 7 {
        0 => z,
        1 => c,
        2 => n,
        3 => v,
        4 => c && !z,
        5 => n == v,
        6 => n == v && !z,
        _ => true,
    };
    if cond & 1 == 1 && cond & 0xf != 0xf {
        !r
    } else {
        r
    }
}

/// `ShiftReg`: shift `v` (data size) by `amount` (below the data size).
fn shift(v: u64, kind: ShiftKind, amount: u32, sf: bool) -> u64 {
    let bits = datasize(sf);
    let m = width_mask(sf);
    let v = v & m;
    let a = amount % bits;
    let r = match kind {
        ShiftKind::Lsl => v.checked_shl(a).unwrap_or(0),
        ShiftKind::Lsr => v.checked_shr(a).unwrap_or(0),
        ShiftKind::Asr => {
            let s = ((v << (64 - bits)) as i64) >> (64 - bits);
            (s >> a) as u64
        }
        ShiftKind::Ror => {
            if a == 0 {
                v
            } else {
                (v >> a) | (v << (bits - a))
            }
        }
    };
    r & m
}

/// `ExtendReg`: extend the low bits of `v` then shift left.
fn extend(v: u64, ext: ExtendKind, sh: u8, sf: bool) -> u64 {
    let x = match ext {
        ExtendKind::Uxtb => v & 0xff,
        ExtendKind::Uxth => v & 0xffff,
        ExtendKind::Uxtw => v & 0xffff_ffff,
        ExtendKind::Uxtx => v,
        ExtendKind::Sxtb => v as u8 as i8 as i64 as u64,
        ExtendKind::Sxth => v as u16 as i16 as i64 as u64,
        ExtendKind::Sxtw => v as u32 as i32 as i64 as u64,
        ExtendKind::Sxtx => v,
    };
    (x << (sh & 7)) & width_mask(sf)
}

fn operand<C: Cpu>(cpu: &mut C, op: Operand, sf: bool) -> Result<u64, C::Error> {
    Ok(match op {
        Operand::Imm(i) => i & width_mask(sf),
        Operand::Shifted { rm, kind, amount } => {
            shift(read(cpu, rm, sf)?, kind, u32::from(amount), sf)
        }
        Operand::Extended { rm, ext, shift } => {
            // The register is read at 64 bits for UXTX/SXTX only; extension
            // uses its low bits either way.
            let v = match rm {
                Gpr::X(n) => cpu.x(n)?,
                _ => 0,
            };
            extend(v, ext, shift, sf)
        }
    })
}

fn ones(n: u32) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

fn ror_in(v: u64, r: u32, esize: u32) -> u64 {
    let m = ones(esize);
    let v = v & m;
    let r = r % esize;
    if r == 0 {
        v
    } else {
        ((v >> r) | (v << (esize - r))) & m
    }
}

fn replicate(v: u64, esize: u32, m: u32) -> u64 {
    let mut out = 0u64;
    let mut at = 0;
    while at < m {
        out |= v << at;
        at += esize;
    }
    out & ones(m)
}

/// `DecodeBitMasks(immN, imms, immr, immediate, M)`: `(wmask, tmask)`, or
/// `None` where the pseudocode is UNDEFINED (no element size, or an all-ones
/// logical immediate).
pub fn decode_bit_masks(
    n: bool,
    imms: u8,
    immr: u8,
    immediate: bool,
    m: u32,
) -> Option<(u64, u64)> {
    let combined = (u32::from(n) << 6) | (u32::from(!imms) & 0x3f);
    if combined == 0 {
        return None;
    }
    let len = 31 - combined.leading_zeros();
    if len < 1 {
        return None;
    }
    let esize = 1u32 << len;
    if esize > m {
        return None;
    }
    let levels = esize - 1;
    let s = u32::from(imms) & levels;
    let r = u32::from(immr) & levels;
    if immediate && s == levels {
        return None;
    }
    let d = s.wrapping_sub(r) & levels;
    let welem = ones(s + 1);
    let telem = ones(d + 1);
    Some((
        replicate(ror_in(welem, r, esize), esize, m),
        replicate(telem, esize, m),
    ))
}

fn branch_target(pc: u64, offset: i64) -> Option<u64> {
    canonical(pc.wrapping_add(offset as u64))
}

/// The target if `AArch64.BranchAddr` leaves it unchanged whatever TBI says:
/// bits 63:56 equal to bit 55.
fn canonical(t: u64) -> Option<u64> {
    ((((t << 8) as i64) >> 8) as u64 == t).then_some(t)
}

/// Execute `insn` located at `pc`. Returns the address of the next
/// instruction, or `Ok(None)` with nothing changed when the instruction must
/// be left to the CPU (a branch target that `AArch64.BranchAddr` would
/// rewrite). A register error may leave the instruction half done only if the
/// [`Cpu`] fails a write after a read succeeded; [`IntState`] never fails.
pub fn execute<C: Cpu>(insn: &IntInsn, pc: u64, cpu: &mut C) -> Result<Option<u64>, C::Error> {
    let next = pc.wrapping_add(4);
    match *insn {
        IntInsn::AddSub {
            sf,
            sub,
            setflags,
            rd,
            rn,
            op2,
        } => {
            let a = read(cpu, rn, sf)?;
            let b = operand(cpu, op2, sf)?;
            let (r, f) = if sub {
                add_with_carry(a, !b, true, sf)
            } else {
                add_with_carry(a, b, false, sf)
            };
            if setflags {
                cpu.set_nzcv(f)?;
            }
            write(cpu, rd, sf, r)?;
        }
        IntInsn::AddSubCarry {
            sf,
            sub,
            setflags,
            rd,
            rn,
            rm,
        } => {
            let a = read(cpu, rn, sf)?;
            let b = read(cpu, rm, sf)?;
            let c = cpu.nzcv()? & C != 0;
            let (r, f) = add_with_carry(a, if sub { !b } else { b }, c, sf);
            if setflags {
                cpu.set_nzcv(f)?;
            }
            write(cpu, rd, sf, r)?;
        }
        IntInsn::Logical {
            sf,
            op,
            setflags,
            invert,
            rd,
            rn,
            op2,
        } => {
            let a = read(cpu, rn, sf)?;
            let mut b = operand(cpu, op2, sf)?;
            if invert {
                b = !b & width_mask(sf);
            }
            let r = match op {
                LogicOp::And => a & b,
                LogicOp::Orr => a | b,
                LogicOp::Eor => a ^ b,
            };
            if setflags {
                let mut f = 0;
                if r >> (datasize(sf) - 1) & 1 != 0 {
                    f |= N;
                }
                if r == 0 {
                    f |= Z;
                }
                cpu.set_nzcv(f)?;
            }
            write(cpu, rd, sf, r)?;
        }
        IntInsn::MoveWide {
            sf,
            op,
            rd,
            imm16,
            shift,
        } => {
            let sh = u32::from(shift & 63);
            let v = u64::from(imm16) << sh;
            let r = match op {
                MoveOp::Z => v,
                MoveOp::N => !v,
                MoveOp::K => {
                    let old = read(cpu, rd, sf)?;
                    (old & !(0xffffu64 << sh)) | v
                }
            };
            write(cpu, rd, sf, r)?;
        }
        IntInsn::Adr { rd, offset, page } => {
            let base = if page { pc & !0xfff } else { pc };
            write(cpu, rd, true, base.wrapping_add(offset as u64))?;
        }
        IntInsn::Bitfield {
            sf,
            op,
            rd,
            rn,
            immr,
            imms,
            wmask,
            tmask,
        } => {
            let bits = datasize(sf);
            let src = read(cpu, rn, sf)?;
            let dst = match op {
                BitfieldOp::Bfm => read(cpu, rd, sf)?,
                _ => 0,
            };
            let bot = (dst & !wmask) | (ror_in(src, u32::from(immr), bits) & wmask);
            let top = match op {
                BitfieldOp::Sbfm => {
                    if (src >> (u32::from(imms) % bits)) & 1 != 0 {
                        width_mask(sf)
                    } else {
                        0
                    }
                }
                BitfieldOp::Bfm => dst,
                BitfieldOp::Ubfm => 0,
            };
            write(cpu, rd, sf, (top & !tmask) | (bot & tmask))?;
        }
        IntInsn::Extract {
            sf,
            rd,
            rn,
            rm,
            lsb,
        } => {
            let bits = datasize(sf);
            let hi = read(cpu, rn, sf)?;
            let lo = read(cpu, rm, sf)?;
            let lsb = u32::from(lsb) % bits;
            let r = if lsb == 0 {
                lo
            } else {
                (lo >> lsb) | (hi << (bits - lsb))
            };
            write(cpu, rd, sf, r)?;
        }
        IntInsn::CondSelect {
            sf,
            op,
            rd,
            rn,
            rm,
            cond,
        } => {
            let f = cpu.nzcv()?;
            let r = if condition_holds(cond, f) {
                read(cpu, rn, sf)?
            } else {
                let m = read(cpu, rm, sf)?;
                match op {
                    SelectOp::Csel => m,
                    SelectOp::Csinc => m.wrapping_add(1),
                    SelectOp::Csinv => !m,
                    SelectOp::Csneg => (!m).wrapping_add(1),
                }
            };
            write(cpu, rd, sf, r)?;
        }
        IntInsn::CondCompare {
            sf,
            cmn,
            rn,
            op2,
            nzcv,
            cond,
        } => {
            let f = cpu.nzcv()?;
            let new = if condition_holds(cond, f) {
                let a = read(cpu, rn, sf)?;
                let b = operand(cpu, op2, sf)?;
                if cmn {
                    add_with_carry(a, b, false, sf).1
                } else {
                    add_with_carry(a, !b, true, sf).1
                }
            } else {
                nzcv & 0xf
            };
            cpu.set_nzcv(new)?;
        }
        IntInsn::ShiftReg {
            sf,
            kind,
            rd,
            rn,
            rm,
        } => {
            let v = read(cpu, rn, sf)?;
            let amount = (read(cpu, rm, sf)? % u64::from(datasize(sf))) as u32;
            write(cpu, rd, sf, shift(v, kind, amount, sf))?;
        }
        IntInsn::Div {
            sf,
            signed,
            rd,
            rn,
            rm,
        } => {
            let a = read(cpu, rn, sf)?;
            let b = read(cpu, rm, sf)?;
            let r = if b == 0 {
                0
            } else if signed {
                if sf {
                    (a as i64).wrapping_div(b as i64) as u64
                } else {
                    u64::from((a as u32 as i32).wrapping_div(b as u32 as i32) as u32)
                }
            } else {
                a / b
            };
            write(cpu, rd, sf, r)?;
        }
        IntInsn::Unary { sf, op, rd, rn } => {
            let v = read(cpu, rn, sf)?;
            let r = match (op, sf) {
                (UnaryOp::Rbit, true) => v.reverse_bits(),
                (UnaryOp::Rbit, false) => u64::from((v as u32).reverse_bits()),
                (UnaryOp::Rev16, _) => {
                    ((v & 0x00ff_00ff_00ff_00ff) << 8) | ((v >> 8) & 0x00ff_00ff_00ff_00ff)
                }
                (UnaryOp::Rev32, _) => {
                    let lo = u64::from((v as u32).swap_bytes());
                    let hi = u64::from(((v >> 32) as u32).swap_bytes());
                    (hi << 32) | lo
                }
                (UnaryOp::Rev, true) => v.swap_bytes(),
                (UnaryOp::Rev, false) => u64::from((v as u32).swap_bytes()),
                (UnaryOp::Clz, true) => u64::from(v.leading_zeros()),
                (UnaryOp::Clz, false) => u64::from((v as u32).leading_zeros()),
                (UnaryOp::Cls, true) => u64::from(((v ^ (v << 1)) | 1).leading_zeros()),
                (UnaryOp::Cls, false) => {
                    let w = v as u32;
                    u64::from(((w ^ (w << 1)) | 1).leading_zeros())
                }
            };
            write(cpu, rd, sf, r)?;
        }
        IntInsn::MulAdd {
            sf,
            sub,
            rd,
            rn,
            rm,
            ra,
        } => {
            let p = read(cpu, rn, sf)?.wrapping_mul(read(cpu, rm, sf)?);
            let a = read(cpu, ra, sf)?;
            let r = if sub {
                a.wrapping_sub(p)
            } else {
                a.wrapping_add(p)
            };
            write(cpu, rd, sf, r)?;
        }
        IntInsn::MulAddLong {
            signed,
            sub,
            rd,
            rn,
            rm,
            ra,
        } => {
            let n = read(cpu, rn, false)?;
            let m = read(cpu, rm, false)?;
            let p = if signed {
                (i64::from(n as u32 as i32) * i64::from(m as u32 as i32)) as u64
            } else {
                n * m
            };
            let a = read(cpu, ra, true)?;
            let r = if sub {
                a.wrapping_sub(p)
            } else {
                a.wrapping_add(p)
            };
            write(cpu, rd, true, r)?;
        }
        IntInsn::MulHigh { signed, rd, rn, rm } => {
            let n = read(cpu, rn, true)?;
            let m = read(cpu, rm, true)?;
            let r = if signed {
                ((i128::from(n as i64) * i128::from(m as i64)) >> 64) as u64
            } else {
                ((u128::from(n) * u128::from(m)) >> 64) as u64
            };
            write(cpu, rd, true, r)?;
        }
        IntInsn::Branch { link, offset } => {
            let Some(t) = branch_target(pc, offset) else {
                return Ok(None);
            };
            if link {
                write(cpu, Gpr::X(30), true, next)?;
            }
            return Ok(Some(t));
        }
        IntInsn::BranchCond { cond, offset } => {
            let Some(t) = branch_target(pc, offset) else {
                return Ok(None);
            };
            let f = cpu.nzcv()?;
            return Ok(Some(if condition_holds(cond, f) { t } else { next }));
        }
        IntInsn::CompareBranch {
            sf,
            nonzero,
            rt,
            offset,
        } => {
            let Some(t) = branch_target(pc, offset) else {
                return Ok(None);
            };
            let v = read(cpu, rt, sf)?;
            return Ok(Some(if (v != 0) == nonzero { t } else { next }));
        }
        IntInsn::TestBranch {
            nonzero,
            rt,
            bit,
            offset,
        } => {
            let Some(t) = branch_target(pc, offset) else {
                return Ok(None);
            };
            let v = read(cpu, rt, true)?;
            let set = (v >> (bit & 63)) & 1 != 0;
            return Ok(Some(if set == nonzero { t } else { next }));
        }
        IntInsn::Ret { rn } => {
            let t = read(cpu, rn, true)?;
            return Ok(canonical(t));
        }
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a64::decode;

    fn run(word: u32, st: &mut IntState) -> Option<u64> {
        let i = decode(word).unwrap_or_else(|| panic!("{word:#x} not decoded"));
        execute(&i, 0x1000, st).unwrap()
    }

    #[test]
    fn flags_of_subs_and_adds() {
        let mut st = IntState::default();
        st.x[2] = 1;
        // subs x2, x2, #1 -> 0: Z and C set.
        assert_eq!(run(0xf100_0442, &mut st), Some(0x1004));
        assert_eq!((st.x[2], st.nzcv), (0, Z | C));
        // subs x2, x2, #1 -> -1: N, borrow (C clear).
        run(0xf100_0442, &mut st);
        assert_eq!((st.x[2], st.nzcv), (u64::MAX, N));
        // adds w0, w1, w1 with w1 = 0x4000_0000: signed overflow into N.
        st.x[1] = 0x4000_0000;
        run(0x2b01_0020, &mut st);
        assert_eq!((st.x[0], st.nzcv), (0x8000_0000, N | V));
    }

    #[test]
    fn bit_masks_and_bitfields() {
        // and x0, x1, #0xff (N=1 immr=0 imms=7).
        let mut st = IntState::default();
        st.x[1] = 0x1234;
        run(0x9240_1c20, &mut st);
        assert_eq!(st.x[0], 0x34);
        // An all-ones logical immediate is unallocated.
        assert_eq!(decode_bit_masks(true, 0x3f, 0, true, 64), None);
        // ubfx x0, x1, #4, #8 = ubfm x0, x1, #4, #11.
        st.x[1] = 0xabcd;
        run(0xd344_2c20, &mut st);
        assert_eq!(st.x[0], 0xbc);
        // sxtw x0, w1 = sbfm x0, x1, #0, #31.
        st.x[1] = 0x8000_0000;
        run(0x9340_7c20, &mut st);
        assert_eq!(st.x[0], 0xffff_ffff_8000_0000);
    }

    #[test]
    fn branches_and_conditions() {
        let mut st = IntState {
            nzcv: Z,
            ..Default::default()
        };
        // b.ne .-8 not taken, b.eq taken.
        assert_eq!(run(0x54ff_ffc1, &mut st), Some(0x1004));
        assert_eq!(run(0x54ff_ffc0, &mut st), Some(0x0ff8));
        // bl .+8 writes X30.
        assert_eq!(run(0x9400_0002, &mut st), Some(0x1008));
        assert_eq!(st.x[30], 0x1004);
        // ret to a tagged address is left to the CPU.
        st.x[30] = 0x0100_0000_0000_2000;
        assert_eq!(run(0xd65f_03c0, &mut st), None);
        st.x[30] = 0xffff_0000_0000_2000;
        assert_eq!(run(0xd65f_03c0, &mut st), Some(0xffff_0000_0000_2000));
        assert!(condition_holds(0xe, 0) && condition_holds(0xf, 0));
    }
}
