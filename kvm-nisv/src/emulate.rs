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
//! The full model (splitting rules for device accesses, the exclusive monitor,
//! DC ZVA, what a fault leaves behind, the `fault_ipa` cross-check) is in
//! `docs/emulator.md`. In short:
//!
//! - **Splitting.** An element is split where its translation ends (a page or
//!   block boundary); each piece is translated on its own. A piece that is RAM
//!   is one [`GuestRam`] access. A piece on the MMIO bus becomes naturally
//!   aligned bus accesses of at most 8 bytes, at increasing addresses: the
//!   largest of 8/4/2/1 bytes that is aligned and fits (a 16-byte Q element is
//!   two 8-byte accesses; a 3-byte piece at an odd address is 1 + 2 bytes).
//! - **Endianness.** Each element is byte-reversed at its own size when the
//!   data endianness (SCTLR_EL1.EE at EL1, E0E at EL0) is big; bus data is in
//!   address order either way.
//! - **Exclusive monitor.** One per [`Emulator`] (so one emulator per vCPU): an
//!   emulated load-exclusive arms it with its address and size; an emulated
//!   store-exclusive succeeds (status 0) only if it is armed with exactly that
//!   address and size, and always disarms it.
//! - **Faults.** Every check happens before any access, so an
//!   [`Outcome::GuestFault`] or [`Outcome::NoDevice`] leaves registers and
//!   memory unchanged. A host-side failure during the accesses (a device
//!   rejecting an access, a register write failing) is an [`EmulateError`] and
//!   may leave the accesses made so far behind.

use std::collections::BTreeMap;

use crate::decode::{
    AtomicOp, Base, Class, Extend, Insn, LoadExt, Offset, Op, RegSlot, Unsupported, VecWrite,
    Writeback,
};
use crate::mem::{BusError, GuestRam, MemError, MmioBus};
use crate::regs::{Reg, RegError, SysReg, VcpuRegs};
use crate::stage1::{
    self, AccessKind, El, FaultKind, LazyStage1, SCTLR_A, SCTLR_DZE, Stage1Fault, Stage1Regs,
    Translation,
};

/// SCTLR_EL1.nAA (FEAT_LSE2): no alignment fault for unaligned
/// load-acquire/store-release within 16 bytes.
const SCTLR_NAA: u64 = 1 << 6;
/// PSTATE.nRW (M\[4\]): the guest is in AArch32.
const PSTATE_NRW: u64 = 1 << 4;
/// PSTATE.M\[0\] in AArch64: SP_ELx selected (SPSel).
const PSTATE_SP: u64 = 1 << 0;
/// PSTATE.PAN.
const PSTATE_PAN: u64 = 1 << 22;
/// PSTATE.UAO: LDTR/STTR at EL1 behave as ordinary accesses.
const PSTATE_UAO: u64 = 1 << 23;
/// PSTATE.BTYPE, cleared by every non-branch instruction.
const PSTATE_BTYPE: u64 = 3 << 10;
/// PSTATE.SS (software step), cleared when an instruction is stepped over.
const PSTATE_SS: u64 = 1 << 21;

/// A fault the guest should see, as the hardware would have reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// ESR_EL1.ISS.DFSC.
    pub fn dfsc(&self) -> u8 {
        self.fault.dfsc()
    }

    /// ESR_EL1.ISS for this data abort: ISV = 0 (no syndrome, like the abort
    /// that brought us here), WnR, DFSC. CM is 0 (DC ZVA is reported as a write,
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
pub enum Outcome {
    /// All accesses were made, registers written, writeback applied, PC += 4.
    Emulated {
        /// The instruction.
        insn: Insn,
    },
    /// A target is neither RAM nor a device: the caller injects an external
    /// data abort. Guest state is unchanged.
    NoDevice {
        /// The instruction.
        insn: Insn,
        /// Virtual address of the first byte without RAM or device.
        va: u64,
        /// Its IPA.
        ipa: u64,
    },
    /// The instruction cannot be emulated: the decoder does not know it, the
    /// guest is in AArch32 or not at EL0/EL1 (`word` is 0 then: nothing was
    /// fetched), DC ZVA is prohibited (DCZID_EL0.DZP, or EL0 with SCTLR_EL1.DZE = 0),
    /// or the decoded description is inconsistent. Guest state is unchanged.
    Unsupported {
        /// The instruction word.
        word: u32,
        /// Its address.
        pc: u64,
    },
    /// A translation, permission, access flag, address size or alignment fault
    /// the guest should see. Guest state is unchanged.
    GuestFault(GuestFault),
}

/// Why the instruction at PC could not be fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
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
}

/// Host-side failures: the VMM has a problem, not (necessarily) the guest.
#[derive(Debug, thiserror::Error)]
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

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (class, n) in &self.emulated {
            writeln!(f, "{class:?}: {n}")?;
        }
        writeln!(f, "no device: {}", self.no_device)?;
        writeln!(f, "unsupported: {}", self.unsupported)?;
        writeln!(f, "guest faults: {}", self.guest_faults)?;
        write!(f, "errors: {}", self.errors)
    }
}

/// The exclusive monitor state: the address and size of the last emulated
/// load-exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Monitor {
    va: u64,
    bytes: u64,
}

/// The emulator. Keep one per vCPU: it holds that vCPU's exclusive monitor
/// and cached ID register values.
#[derive(Clone, Debug, Default)]
pub struct Emulator {
    dczid: Option<u64>,
    pa_bits: Option<u8>,
    monitor: Option<Monitor>,
    counters: Counters,
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

/// One piece of an element: a byte range with a single translation.
#[derive(Clone, Copy, Debug)]
struct Piece {
    /// Offset of the piece within its element.
    off: usize,
    len: usize,
    ipa: u64,
    ram: bool,
}

/// All the pieces of one element (or of the DC ZVA block).
#[derive(Clone, Debug)]
struct ElemPlan {
    size: usize,
    pieces: Vec<Piece>,
}

/// What the planning pass found first, in architectural order.
enum Problem {
    Fault(GuestFault),
    NoDevice { va: u64, ipa: u64 },
}

/// Sign-extend the low `bytes` bytes of `v`.
fn sext(v: u64, bytes: usize) -> u64 {
    let sh = 64 - 8 * bytes.clamp(1, 8) as u32;
    (((v << sh) as i64) >> sh) as u64
}

/// Mask of the low `bytes` bytes.
fn mask(bytes: usize) -> u64 {
    if bytes >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * bytes)) - 1
    }
}

/// Split a bus range into naturally aligned accesses of at most 8 bytes.
fn bus_chunks(ipa: u64, len: usize) -> impl Iterator<Item = (u64, usize)> {
    let mut at = ipa;
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let mut s = 8usize;
        while s > 1 && (s > left || !at.is_multiple_of(s as u64)) {
            s /= 2;
        }
        let r = (at, s);
        at = at.wrapping_add(s as u64);
        left -= s;
        Some(r)
    })
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

    /// Outcome counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Clear the exclusive monitor (call it when the vCPU takes an exception
    /// the VMM injects, like CLREX would).
    pub fn clear_monitor(&mut self) {
        self.monitor = None;
    }

    /// Emulate the instruction at the guest's PC.
    ///
    /// `fault_ipa` is the IPA KVM reported (`arm_nisv.fault_ipa`), if any: the
    /// instruction must access a byte in that 4 KiB page, else
    /// [`EmulateError::FaultIpaMismatch`].
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
            Ok(Outcome::Emulated { insn }) if insn.op == Op::LoadExclusive => {
                self.fuse_store_exclusive(regs, ram, bus).unwrap_or(r)
            }
            _ => r,
        }
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
    fn fuse_store_exclusive<R: VcpuRegs, M: GuestRam, B: MmioBus>(
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
        let next = decode_word(word).ok()?;
        if !matches!(next.op, Op::StoreExclusive { .. }) || !consistent(&next) {
            return None;
        }
        let r = self.emulate_with(regs, ram, bus, None, Some(&next));
        self.count(&r);
        match r {
            // Cannot happen after `consistent`; if it did, leave the store to the CPU.
            Ok(Outcome::Unsupported { .. }) => None,
            r => Some(r),
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
        let pc = c.get(Reg::Pc)?;
        if pstate & PSTATE_NRW != 0 {
            return Ok(Outcome::Unsupported { word: 0, pc });
        }
        let el = match (pstate >> 2) & 3 {
            0 => El::El0,
            1 => El::El1,
            _ => return Ok(Outcome::Unsupported { word: 0, pc }),
        };
        // TTBR0/TTBR1 and MAIR are read only when an address needs them
        // (docs/performance.md, "The per-exit floor").
        let mut s1 = LazyStage1::read(c.regs, &mut self.pa_bits)?;
        s1.set_pan(pstate & PSTATE_PAN != 0);
        let sctlr = s1.regs().sctlr;

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
                    Err(_) => return Ok(Outcome::Unsupported { word, pc }),
                }
            }
        };
        let unsupported = Outcome::Unsupported {
            word: insn.word,
            pc,
        };
        if !consistent(insn) {
            return Ok(unsupported);
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
        let off = match insn.offset {
            Offset::Imm(i) => i as u64,
            Offset::Reg { m, extend, shift } => {
                let v = c.x(m)?;
                let e = match extend {
                    Extend::Uxtw => v & 0xffff_ffff,
                    Extend::Sxtw => sext(v, 4),
                    Extend::Lsl | Extend::Sxtx => v,
                };
                e << (shift & 63)
            }
        };
        let addr = base_val.wrapping_add(off);

        let kind = match insn.op {
            Op::Load | Op::LoadExclusive => AccessKind::Read,
            _ => AccessKind::Write,
        };
        let fault = |va: u64, fault: Stage1Fault| {
            Outcome::GuestFault(GuestFault {
                va,
                fault,
                write: kind == AccessKind::Write,
                from_el: el,
            })
        };
        let align_fault = Stage1Fault {
            kind: FaultKind::Alignment,
            level: 0,
        };

        // The list of (va, size) accesses to plan.
        let mut accesses: Vec<(u64, usize)> = Vec::with_capacity(insn.elements.len().max(1));
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
            if dczid & (1 << 4) != 0 || bs > 9 || (el == El::El0 && sctlr & SCTLR_DZE == 0) {
                return Ok(unsupported);
            }
            let block = 4u64 << bs;
            accesses.push((addr & !(block - 1), block as usize));
        } else {
            // Alignment required by the instruction whatever the memory type
            // (exclusives, atomics, acquire/release: `CheckAlignment`), checked
            // before translation.
            let align = u64::from(insn.align.max(1));
            // FEAT_LSE2: with SCTLR_EL1.nAA = 1, the non-exclusive load-acquire/
            // store-release forms (LDAR, STLR, LDAPR, LDAPUR, STLUR) may be
            // unaligned as long as they stay within 16 bytes.
            let naa_exempt = sctlr & SCTLR_NAA != 0
                && matches!(insn.op, Op::Load | Op::Store)
                && (addr & 15) + insn.elements.total_bytes() <= 16;
            if !addr.is_multiple_of(align) && !naa_exempt {
                return Ok(fault(addr, align_fault));
            }
            for e in &insn.elements {
                accesses.push((addr.wrapping_add(u64::from(e.offset)), usize::from(e.size)));
            }
        }

        // Plan: translate every piece of every element, in order; remember the
        // first problem but keep translating so the fault_ipa check sees every
        // IPA the hardware may have faulted on.
        let strict_align = sctlr & SCTLR_A != 0 && insn.op != Op::ZeroBlock;
        let mut plans: Vec<ElemPlan> = Vec::with_capacity(accesses.len());
        let mut problem: Option<Problem> = None;
        let mut updates = Vec::new();
        let mut ipas: Vec<(u64, usize)> = Vec::new();
        for &(va, size) in &accesses {
            let aligned = va % size as u64 == 0;
            if strict_align && !aligned && problem.is_none() {
                problem = Some(Problem::Fault(GuestFault {
                    va,
                    fault: align_fault,
                    write: kind == AccessKind::Write,
                    from_el: el,
                }));
            }
            let mut plan = ElemPlan {
                size,
                pieces: Vec::new(),
            };
            let mut off = 0usize;
            while off < size {
                let pva = va.wrapping_add(off as u64);
                // The memory type only matters for an unaligned element or
                // DC ZVA (Device memory: alignment fault).
                let need_type = !aligned || insn.op == Op::ZeroBlock;
                let s1r = s1.for_va(c.regs, pva, need_type)?;
                let (t, perm): (Translation, Option<Stage1Fault>) =
                    match stage1::translate_deferred(s1r, pva, kind, acc_el, ram) {
                        Ok(x) => x,
                        Err(f) => {
                            if problem.is_none() {
                                problem = Some(Problem::Fault(GuestFault {
                                    va: if insn.op == Op::ZeroBlock { addr } else { pva },
                                    fault: f,
                                    write: kind == AccessKind::Write,
                                    from_el: el,
                                }));
                            }
                            break;
                        }
                    };
                // Bytes left in this translation's page/block.
                let in_map = t.size - (pva & (t.size - 1));
                let len = (size - off).min(usize::try_from(in_map).unwrap_or(usize::MAX));
                ipas.push((t.ipa, len));
                if problem.is_none() {
                    if t.mem.is_device() && (!aligned || insn.op == Op::ZeroBlock) {
                        problem = Some(Problem::Fault(GuestFault {
                            va: if insn.op == Op::ZeroBlock { addr } else { pva },
                            fault: align_fault,
                            write: kind == AccessKind::Write,
                            from_el: el,
                        }));
                    } else if let Some(f) = perm {
                        problem = Some(Problem::Fault(GuestFault {
                            va: if insn.op == Op::ZeroBlock { addr } else { pva },
                            fault: f,
                            write: kind == AccessKind::Write,
                            from_el: el,
                        }));
                    }
                }
                // Target of each byte: one RAM or device piece normally; a
                // translation whose bytes mix RAM and devices (a DC ZVA block,
                // a memslot ending inside a page) is cut into runs.
                let mut runs: Vec<(usize, usize, bool)> = Vec::new();
                if ram.is_ram(t.ipa, len) {
                    runs.push((0, len, true));
                } else if bus.contains(t.ipa, len) {
                    runs.push((0, len, false));
                } else {
                    for i in 0..len {
                        let a = t.ipa.wrapping_add(i as u64);
                        let is_ram = if ram.is_ram(a, 1) {
                            true
                        } else if bus.contains(a, 1) {
                            false
                        } else {
                            if problem.is_none() {
                                problem = Some(Problem::NoDevice {
                                    va: pva.wrapping_add(i as u64),
                                    ipa: a,
                                });
                            }
                            break;
                        };
                        match runs.last_mut() {
                            Some(r) if r.2 == is_ram => r.1 += 1,
                            _ => runs.push((i, 1, is_ram)),
                        }
                    }
                }
                if let Some(u) = t.update {
                    updates.push(u);
                }
                for (roff, rlen, is_ram) in runs {
                    plan.pieces.push(Piece {
                        off: off + roff,
                        len: rlen,
                        ipa: t.ipa.wrapping_add(roff as u64),
                        ram: is_ram,
                    });
                }
                off += len;
            }
            plans.push(plan);
        }

        if let Some(f) = fault_ipa {
            let page = f & !0xfff;
            let hit = ipas.iter().any(|&(ipa, len)| {
                let end = ipa.saturating_add(len as u64);
                ipa < page.saturating_add(0x1000) && end > page
            });
            if !hit {
                return Err(EmulateError::FaultIpaMismatch { fault_ipa: f });
            }
        }
        match problem {
            Some(Problem::Fault(gf)) => return Ok(Outcome::GuestFault(gf)),
            Some(Problem::NoDevice { va, ipa }) => {
                return Ok(Outcome::NoDevice {
                    insn: insn.clone(),
                    va,
                    ipa,
                });
            }
            None => {}
        }

        // Read every source register before any side effect, so that a failed
        // read leaves the guest unchanged.
        let mut src: Vec<u128> = Vec::with_capacity(plans.len());
        match insn.op {
            Op::Store | Op::StoreExclusive { .. } | Op::CompareAndSwap { .. } => {
                for e in &insn.elements {
                    src.push(read_slot(&mut c, e.reg, usize::from(e.size))?);
                }
            }
            _ => {}
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
        let wb_val = match insn.writeback {
            Writeback::None => None,
            Writeback::Pre => Some(addr),
            Writeback::PostImm(i) => Some(base_val.wrapping_add(i as u64)),
            Writeback::PostReg(m) => Some(base_val.wrapping_add(c.x(m)?)),
        };
        let pstate_new = pstate & !(PSTATE_BTYPE | PSTATE_SS);

        // Perform. Hardware-managed descriptor updates go first, as the walk
        // precedes the access.
        for u in &updates {
            u.apply(ram);
        }
        let mut loaded: Vec<u128> = Vec::with_capacity(plans.len());
        let mut status_write: Option<(u8, u64)> = None;
        match insn.op {
            Op::Load | Op::LoadExclusive => {
                for p in &plans {
                    loaded.push(load_elem(ram, bus, p, big)?);
                }
                if insn.op == Op::LoadExclusive {
                    self.monitor = Some(Monitor {
                        va: addr,
                        bytes: insn.elements.total_bytes(),
                    });
                }
            }
            Op::Store => {
                for (p, v) in plans.iter().zip(&src) {
                    store_elem(ram, bus, p, *v, big)?;
                }
            }
            Op::StoreExclusive { s } => {
                let want = Monitor {
                    va: addr,
                    bytes: insn.elements.total_bytes(),
                };
                let pass = self.monitor == Some(want);
                self.monitor = None;
                if pass {
                    for (p, v) in plans.iter().zip(&src) {
                        store_elem(ram, bus, p, *v, big)?;
                    }
                }
                status_write = Some((s, u64::from(!pass)));
            }
            Op::Atomic { op, .. } => {
                // Exactly one element (checked by `consistent`).
                if let (Some(p), Some(&rs)) = (plans.first(), operands.first()) {
                    let old = load_elem(ram, bus, p, big)? as u64;
                    let new = atomic_op(op, old, rs, p.size);
                    store_elem(ram, bus, p, u128::from(new), big)?;
                    loaded.push(u128::from(old));
                }
            }
            Op::CompareAndSwap { .. } => {
                let mut olds = Vec::with_capacity(plans.len());
                for p in &plans {
                    olds.push(load_elem(ram, bus, p, big)? as u64);
                }
                let equal = olds
                    .iter()
                    .zip(&operands)
                    .zip(&plans)
                    .all(|((o, s), p)| o & mask(p.size) == s & mask(p.size));
                if equal {
                    for (p, v) in plans.iter().zip(&src) {
                        store_elem(ram, bus, p, *v, big)?;
                    }
                }
                loaded.extend(olds.iter().map(|&o| u128::from(o)));
            }
            Op::ZeroBlock => {
                for p in &plans {
                    zero_block(ram, bus, p)?;
                }
            }
        }

        // Register results.
        let regs = c.regs;
        match insn.op {
            Op::Load | Op::LoadExclusive => {
                write_loads(regs, insn, &loaded, &old_v)?;
            }
            Op::Atomic { .. } => {
                if let (Some(e), Some(&v)) = (insn.elements.as_slice().first(), loaded.first()) {
                    write_gpr(regs, e.reg, v as u64, usize::from(e.size))?;
                }
            }
            Op::CompareAndSwap { s } => {
                for (i, (&v, e)) in loaded.iter().zip(&insn.elements).enumerate() {
                    let n = s.saturating_add(i as u8);
                    if n < 31 {
                        regs.set(Reg::X(n), v as u64 & mask(usize::from(e.size)))?;
                    }
                }
            }
            _ => {}
        }
        if let Some((s, st)) = status_write
            && s < 31
        {
            regs.set(Reg::X(s), st)?;
        }
        if let Some(v) = wb_val {
            match insn.base {
                Base::X(n) if n < 31 => regs.set(Reg::X(n), v)?,
                Base::Sp => regs.set(sp_reg, v)?,
                _ => {}
            }
        }
        regs.set(Reg::Pc, pc.wrapping_add(4))?;
        if pstate_new != pstate {
            // kvm: arch/arm64/kvm/hyp/include/hyp/adjust_pc.h `kvm_skip_instr`
            // clears BTYPE and SS when it steps over an instruction.
            regs.set(Reg::Pstate, pstate_new)?;
        }
        Ok(Outcome::Emulated { insn: insn.clone() })
    }
}

/// Decode a fetched word.
fn decode_word(word: u32) -> Result<Insn, Unsupported> {
    crate::decode::decode(word)
}

/// Fetch the instruction word at `pc` (little-endian, fetch permissions).
fn fetch<M: GuestRam>(s1: &Stage1Regs, pc: u64, el: El, ram: &M) -> Result<u32, EmulateError> {
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

/// Read one element: pieces in order, then the element's byte order.
fn load_elem<M: GuestRam, B: MmioBus>(
    ram: &M,
    bus: &mut B,
    p: &ElemPlan,
    big: bool,
) -> Result<u128, EmulateError> {
    let mut buf = [0u8; 16];
    let bytes = buf
        .get_mut(..p.size)
        .ok_or(EmulateError::Mem(MemError::NotRam {
            ipa: 0,
            len: p.size,
        }))?;
    for pc in &p.pieces {
        let Some(dst) = bytes.get_mut(pc.off..pc.off + pc.len) else {
            continue;
        };
        if pc.ram {
            ram.read(pc.ipa, dst)?;
        } else {
            let mut o = 0usize;
            for (a, s) in bus_chunks(pc.ipa, pc.len) {
                if let Some(d) = dst.get_mut(o..o + s) {
                    bus.read(a, d)?;
                }
                o += s;
            }
        }
    }
    if big {
        bytes.reverse();
    }
    Ok(u128::from_le_bytes(buf))
}

/// Write one element.
fn store_elem<M: GuestRam, B: MmioBus>(
    ram: &M,
    bus: &mut B,
    p: &ElemPlan,
    value: u128,
    big: bool,
) -> Result<(), EmulateError> {
    let all = value.to_le_bytes();
    let mut buf = [0u8; 16];
    let n = p.size.min(16);
    buf[..n].copy_from_slice(&all[..n]);
    if big {
        buf[..n].reverse();
    }
    for pc in &p.pieces {
        let Some(src) = buf.get(pc.off..pc.off + pc.len) else {
            continue;
        };
        if pc.ram {
            ram.write(pc.ipa, src)?;
        } else {
            let mut o = 0usize;
            for (a, s) in bus_chunks(pc.ipa, pc.len) {
                if let Some(d) = src.get(o..o + s) {
                    bus.write(a, d)?;
                }
                o += s;
            }
        }
    }
    Ok(())
}

/// Zero a DC ZVA block.
fn zero_block<M: GuestRam, B: MmioBus>(
    ram: &M,
    bus: &mut B,
    p: &ElemPlan,
) -> Result<(), EmulateError> {
    const ZEROS: [u8; 8] = [0; 8];
    for pc in &p.pieces {
        if pc.ram {
            ram.write(pc.ipa, &vec![0u8; pc.len])?;
        } else {
            for (a, s) in bus_chunks(pc.ipa, pc.len) {
                bus.write(a, &ZEROS[..s])?;
            }
        }
    }
    Ok(())
}

/// `op(old, s)` at `size` bytes (pseudocode `MemAtomicOp`), zero-extended.
fn atomic_op(op: AtomicOp, old: u64, s: u64, size: usize) -> u64 {
    let m = mask(size);
    let (o, v) = (old & m, s & m);
    let (so, sv) = (sext(o, size) as i64, sext(v, size) as i64);
    let r = match op {
        AtomicOp::Add => o.wrapping_add(v),
        AtomicOp::Clr => o & !v,
        AtomicOp::Eor => o ^ v,
        AtomicOp::Set => o | v,
        AtomicOp::Smax => so.max(sv) as u64,
        AtomicOp::Smin => so.min(sv) as u64,
        AtomicOp::Umax => o.max(v),
        AtomicOp::Umin => o.min(v),
        AtomicOp::Swp => v,
    };
    r & m
}

/// Write a loaded value to a general-purpose slot with its extension.
fn write_gpr<R: VcpuRegs + ?Sized>(
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
fn write_loads<R: VcpuRegs + ?Sized>(
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
                let cur = &mut vregs[idx].1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_chunks_are_natural_and_bounded() {
        let c: Vec<_> = bus_chunks(0x1001, 3).collect();
        assert_eq!(c, vec![(0x1001, 1), (0x1002, 2)]);
        let c: Vec<_> = bus_chunks(0x1000, 16).collect();
        assert_eq!(c, vec![(0x1000, 8), (0x1008, 8)]);
        let c: Vec<_> = bus_chunks(0x1ffe, 7).collect();
        assert_eq!(c, vec![(0x1ffe, 2), (0x2000, 4), (0x2004, 1)]);
        assert_eq!(bus_chunks(0, 0).count(), 0);
    }

    #[test]
    fn atomic_ops_at_size() {
        assert_eq!(atomic_op(AtomicOp::Add, 0xff, 1, 1), 0);
        assert_eq!(atomic_op(AtomicOp::Smax, 0x80, 0x7f, 1), 0x7f);
        assert_eq!(atomic_op(AtomicOp::Smin, 0x80, 0x7f, 1), 0x80);
        assert_eq!(atomic_op(AtomicOp::Umax, 0x80, 0x7f, 1), 0x80);
        assert_eq!(atomic_op(AtomicOp::Clr, 0xf0f0, 0xff00, 2), 0x00f0);
        assert_eq!(atomic_op(AtomicOp::Swp, 1, u64::MAX, 4), 0xffff_ffff);
    }

    #[test]
    fn sign_extension() {
        assert_eq!(sext(0x80, 1), 0xffff_ffff_ffff_ff80);
        assert_eq!(sext(0x7fff, 2), 0x7fff);
        assert_eq!(sext(0x8000_0000, 4), 0xffff_ffff_8000_0000);
    }
}
