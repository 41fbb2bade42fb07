// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The exclusive monitor and the fused LDXR + STXR.
//!
//! One monitor per [`Emulator`] (so one emulator per vCPU): an emulated
//! load-exclusive arms it with its address and size; an emulated
//! store-exclusive succeeds (status 0) only if it is armed with exactly that
//! address and size, and always disarms it. Why a store-exclusive that directly
//! follows an emulated load-exclusive is run in the same exit: see
//! [`Emulator::fuse_store_exclusive`] and docs/emulator.md, "Exclusives".

use crate::decode::{Base, Op};
use crate::mem::{GuestRam, MmioBus};
use crate::regs::{Reg, VcpuRegs};
use crate::stage1::{El, LazyStage1};

use super::{EmulateError, Emulator, Outcome, PSTATE_NRW, consistent, decode_word, fetch};

/// SCTLR_EL1.SA: SP alignment check at EL1.
const SCTLR_SA: u64 = 1 << 3;
/// SCTLR_EL1.SA0: SP alignment check at EL0.
const SCTLR_SA0: u64 = 1 << 4;

/// The exclusive monitor state: the address and size of the last emulated
/// load-exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Monitor {
    pub va: u64,
    pub bytes: u64,
}

impl Emulator {
    /// A store-exclusive of `bytes` at `va`: whether it passes, disarming the
    /// monitor either way.
    pub(crate) fn store_exclusive_passes(&mut self, va: u64, bytes: u64) -> bool {
        let pass = self.monitor == Some(Monitor { va, bytes });
        self.monitor = None;
        pass
    }

    /// A load-exclusive of `bytes` at `va` arms the monitor.
    pub(crate) fn arm_monitor(&mut self, va: u64, bytes: u64) {
        self.monitor = Some(Monitor { va, bytes });
    }

    /// After an emulated load-exclusive, emulate the store-exclusive that
    /// immediately follows it (the word at the new PC), in the same exit.
    ///
    /// Why: the emulated load-exclusive cannot arm the vCPU's own local
    /// monitor (the CPU never performed it), and the Arm ARM lets the CPU check
    /// its local monitor before it checks for an abort
    /// (`AArch64.ExclusiveMonitorsPass`: "It is IMPLEMENTATION DEFINED whether
    /// the detection of memory aborts happens before or after the check on the
    /// local Exclusives monitor"). QEMU's TCG does exactly that
    /// (target/arm/translate-a64.c `gen_store_exclusive` compares the address
    /// with `cpu_exclusive_addr` before any access), so the store-exclusive
    /// fails on the CPU without ever trapping and a retry loop on device
    /// memory spins forever. Running the pair back to back is one of the
    /// executions the architecture allows (nothing may intervene between two
    /// consecutive instructions). Returns `None` (nothing done) unless the next
    /// word is a store-exclusive the emulator handles; the caller then returns
    /// the load-exclusive's outcome and the CPU runs the store-exclusive itself.
    /// See docs/emulator.md, "Exclusive monitor".
    pub(crate) fn fuse_store_exclusive<R: VcpuRegs, M: GuestRam, B: MmioBus>(
        &mut self,
        regs: &mut R,
        ram: &M,
        bus: &mut B,
    ) -> Option<Result<Outcome, EmulateError>> {
        self.monitor?;
        let pstate = regs.get(Reg::Pstate).ok()?;
        if pstate & PSTATE_NRW != 0 {
            return None;
        }
        let el = match (pstate >> 2) & 3 {
            0 => El::El0,
            1 => El::El1,
            _ => return None,
        };
        let pc = regs.get(Reg::Pc).ok()?;
        let mut s1 = LazyStage1::read(regs, &mut self.pa_bits).ok()?;
        let word = fetch(s1.for_va(regs, pc, false).ok()?, pc, el, ram).ok()?;
        let s1 = *s1.regs();
        let next = decode_word(word).ok()?;
        if !matches!(next.op, Op::StoreExclusive { .. }) || !consistent(&next) {
            return None;
        }
        if next.base == Base::Sp {
            // The SP alignment check comes before any data access on the CPU
            // (pseudocode `CheckSPAlignment`): leave a store that would take
            // it to the CPU.
            let (check, sp_reg) = match el {
                El::El0 => (s1.sctlr & SCTLR_SA0 != 0, Reg::SpEl0),
                _ => (
                    s1.sctlr & SCTLR_SA != 0,
                    if pstate & 1 != 0 {
                        Reg::SpEl1
                    } else {
                        Reg::SpEl0
                    },
                ),
            };
            if check && !regs.get(sp_reg).ok()?.is_multiple_of(16) {
                return None;
            }
        }
        let r = self.emulate_with(regs, ram, bus, None, Some(&next));
        match r {
            Ok(Outcome::Emulated { .. }) => {
                self.count(&r);
                Some(r)
            }
            // The store would fault, or cannot be emulated: nothing of it was
            // applied (every check precedes every access); the CPU runs it.
            Ok(_) => None,
            // An access or register write failed after side effects may have
            // been made: report it.
            Err(e) => {
                let r = Err(e);
                self.count(&r);
                Some(r)
            }
        }
    }
}
