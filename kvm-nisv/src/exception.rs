// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Taking a synchronous exception to the guest's EL1, as the CPU would.
//!
//! KVM can only inject *external* aborts (`KVM_SET_VCPU_EVENTS`), with the
//! FAR the hardware reported. A fault the emulator finds (translation,
//! permission, alignment, or the external abort of one piece of an access) has
//! its own ESR and FAR, so the VMM makes the vCPU take it through the
//! registers. [`take_sync_exception`] does what the Arm ARM's
//! `AArch64.TakeException` does for a synchronous exception routed to EL1
//! (and what KVM's own `enter_exception64`, arch/arm64/kvm/hyp/exception.c,
//! does for the exceptions it injects):
//!
//! - SPSR_EL1 = PSTATE (the SPSR layout KVM exposes), ELR_EL1 = PC (the
//!   preferred return address of a data abort: the faulting instruction),
//!   ESR_EL1 = the syndrome, FAR_EL1 = the address when there is one;
//! - PSTATE: EL1h (EL1, SP_EL1, AArch64); D, A, I, F set; NZCV and DIT kept;
//!   PAN kept, and set when SCTLR_EL1.SPAN = 0; UAO, SS, IL and BTYPE cleared;
//!   SSBS = SCTLR_EL1.DSSBS; TCO set when the CPU has FEAT_MTE
//!   ([`EntryFeatures::mte`]); everything else zero;
//! - PC = VBAR_EL1 + 0x000 from EL1 with SP_EL0 (EL1t), + 0x200 from EL1 with
//!   SP_EL1 (EL1h), + 0x400 from EL0 in AArch64, + 0x600 from EL0 in AArch32.
//!
//! Not modelled: FEAT_NMI's PSTATE.ALLINT (KVM does not offer FEAT_NMI to
//! guests), FEAT_GCS's EXLOCK, FEAT_EBEP's PM, SCTLR_EL1.IESB/EIS
//! synchronization (no architectural state). The exclusive monitor of an
//! [`Emulator`](crate::emulate::Emulator) is cleared by
//! [`Emulator::take_fault`](crate::emulate::Emulator::take_fault), which calls
//! this function.

use crate::regs::{Reg, RegError, SysReg, VcpuRegs};

/// PSTATE.{N,Z,C,V}.
const NZCV: u64 = 0xf << 28;
/// PSTATE.DIT.
const DIT: u64 = 1 << 24;
/// PSTATE.PAN.
const PAN: u64 = 1 << 22;
/// PSTATE.SSBS.
const SSBS: u64 = 1 << 12;
/// PSTATE.TCO.
const TCO: u64 = 1 << 25;
/// PSTATE.{D,A,I,F}.
const DAIF: u64 = 0xf << 6;
/// PSTATE.M for EL1h.
const MODE_EL1H: u64 = 0b0101;
/// PSTATE.nRW (M\[4\]).
const NRW: u64 = 1 << 4;
/// SCTLR_EL1.SPAN.
const SCTLR_SPAN: u64 = 1 << 23;
/// SCTLR_EL1.DSSBS.
const SCTLR_DSSBS: u64 = 1 << 44;

/// Optional CPU features that change exception entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct EntryFeatures {
    /// FEAT_MTE: PSTATE.TCO is set on entry (ID_AA64PFR1_EL1.MTE != 0).
    pub mte: bool,
}

impl EntryFeatures {
    /// No optional feature.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the CPU implements FEAT_MTE.
    pub fn with_mte(mut self, mte: bool) -> Self {
        self.mte = mte;
        self
    }
}

/// Why the exception could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TakeError {
    /// A register could not be read or written. Registers written before the
    /// failure stay written.
    #[error("register access failed: {0}")]
    Regs(#[from] RegError),
    /// The vCPU is not at EL0 or EL1 (PSTATE.M names EL2 or EL3): an exception
    /// from there is not taken to EL1.
    #[error("PSTATE {pstate:#x} is not at EL0 or EL1")]
    NotEl0OrEl1 {
        /// PSTATE as read.
        pstate: u64,
    },
}

/// The vector offset from VBAR_EL1 and the new PSTATE for a synchronous
/// exception taken to EL1 from `pstate` (pure; see the module documentation).
pub fn entry(pstate: u64, sctlr: u64, features: EntryFeatures) -> Result<(u64, u64), TakeError> {
    let offset = if pstate & NRW != 0 {
        // AArch32: only EL0 (User mode) can take an exception to an AArch64 EL1.
        if pstate & 0xf != 0 {
            return Err(TakeError::NotEl0OrEl1 { pstate });
        }
        0x600
    } else {
        match (pstate >> 2) & 3 {
            0 => 0x400,
            1 if pstate & 1 != 0 => 0x200,
            1 => 0x000,
            _ => return Err(TakeError::NotEl0OrEl1 { pstate }),
        }
    };
    let mut new = (pstate & (NZCV | DIT | PAN)) | DAIF | MODE_EL1H;
    if pstate & NRW != 0 {
        // The AArch32 SPSR layout keeps NZCV and PAN in the same bits but DIT
        // in bit 21.
        new = (pstate & (NZCV | PAN)) | DAIF | MODE_EL1H | (((pstate >> 21) & 1) << 24);
    }
    if sctlr & SCTLR_SPAN == 0 {
        new |= PAN;
    }
    if sctlr & SCTLR_DSSBS != 0 {
        new |= SSBS;
    }
    if features.mte {
        new |= TCO;
    }
    Ok((offset, new))
}

/// Make the vCPU take a synchronous exception to EL1 with syndrome `esr` and,
/// when given, fault address `far` (FAR_EL1 is left alone otherwise, as for
/// exceptions that do not report one). See the module documentation for
/// exactly what is written. Reads PSTATE, PC, VBAR_EL1 and SCTLR_EL1; writes
/// SPSR_EL1, ELR_EL1, ESR_EL1, FAR_EL1, PSTATE and PC (in that order, so PC is
/// the last write).
pub fn take_sync_exception<R: VcpuRegs + ?Sized>(
    regs: &mut R,
    esr: u64,
    far: Option<u64>,
    features: EntryFeatures,
) -> Result<(), TakeError> {
    let pstate = regs.get(Reg::Pstate)?;
    let pc = regs.get(Reg::Pc)?;
    let sctlr = regs.get(Reg::Sys(SysReg::SctlrEl1))?;
    let (offset, new) = entry(pstate, sctlr, features)?;
    let vbar = regs.get(Reg::Sys(SysReg::VbarEl1))?;
    regs.set(Reg::Sys(SysReg::SpsrEl1), pstate)?;
    regs.set(Reg::Sys(SysReg::ElrEl1), pc)?;
    regs.set(Reg::Sys(SysReg::EsrEl1), esr)?;
    if let Some(far) = far {
        regs.set(Reg::Sys(SysReg::FarEl1), far)?;
    }
    regs.set(Reg::Pstate, new)?;
    regs.set(Reg::Pc, vbar.wrapping_add(offset))?;
    Ok(())
}
