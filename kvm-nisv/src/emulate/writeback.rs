// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Writing an emulated instruction's results: destination registers (with
//! extension, SIMD&FP completion), CAS/atomic old values, the store-exclusive
//! status, base writeback, then PC and PSTATE.
//!
//! Order (docs/emulator.md, "Steps"): loaded values, then the status, then base
//! writeback (so writeback wins over a loaded value in the same register), then
//! PC += 4, clearing PSTATE.BTYPE and PSTATE.SS like KVM's `kvm_skip_instr`.

use alloc::vec::Vec;

use crate::decode::{Base, Insn, LoadExt, Op, RegSlot, VecWrite};
use crate::regs::{Reg, RegError, VcpuRegs};

use super::access::mask;
use super::plan::sext;

/// PSTATE.BTYPE, cleared by every non-branch instruction.
pub(crate) const PSTATE_BTYPE: u64 = 3 << 10;
/// PSTATE.SS (software step), cleared when an instruction is stepped over.
pub(crate) const PSTATE_SS: u64 = 1 << 21;

/// Everything the perform phase produced, to be written back.
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// Loaded element values (loads), old values (atomics, CAS).
    pub loaded: Vec<u128>,
    /// The store-exclusive status register and value.
    pub status: Option<(u8, u64)>,
}

/// Where the instruction's results go, besides its own fields.
#[derive(Debug)]
pub(crate) struct Commit<'a> {
    /// The old values of V registers a single-structure load merges into.
    pub old_v: &'a [(u8, u128)],
    /// The base writeback value, if any.
    pub writeback: Option<u64>,
    /// The stack pointer register an SP base uses.
    pub sp_reg: Reg,
    /// The instruction's PC.
    pub pc: u64,
    /// PSTATE as read.
    pub pstate: u64,
}

/// Write the results, the base, PC and PSTATE.
pub(crate) fn commit<R: VcpuRegs + ?Sized>(
    regs: &mut R,
    insn: &Insn,
    res: &Results,
    c: &Commit<'_>,
) -> Result<(), RegError> {
    match insn.op {
        Op::Load | Op::LoadExclusive => write_loads(regs, insn, &res.loaded, c.old_v)?,
        Op::Atomic { .. } => {
            if let (Some(e), Some(&v)) = (insn.elements.as_slice().first(), res.loaded.first()) {
                write_gpr(regs, e.reg, v as u64, usize::from(e.size))?;
            }
        }
        Op::CompareAndSwap { s } => {
            for (i, (&v, e)) in res.loaded.iter().zip(&insn.elements).enumerate() {
                let n = s.saturating_add(i as u8);
                if n < 31 {
                    regs.set(Reg::X(n), v as u64 & mask(usize::from(e.size)))?;
                }
            }
        }
        _ => {}
    }
    if let Some((s, st)) = res.status
        && s < 31
    {
        regs.set(Reg::X(s), st)?;
    }
    if let Some(v) = c.writeback {
        match insn.base {
            Base::X(n) if n < 31 => regs.set(Reg::X(n), v)?,
            Base::Sp => regs.set(c.sp_reg, v)?,
            _ => {}
        }
    }
    advance_pc(regs, c.pc, c.pstate)
}

/// PC += 4; clear PSTATE.BTYPE and PSTATE.SS (only written when set).
pub(crate) fn advance_pc<R: VcpuRegs + ?Sized>(
    regs: &mut R,
    pc: u64,
    pstate: u64,
) -> Result<(), RegError> {
    regs.set(Reg::Pc, pc.wrapping_add(4))?;
    let pstate_new = pstate & !(PSTATE_BTYPE | PSTATE_SS);
    if pstate_new != pstate {
        // kvm: arch/arm64/kvm/hyp/include/hyp/adjust_pc.h `kvm_skip_instr`
        // clears BTYPE and SS when it steps over an instruction.
        regs.set(Reg::Pstate, pstate_new)?;
    }
    Ok(())
}

/// Write a loaded value to a general-purpose slot with its extension.
pub(crate) fn write_gpr<R: VcpuRegs + ?Sized>(
    regs: &mut R,
    slot: RegSlot,
    v: u64,
    size: usize,
) -> Result<(), RegError> {
    if let RegSlot::Gpr { n, ext } = slot
        && n < 31
    {
        let v = v & mask(size);
        let val = match ext {
            LoadExt::Zero => v,
            LoadExt::Sign32 => sext(v, size) & 0xffff_ffff,
            LoadExt::Sign64 => sext(v, size),
        };
        regs.set(Reg::X(n), val)?;
    }
    Ok(())
}

/// Write the loaded elements to their registers, completing SIMD&FP
/// destinations per [`VecWrite`].
pub(crate) fn write_loads<R: VcpuRegs + ?Sized>(
    regs: &mut R,
    insn: &Insn,
    loaded: &[u128],
    old_v: &[(u8, u128)],
) -> Result<(), RegError> {
    let mut vregs: Vec<(u8, u128)> = Vec::new();
    for (e, &v) in insn.elements.as_slice().iter().zip(loaded) {
        let size = usize::from(e.size);
        match e.reg {
            RegSlot::Gpr { .. } => write_gpr(regs, e.reg, v as u64, size)?,
            RegSlot::Vec { n, lane } => {
                let idx = match vregs.iter().position(|(r, _)| *r == n) {
                    Some(i) => i,
                    None => {
                        let start = match insn.vec_write {
                            VecWrite::MergeLanes => old_v
                                .iter()
                                .find(|(r, _)| *r == n)
                                .map(|(_, v)| *v)
                                .unwrap_or(0),
                            _ => 0,
                        };
                        vregs.push((n, start));
                        vregs.len() - 1
                    }
                };
                let m = if size >= 16 {
                    u128::MAX
                } else {
                    (1u128 << (8 * size)) - 1
                };
                let v = v & m;
                let Some(cur) = vregs.get_mut(idx).map(|(_, v)| v) else {
                    continue;
                };
                match insn.vec_write {
                    VecWrite::Replicate { bytes } => {
                        let mut r = 0u128;
                        let mut at = 0usize;
                        while at + size <= usize::from(bytes) && at < 16 {
                            r |= v << (8 * at);
                            at += size;
                        }
                        *cur = r;
                    }
                    _ => {
                        let sh = 8 * usize::from(lane) * size;
                        *cur = (*cur & !(m << sh)) | (v << sh);
                    }
                }
            }
        }
    }
    for (n, v) in vregs {
        regs.set_v(n, v)?;
    }
    Ok(())
}
