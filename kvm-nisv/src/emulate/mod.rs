// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The load/store emulator.
//!
//! [`Emulator::emulate`] executes, on behalf of the guest, the instruction at
//! the guest's PC that took a data abort without a valid syndrome: it fetches
//! the word through the stage-1 walker, decodes it, translates every element of
//! the access on its own, checks everything (translation, permissions,
//! alignment, that each target is RAM or a device) before any side effect, then
//! performs the element accesses in architectural order, writes the
//! destination registers, applies base writeback and advances the PC.
//!
//! The full model (gathering and splitting of device accesses, the exclusive
//! monitor, DC ZVA, what a fault leaves behind, the `fault_ipa` cross-check)
//! is in `docs/emulator.md`. The work is split along what it models: [`plan`]
//! (address, alignment, translation and splitting: pure), `access` (element
//! accesses on RAM and the bus), `writeback` (registers, base, PC/PSTATE) and
//! `exclusive` (the monitor and the fused LDXR + STXR). In short:
//!
//! - **Translation.** An element is split where its translation ends (a page
//!   or block boundary). The planner walks once per page or block and reuses
//!   that translation for every later byte of the instruction in it; every
//!   check is still made per element and per piece.
//! - **Gathering.** A piece that is RAM is one [`GuestRam`] access. Device
//!   pieces become naturally aligned bus accesses at increasing addresses,
//!   by memory type (Arm ARM B2.10.2.1 "Gathering"): on non-Gathering Device
//!   memory (nGnRnE, nGnRE, nGRE; every data access with the MMU off) one
//!   access per element at its single-copy atomic size (a 16-byte Q element is
//!   two 8-byte accesses; an LDXP/STXP/CASP pair of W registers one 8-byte
//!   access); on Normal memory and Device-GRE the contiguous device bytes of
//!   the instruction are gathered into accesses of up to
//!   [`MmioBus::max_access_size`] (8 by default), so `ld1 {v0.16b-v3.16b}` is
//!   eight 8-byte accesses instead of 64 one-byte ones. A single unaligned
//!   element on Normal memory is cut into the largest aligned pieces (a
//!   3-byte piece at an odd address is 1 + 2 bytes).
//! - **Endianness.** Each element is byte-reversed at its own size when the
//!   data endianness (SCTLR_EL1.EE at EL1, E0E at EL0) is big, before
//!   gathering; bus data is in address order either way.
//! - **Exclusive monitor.** One per [`Emulator`] (so one emulator per vCPU): an
//!   emulated load-exclusive arms it with its address and size; an emulated
//!   store-exclusive succeeds (status 0) only if it is armed with exactly that
//!   address and size, and always disarms it.
//! - **Faults.** Every check happens before any access, so an
//!   [`Outcome::GuestFault`] or [`Outcome::NoDevice`] leaves registers and
//!   memory unchanged. A host-side failure during the accesses (a device
//!   rejecting an access, a register write failing) is an [`EmulateError`] and
//!   may leave the accesses made so far behind.

mod access;
mod exclusive;
pub mod plan;
mod writeback;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::decode::{Base, Class, Insn, Offset, Op, RegSlot, Unsupported, VecWrite, Writeback};
use crate::mem::{BusError, GuestRam, MemError, MmioBus};
use crate::regs::{Reg, RegError, SysReg, VcpuRegs};
use crate::stage1::{self, AccessKind, El, LazyStage1, SCTLR_DZE, Stage1Fault, Stage1Regs};

use self::access::mask;
use self::exclusive::Monitor;
use self::plan::{AccessSpec, Problem};
use self::writeback::{Commit, Results};

/// PSTATE.nRW (M\[4\]): the guest is in AArch32.
const PSTATE_NRW: u64 = 1 << 4;
/// PSTATE.M\[0\] in AArch64: SP_ELx selected (SPSel).
const PSTATE_SP: u64 = 1 << 0;
/// PSTATE.PAN.
const PSTATE_PAN: u64 = 1 << 22;
/// PSTATE.UAO: LDTR/STTR at EL1 behave as ordinary accesses.
const PSTATE_UAO: u64 = 1 << 23;

/// A fault the guest should see, as the hardware would have reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct GuestFault {
    /// The faulting virtual address (FAR_EL1): the address of the first byte
    /// that faulted (for DC ZVA, the address in Xt).
    pub va: u64,
    /// Fault kind and lookup level.
    pub fault: Stage1Fault,
    /// Whether the faulting access was a write (ESR_EL1.ISS.WnR). Atomic
    /// read-modify-write accesses, CAS and DC ZVA report a write.
    pub write: bool,
    /// The exception level the fault is taken from (selects the EC).
    pub from_el: El,
}

impl GuestFault {
    /// A fault at `va` from `from_el`; `write` gives ESR.WnR.
    pub fn new(va: u64, fault: Stage1Fault, write: bool, from_el: El) -> Self {
        GuestFault {
            va,
            fault,
            write,
            from_el,
        }
    }

    /// The synchronous external abort (DFSC 0x10, not on a table walk) a CPU
    /// takes for an access of which the byte at `va` reaches neither RAM nor a
    /// device: FAR = `va` (FnV = 0).
    pub fn external_abort(va: u64, write: bool, from_el: El) -> Self {
        GuestFault {
            va,
            fault: Stage1Fault {
                kind: stage1::FaultKind::ExternalAbort,
                level: 0,
            },
            write,
            from_el,
        }
    }

    /// ESR_EL1.ISS.DFSC.
    pub fn dfsc(&self) -> u8 {
        self.fault.dfsc()
    }

    /// ESR_EL1.ISS for this data abort: ISV = 0, WnR, DFSC. The Arm ARM's ISV
    /// description (ISS encoding for an exception from a Data Abort) sets ISV
    /// only for some stage 2 aborts reported in ESR_EL2; a fault taken to EL1
    /// reports ISV = 0, as QEMU's `merge_syn_data_abort` does. FnV = 0: FAR_EL1
    /// is valid, also for external aborts. CM is 0 (DC ZVA is reported as a write,
    /// not as cache maintenance).
    pub fn iss(&self) -> u32 {
        u32::from(self.dfsc()) | (u32::from(self.write) << 6)
    }

    /// The whole ESR_EL1 value: EC 0x24 (Data Abort from a lower EL) when taken
    /// from EL0, 0x25 (same EL) from EL1; IL = 1; ISS.
    pub fn esr(&self) -> u64 {
        let ec: u64 = match self.from_el {
            El::El0 => 0x24,
            El::El1 => 0x25,
        };
        (ec << 26) | (1 << 25) | u64::from(self.iss())
    }
}

/// What happened to the instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// All accesses were made, registers written, writeback applied, PC += 4.
    Emulated {
        /// The instruction.
        insn: Insn,
    },
    /// A target is neither RAM nor a device: the guest takes `fault`, a
    /// synchronous external abort at `va` (deliver it like a
    /// [`Outcome::GuestFault`], or inject an external abort through KVM).
    /// Guest state is unchanged.
    NoDevice {
        /// The instruction.
        insn: Insn,
        /// Virtual address of the first byte without RAM or device.
        va: u64,
        /// Its IPA.
        ipa: u64,
        /// The external abort the CPU would take (FAR = `va`).
        fault: GuestFault,
    },
    /// The instruction cannot be emulated (see `reason`). Guest state is
    /// unchanged.
    Unsupported {
        /// The instruction word, or `None` when nothing was fetched (the vCPU
        /// is not in a state the emulator handles).
        word: Option<u32>,
        /// Its address.
        pc: u64,
        /// Why.
        reason: UnsupportedReason,
    },
    /// A translation, permission, access flag, address size or alignment fault
    /// the guest should see. Guest state is unchanged.
    GuestFault(GuestFault),
}

/// Why [`Outcome::Unsupported`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum UnsupportedReason {
    /// The guest is in AArch32 (PSTATE.nRW = 1): nothing was fetched.
    #[error("the vCPU is in AArch32")]
    AArch32,
    /// The guest is not at EL0 or EL1: nothing was fetched.
    #[error("the vCPU is at EL{el}")]
    NotEl0OrEl1 {
        /// PSTATE.EL.
        el: u8,
    },
    /// The decoder does not emulate this word ([`crate::decode::Unsupported`]).
    #[error("not a load/store the decoder emulates")]
    NotDecoded,
    /// DC ZVA is prohibited (DCZID_EL0.DZP = 1, a block size above 2 KiB, or
    /// EL0 with SCTLR_EL1.DZE = 0): the CPU would have taken an UNDEFINED or
    /// trap exception, which the emulator does not synthesise.
    #[error("DC ZVA is prohibited (DCZID_EL0 {dczid:#x})")]
    DcZvaProhibited {
        /// DCZID_EL0 as read (or as given to [`Emulator::with_dczid`]).
        dczid: u64,
    },
    /// The instruction description is inconsistent (an `Insn` built by the
    /// caller and given to [`Emulator::emulate_insn`], or a decoder bug).
    #[error("inconsistent instruction description")]
    Inconsistent,
}

/// Why the instruction at PC could not be fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchFailure {
    /// The PC is not 4-byte aligned.
    #[error("PC is not aligned")]
    Misaligned,
    /// Stage-1 translation of the PC faulted: the guest changed its tables, or
    /// the walker disagrees with the hardware.
    #[error("{0}")]
    Fault(Stage1Fault),
    /// The PC's IPA is not guest RAM.
    #[error("PC's IPA {ipa:#x} is not RAM")]
    NotRam {
        /// The translated PC.
        ipa: u64,
    },
    /// The vCPU is in AArch32, or not at EL0/EL1 ([`fetch_at_pc`]).
    #[error("PSTATE {pstate:#x} is not AArch64 at EL0 or EL1")]
    NotAArch64El0El1 {
        /// PSTATE as read.
        pstate: u64,
    },
}

/// Host-side failures: the VMM has a problem, not (necessarily) the guest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulateError {
    /// A register could not be read or written.
    #[error("register access failed: {0}")]
    Regs(#[from] RegError),
    /// The instruction at PC could not be fetched.
    #[error("cannot fetch the instruction at PC {pc:#x}: {reason}")]
    Fetch {
        /// The guest PC.
        pc: u64,
        /// Why.
        reason: FetchFailure,
    },
    /// `fault_ipa` was given and no byte of the instruction's accesses lies in
    /// its 4 KiB page: the guest changed its translation tables between the
    /// fault and the walk, or the walker disagrees with the hardware. Nothing
    /// was accessed; resuming the vCPU retries the instruction.
    #[error("fault IPA {fault_ipa:#x} is not in a page the instruction accesses")]
    FaultIpaMismatch {
        /// The IPA KVM reported.
        fault_ipa: u64,
    },
    /// A guest RAM access failed after the checks passed.
    #[error("guest RAM access failed: {0}")]
    Mem(#[from] MemError),
    /// A device rejected an access after the checks passed; earlier accesses of
    /// the instruction have been made.
    #[error("MMIO access failed: {0}")]
    Bus(#[from] BusError),
}

/// Counts of outcomes, for the VMM to print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Emulated instructions per class.
    pub emulated: BTreeMap<Class, u64>,
    /// [`Outcome::NoDevice`] results.
    pub no_device: u64,
    /// [`Outcome::Unsupported`] results.
    pub unsupported: u64,
    /// [`Outcome::GuestFault`] results.
    pub guest_faults: u64,
    /// Errors.
    pub errors: u64,
}

impl core::fmt::Display for Counters {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (class, n) in &self.emulated {
            writeln!(f, "{class:?}: {n}")?;
        }
        writeln!(f, "no device: {}", self.no_device)?;
        writeln!(f, "unsupported: {}", self.unsupported)?;
        writeln!(f, "guest faults: {}", self.guest_faults)?;
        write!(f, "errors: {}", self.errors)
    }
}

/// The emulator. Keep one per vCPU: it holds that vCPU's exclusive monitor
/// and cached ID register values.
#[derive(Clone, Debug, Default)]
pub struct Emulator {
    dczid: Option<u64>,
    pa_bits: Option<u8>,
    monitor: Option<Monitor>,
    counters: Counters,
    /// PSTATE as the last emulation read it (before it cleared SS/BTYPE).
    last_pstate: u64,
    /// FEAT_LSE2 (ID_AA64MMFR2_EL1.AT != 0), read once or given.
    lse2: Option<bool>,
}

/// Register reads cached for one emulation: each read of a KVM vCPU is an ioctl.
struct Cache<'a, R: VcpuRegs + ?Sized> {
    regs: &'a mut R,
    vals: Vec<(Reg, u64)>,
    v: Vec<(u8, u128)>,
}

impl<'a, R: VcpuRegs + ?Sized> Cache<'a, R> {
    fn new(regs: &'a mut R) -> Self {
        Cache {
            regs,
            vals: Vec::new(),
            v: Vec::new(),
        }
    }

    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        if let Some(&(_, v)) = self.vals.iter().find(|(r, _)| *r == reg) {
            return Ok(v);
        }
        let v = self.regs.get(reg)?;
        self.vals.push((reg, v));
        Ok(v)
    }

    /// Xn, with 31 reading as zero (XZR).
    fn x(&mut self, n: u8) -> Result<u64, RegError> {
        if n == 31 { Ok(0) } else { self.get(Reg::X(n)) }
    }

    fn vreg(&mut self, n: u8) -> Result<u128, RegError> {
        if let Some(&(_, v)) = self.v.iter().find(|(r, _)| *r == n) {
            return Ok(v);
        }
        let v = self.regs.get_v(n)?;
        self.v.push((n, v));
        Ok(v)
    }
}

impl Emulator {
    /// A new emulator with nothing cached.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use this DCZID_EL0 value instead of reading the register (for VMMs whose
    /// vCPU backend does not expose it).
    pub fn with_dczid(mut self, dczid: u64) -> Self {
        self.dczid = Some(dczid);
        self
    }

    /// Use this physical address size (ID_AA64MMFR0_EL1.PARange, in bits)
    /// instead of reading the register.
    pub fn with_pa_bits(mut self, bits: u8) -> Self {
        self.pa_bits = Some(bits);
        self
    }

    /// Whether the CPU implements FEAT_LSE2 (unaligned exclusives, atomics
    /// and acquire/release within 16 bytes; see [`plan`]), instead of reading
    /// ID_AA64MMFR2_EL1.AT (which is read once, and only when an access needs
    /// the answer).
    pub fn with_lse2(mut self, lse2: bool) -> Self {
        self.lse2 = Some(lse2);
        self
    }

    /// Outcome counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Clear the exclusive monitor (call it when the vCPU takes an exception
    /// the VMM injects, like CLREX would).
    pub fn clear_monitor(&mut self) {
        self.monitor = None;
    }

    /// Make the vCPU take `fault` (a [`Outcome::GuestFault`], or the `fault`
    /// of [`Outcome::NoDevice`]) as a synchronous data abort to EL1, exactly
    /// as the CPU would ([`crate::exception::take_sync_exception`]: ESR_EL1 =
    /// [`GuestFault::esr`], FAR_EL1 = [`GuestFault::va`], ELR_EL1 = PC,
    /// SPSR_EL1, PSTATE, PC = VBAR_EL1 + the vector offset), and clear the
    /// exclusive monitor.
    pub fn take_fault<R: VcpuRegs + ?Sized>(
        &mut self,
        regs: &mut R,
        fault: &GuestFault,
        features: crate::exception::EntryFeatures,
    ) -> Result<(), crate::exception::TakeError> {
        self.monitor = None;
        crate::exception::take_sync_exception(regs, fault.esr(), Some(fault.va), features)
    }

    /// Emulate the instruction at the guest's PC.
    ///
    /// `fault_ipa` is the IPA KVM reported (`arm_nisv.fault_ipa`), if any: the
    /// instruction must access a byte in that 4 KiB page, else
    /// [`EmulateError::FaultIpaMismatch`].
    ///
    /// **The fused exclusive.** When the instruction is an emulated
    /// load-exclusive (LDXR/LDAXR/LDXP/LDAXP) and the word after it is a
    /// store-exclusive (STXR/STLXR/STXP/STLXP), the store-exclusive is emulated
    /// in the same call, against the monitor the load just armed, and the
    /// returned `Emulated` outcome is the store's (PC has advanced past both).
    /// The CPU cannot run that store itself: its local monitor was never armed
    /// (docs/emulator.md, "Exclusives"). Running the two back to back is an
    /// execution the architecture allows. The store is fused only if it
    /// completes: if it would fault (translation, permission, alignment, no
    /// device) nothing of it is applied, the load-exclusive's `Emulated` is
    /// returned alone (PC at the store, the monitor still armed), and the CPU
    /// then executes the store and takes its fault itself (or fails it on its
    /// own monitor). So every `GuestFault` and `NoDevice` leaves the state
    /// unchanged, as promised. Never fused: under single-step (PSTATE.SS = 1
    /// when the load-exclusive trapped: the debugger must see each step), and
    /// when the store's SP base would take an SP alignment fault
    /// (SCTLR_EL1.SA at EL1, SA0 at EL0, SP not 16-byte aligned), which the CPU
    /// reports before any data access.
    pub fn emulate<R: VcpuRegs, M: GuestRam, B: MmioBus>(
        &mut self,
        regs: &mut R,
        ram: &M,
        bus: &mut B,
        fault_ipa: Option<u64>,
    ) -> Result<Outcome, EmulateError> {
        let r = self.emulate_with(regs, ram, bus, fault_ipa, None);
        self.count(&r);
        match &r {
            Ok(Outcome::Emulated { insn })
                if insn.op == Op::LoadExclusive && self.last_pstate & writeback::PSTATE_SS == 0 =>
            {
                self.fuse_store_exclusive(regs, ram, bus).unwrap_or(r)
            }
            _ => r,
        }
    }

    /// Emulate an already decoded instruction located at the guest's PC (the
    /// word is not fetched). For tests and for callers with their own decoder.
    pub fn emulate_insn<R: VcpuRegs, M: GuestRam, B: MmioBus>(
        &mut self,
        regs: &mut R,
        ram: &M,
        bus: &mut B,
        insn: &Insn,
        fault_ipa: Option<u64>,
    ) -> Result<Outcome, EmulateError> {
        let r = self.emulate_with(regs, ram, bus, fault_ipa, Some(insn));
        self.count(&r);
        r
    }

    fn count(&mut self, r: &Result<Outcome, EmulateError>) {
        let c = &mut self.counters;
        match r {
            Ok(Outcome::Emulated { insn }) => *c.emulated.entry(insn.class).or_insert(0) += 1,
            Ok(Outcome::NoDevice { .. }) => c.no_device += 1,
            Ok(Outcome::Unsupported { .. }) => c.unsupported += 1,
            Ok(Outcome::GuestFault(_)) => c.guest_faults += 1,
            Err(_) => c.errors += 1,
        }
    }

    fn emulate_with<R: VcpuRegs, M: GuestRam, B: MmioBus>(
        &mut self,
        regs: &mut R,
        ram: &M,
        bus: &mut B,
        fault_ipa: Option<u64>,
        given: Option<&Insn>,
    ) -> Result<Outcome, EmulateError> {
        let mut c = Cache::new(regs);
        let pstate = c.get(Reg::Pstate)?;
        self.last_pstate = pstate;
        let pc = c.get(Reg::Pc)?;
        if pstate & PSTATE_NRW != 0 {
            return Ok(Outcome::Unsupported {
                word: None,
                pc,
                reason: UnsupportedReason::AArch32,
            });
        }
        let el = match (pstate >> 2) & 3 {
            0 => El::El0,
            1 => El::El1,
            el => {
                return Ok(Outcome::Unsupported {
                    word: None,
                    pc,
                    reason: UnsupportedReason::NotEl0OrEl1 { el: el as u8 },
                });
            }
        };
        // TTBR0/TTBR1 and MAIR are read only when an address needs them
        // (docs/performance.md, "The per-exit floor").
        let mut s1 = LazyStage1::read(c.regs, &mut self.pa_bits)?;
        s1.set_pan(pstate & PSTATE_PAN != 0);

        let decoded;
        let insn = match given {
            Some(i) => i,
            None => {
                let word = fetch(s1.for_va(c.regs, pc, false)?, pc, el, ram)?;
                match decode_word(word) {
                    Ok(i) => {
                        decoded = i;
                        &decoded
                    }
                    Err(_) => {
                        return Ok(Outcome::Unsupported {
                            word: Some(word),
                            pc,
                            reason: UnsupportedReason::NotDecoded,
                        });
                    }
                }
            }
        };
        let unsupported = |reason| Outcome::Unsupported {
            word: Some(insn.word),
            pc,
            reason,
        };
        if !consistent(insn) {
            return Ok(unsupported(UnsupportedReason::Inconsistent));
        }

        // The EL whose permissions apply: LDTR/STTR at EL1 are checked as EL0
        // unless PSTATE.UAO is set (Arm ARM C6.2 LDTR: the access is
        // unprivileged when PSTATE.EL is EL1 and PSTATE.UAO is 0). Endianness
        // follows PSTATE.EL (pseudocode `BigEndian()`).
        let acc_el = if insn.unprivileged && el == El::El1 && pstate & PSTATE_UAO == 0 {
            El::El0
        } else {
            el
        };
        let big = s1.regs().big_endian(el);
        let sp_reg = if el == El::El1 && pstate & PSTATE_SP != 0 {
            Reg::SpEl1
        } else {
            Reg::SpEl0
        };

        // Address: base + offset (the offset is zero for post-indexed forms).
        let base_val = match insn.base {
            Base::X(n) => c.x(n)?,
            Base::Sp => c.get(sp_reg)?,
            Base::Pc => pc,
        };
        let index = match insn.offset {
            Offset::Reg { m, .. } => c.x(m)?,
            Offset::Imm(_) => 0,
        };
        let addr = plan::address(insn, base_val, index);

        let mut spec = AccessSpec::new(addr, el).with_perm_el(acc_el);
        if insn.op == Op::ZeroBlock {
            let dczid = match self.dczid {
                Some(d) => d,
                None => {
                    let d = c.get(Reg::Sys(SysReg::DczidEl0))?;
                    self.dczid = Some(d);
                    d
                }
            };
            // DCZID_EL0.DZP, or EL0 with SCTLR_EL1.DZE = 0: the instruction is
            // not permitted (UNDEFINED / trapped), which we do not synthesise.
            let bs = dczid & 0xf;
            if dczid & (1 << 4) != 0
                || bs > 9
                || (el == El::El0 && s1.regs().sctlr & SCTLR_DZE == 0)
            {
                return Ok(unsupported(UnsupportedReason::DcZvaProhibited { dczid }));
            }
            spec = spec.with_zva_block(4u64 << bs);
        }

        // FEAT_LSE2 decides whether an access misaligned for the instruction's
        // own alignment faults: ask only then (ID_AA64MMFR2_EL1.AT, once).
        if insn.op != Op::ZeroBlock && !addr.is_multiple_of(u64::from(insn.align.max(1))) {
            let lse2 = match self.lse2 {
                Some(l) => l,
                None => {
                    let l = (c.get(Reg::Sys(SysReg::IdAa64mmfr2El1))? >> 32) & 0xf != 0;
                    self.lse2 = Some(l);
                    l
                }
            };
            spec = spec.with_lse2(lse2);
        }

        // The stage-1 registers of the data access: the TTBR of each half the
        // first and last byte are in, and MAIR_EL1 only when the memory type
        // can change the outcome (plan::needs_mem_type).
        let wide_bus = fault_ipa.is_none_or(|f| bus.max_access_size(f) > 8);
        let need_type = plan::needs_mem_type(insn, addr, wide_bus);
        let last = addr.wrapping_add(insn.elements.total_bytes().saturating_sub(1));
        s1.for_va(c.regs, addr, need_type)?;
        s1.for_va(c.regs, last, need_type)?;

        // Plan: check and translate every piece before any side effect.
        let p = match plan::plan(s1.regs(), insn, &spec, ram, bus) {
            Ok(p) => p,
            Err(f) => return Ok(Outcome::GuestFault(f)),
        };
        if let Some(f) = fault_ipa
            && !p.touches_page(f)
        {
            return Err(EmulateError::FaultIpaMismatch { fault_ipa: f });
        }
        match p.problem() {
            Some(Problem::Fault(gf)) => return Ok(Outcome::GuestFault(gf)),
            Some(Problem::NoDevice { va, ipa }) => {
                return Ok(Outcome::NoDevice {
                    insn: insn.clone(),
                    va,
                    ipa,
                    fault: GuestFault::external_abort(va, p.kind() == AccessKind::Write, el),
                });
            }
            None => {}
        }
        let plans = p.elements();

        // Read every source register before any side effect, so that a failed
        // read leaves the guest unchanged.
        let mut src: Vec<u128> = Vec::with_capacity(plans.len());
        if matches!(
            insn.op,
            Op::Store | Op::StoreExclusive { .. } | Op::CompareAndSwap { .. }
        ) {
            for e in &insn.elements {
                src.push(read_slot(&mut c, e.reg, usize::from(e.size))?);
            }
        }
        let mut operands: Vec<u64> = Vec::new();
        match insn.op {
            Op::Atomic { s, .. } => operands.push(c.x(s)?),
            Op::CompareAndSwap { s } => {
                for i in 0..insn.elements.len() {
                    operands.push(c.x(s.saturating_add(i as u8).min(31))?);
                }
            }
            _ => {}
        }
        let old_v: Vec<(u8, u128)> = match insn.vec_write {
            VecWrite::MergeLanes if matches!(insn.op, Op::Load | Op::LoadExclusive) => {
                let mut v = Vec::new();
                for e in &insn.elements {
                    if let RegSlot::Vec { n, .. } = e.reg {
                        v.push((n, c.vreg(n)?));
                    }
                }
                v
            }
            _ => Vec::new(),
        };
        let writeback = match insn.writeback {
            Writeback::None => None,
            Writeback::Pre => Some(addr),
            Writeback::PostImm(i) => Some(base_val.wrapping_add(i as u64)),
            Writeback::PostReg(m) => Some(base_val.wrapping_add(c.x(m)?)),
        };

        // Perform. Hardware-managed descriptor updates go first, as the walk
        // precedes the access.
        for u in p.updates() {
            u.apply(ram);
        }
        let unit = atomic_pair(insn);
        let mut res = Results::default();
        match insn.op {
            Op::Load | Op::LoadExclusive => {
                res.loaded = access::load_all(ram, bus, plans, big, unit)?;
                if insn.op == Op::LoadExclusive {
                    self.arm_monitor(addr, insn.elements.total_bytes());
                }
            }
            Op::Store => access::store_all(ram, bus, plans, &src, big, unit)?,
            Op::StoreExclusive { s } => {
                let pass = self.store_exclusive_passes(addr, insn.elements.total_bytes());
                if pass {
                    access::store_all(ram, bus, plans, &src, big, unit)?;
                }
                res.status = Some((s, u64::from(!pass)));
            }
            Op::Atomic { op, .. } => {
                // Exactly one element (checked by `consistent`).
                if let (Some(p), Some(&rs)) = (plans.first(), operands.first()) {
                    let old = access::atomic(ram, bus, p, op, rs, big)?;
                    res.loaded.push(u128::from(old));
                }
            }
            Op::CompareAndSwap { .. } => {
                res.loaded = access::compare_and_swap(ram, bus, plans, &operands, &src, big, unit)?;
            }
            Op::ZeroBlock => {
                for p in plans {
                    access::zero_block(ram, bus, p)?;
                }
            }
        }

        // Register results, writeback, PC.
        let commit = Commit {
            old_v: &old_v,
            writeback,
            sp_reg,
            pc,
            pstate,
        };
        writeback::commit(c.regs, insn, &res, &commit)?;
        Ok(Outcome::Emulated { insn: insn.clone() })
    }
}

/// The size of the single-copy atomic access the elements of `insn` form
/// together, when it is more than one element (Arm ARM B2.2.1, "Requirements
/// for single-copy atomicity"): "Load-Exclusive Pair instructions of two
/// 32-bit quantities and Store-Exclusive Pair instructions of 32-bit
/// quantities are single-copy atomic"; a successful STXP of two 64-bit
/// quantities "causes a single-copy atomic update of the entire memory
/// location"; "The read and write generated by an Atomic instruction is
/// single-copy atomic at the overall size of the data access" (CASP, whose
/// pseudocode accesses the pair as one value). LDXP of X registers is two
/// 64-bit single-copy atomic reads: `None`.
fn atomic_pair(insn: &Insn) -> Option<usize> {
    let els = insn.elements.as_slice();
    let pair = els.len() == 2;
    let size = els.first().map_or(0, |e| usize::from(e.size));
    match insn.op {
        Op::LoadExclusive if pair && size == 4 => Some(8),
        Op::StoreExclusive { .. } | Op::CompareAndSwap { .. } if pair => Some(2 * size),
        _ => None,
    }
}

/// Decode a fetched word.
fn decode_word(word: u32) -> Result<Insn, Unsupported> {
    crate::decode::decode(word)
}

/// Fetch the instruction word at `pc`: 4-byte aligned, translated through
/// the guest's stage 1 with instruction-fetch (execute) permissions at `el`,
/// read from RAM, little-endian (instruction fetches always are).
pub fn fetch<M: GuestRam + ?Sized>(
    s1: &Stage1Regs,
    pc: u64,
    el: El,
    ram: &M,
) -> Result<u32, EmulateError> {
    let err = |reason| EmulateError::Fetch { pc, reason };
    if !pc.is_multiple_of(4) {
        return Err(err(FetchFailure::Misaligned));
    }
    let t = stage1::translate(s1, pc, AccessKind::Fetch, el, ram)
        .map_err(|f| err(FetchFailure::Fault(f)))?;
    let mut b = [0u8; 4];
    ram.read(t.ipa, &mut b)
        .map_err(|_| err(FetchFailure::NotRam { ipa: t.ipa }))?;
    Ok(u32::from_le_bytes(b))
}

/// The instruction at a vCPU's PC, as [`fetch_at_pc`] read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Fetched {
    /// The PC.
    pub pc: u64,
    /// PSTATE as read.
    pub pstate: u64,
    /// The exception level the vCPU is at.
    pub el: El,
    /// The instruction word.
    pub word: u32,
}

impl Fetched {
    /// Decode the word (`decode::decode`).
    pub fn decode(&self) -> Result<Insn, Unsupported> {
        decode_word(self.word)
    }
}

/// Read PSTATE, PC and the stage-1 registers of `regs` and [`fetch`] the
/// instruction at PC with execute permission at the current EL. AArch32 and
/// EL2/EL3 are [`FetchFailure::NotAArch64El0El1`].
pub fn fetch_at_pc<R: VcpuRegs + ?Sized, M: GuestRam + ?Sized>(
    regs: &mut R,
    ram: &M,
) -> Result<Fetched, EmulateError> {
    let pstate = regs.get(Reg::Pstate)?;
    let pc = regs.get(Reg::Pc)?;
    let el = match (pstate & PSTATE_NRW, (pstate >> 2) & 3) {
        (0, 0) => El::El0,
        (0, 1) => El::El1,
        _ => {
            return Err(EmulateError::Fetch {
                pc,
                reason: FetchFailure::NotAArch64El0El1 { pstate },
            });
        }
    };
    let s1 = Stage1Regs::read(regs)?;
    let word = fetch(&s1, pc, el, ram)?;
    Ok(Fetched {
        pc,
        pstate,
        el,
        word,
    })
}

/// Check the description is internally consistent, so that the perform phase
/// cannot go wrong on it: sizes, lane ranges, register numbers, element counts.
fn consistent(insn: &Insn) -> bool {
    let els = insn.elements.as_slice();
    let sizes_ok = els.iter().all(|e| {
        matches!(e.size, 1 | 2 | 4 | 8 | 16)
            && match e.reg {
                RegSlot::Gpr { n, .. } => n <= 31 && e.size <= 8,
                RegSlot::Vec { n, lane } => {
                    n <= 31 && (usize::from(lane) + 1) * usize::from(e.size) <= 16
                }
            }
    });
    let base_ok = match insn.base {
        Base::X(n) => n < 31 || (n == 31 && insn.op == Op::ZeroBlock),
        Base::Sp => true,
        Base::Pc => insn.writeback == Writeback::None,
    };
    let offset_ok = match insn.offset {
        Offset::Reg { m, shift, .. } => m <= 31 && shift <= 4,
        Offset::Imm(_) => true,
    };
    let wb_ok = match insn.writeback {
        Writeback::PostReg(m) => m < 31,
        _ => true,
    } && (insn.writeback == Writeback::None || !matches!(insn.base, Base::X(31)));
    let op_ok = match insn.op {
        Op::ZeroBlock => els.is_empty(),
        Op::Atomic { s, .. } => {
            s <= 31 && els.len() == 1 && matches!(els[0].reg, RegSlot::Gpr { .. })
        }
        Op::CompareAndSwap { s } => {
            s <= 31
                && (els.len() == 1 || els.len() == 2)
                && els.iter().all(|e| matches!(e.reg, RegSlot::Gpr { .. }))
        }
        Op::StoreExclusive { s } => s <= 31 && !els.is_empty(),
        Op::Load | Op::Store | Op::LoadExclusive => !els.is_empty(),
    };
    let vec_ok = match insn.vec_write {
        VecWrite::Replicate { bytes } => bytes == 8 || bytes == 16,
        _ => true,
    };
    sizes_ok && base_ok && offset_ok && wb_ok && op_ok && vec_ok
}

/// The value a store takes from a register slot (low `size` bytes).
fn read_slot<R: VcpuRegs + ?Sized>(
    c: &mut Cache<'_, R>,
    slot: RegSlot,
    size: usize,
) -> Result<u128, RegError> {
    Ok(match slot {
        RegSlot::Gpr { n, .. } => u128::from(c.x(n)? & mask(size)),
        RegSlot::Vec { n, lane } => {
            let v = c.vreg(n)?;
            let sh = 8 * usize::from(lane) * size;
            let m = if size >= 16 {
                u128::MAX
            } else {
                (1u128 << (8 * size)) - 1
            };
            (v >> sh) & m
        }
    })
}
