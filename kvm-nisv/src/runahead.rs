// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Run-ahead emulation: after the faulting load/store, keep executing the
//! guest's next instructions in the VMM instead of re-entering the vCPU.
//!
//! A device loop such as `1: str w8, [x10], #4; subs x9, x9, #1; b.ne 1b` makes
//! one `KVM_EXIT_ARM_NISV` per iteration. [`RunAhead::emulate`] emulates the
//! faulting instruction with [`Emulator::emulate`] and then goes on: integer
//! data processing and branches with the [`crate::a64`] interpreter, every
//! load/store with [`Emulator::emulate_insn`] (to RAM and to devices), DMB,
//! DSB and ISB with a host fence; all on registers held in a
//! [`RegCache`], read at most once and written back (PC last) when it stops.
//! The loop above then costs one exit for as many iterations as the budget
//! allows.
//!
//! It stops **before** (the CPU then executes that instruction itself, so
//! nothing is lost or emulated half):
//!
//! * any instruction outside the model: system register accesses, hints (NOP,
//!   WFI, WFE, YIELD, BTI...), exception-generating instructions (SVC, HVC,
//!   BRK...), barriers other than DMB/DSB/ISB, BR/BLR, FP/SIMD arithmetic,
//!   unallocated encodings, a branch whose target has a non-canonical top byte;
//! * an exclusive load/store, an atomic (`LD<op>`, SWP) or a CAS whose address
//!   is RAM (the vCPU's own monitor and RAM atomicity against other vCPUs must
//!   be the hardware's), and an SP-based access with an SP the CPU's SP
//!   alignment check (SCTLR_EL1.SA/SA0) would fault;
//! * a load/store the emulator would not complete: a guest fault (translation,
//!   permission, alignment...), no RAM or device behind it, or an unsupported
//!   form; the CPU re-executes it and takes the fault (or exits) itself;
//! * an instruction fetch it cannot translate (a new page that faults, or a
//!   PC that is not RAM or not aligned);
//! * a stop request or pending interrupt reported by
//!   [`RunAheadControl::stop_requested`], checked before every instruction;
//! * the budget: [`RunAheadConfig::max_insns`] instructions after the
//!   faulting one, or [`RunAheadConfig::max_micros`] microseconds of
//!   [`RunAheadControl::now_micros`].
//!
//! It does not start when the guest is being debugged: PSTATE.SS set, or
//! MDSCR_EL1.SS (software step) or MDSCR_EL1.MDE (breakpoints and watchpoints
//! can fire) set. MDSCR_EL1 is read (one register read) only when the
//! instruction after the faulting one is one run-ahead would execute, so a
//! lone access costs no more than without run-ahead. A VMM that debugs the
//! guest itself (`KVM_SET_GUEST_DEBUG`) must not use run-ahead at all: KVM
//! reports the guest's own MDSCR_EL1, not the one it runs with.
//!
//! RAM accesses of aligned elements go through [`GuestRam::read_atomic`] and
//! [`GuestRam::write_atomic`] (16-byte elements as two 8-byte halves), which a
//! VMM implements with host atomic accesses, so they keep the architecture's
//! single-copy atomicity while other vCPUs run.
//!
//! The rules, their cost to the guest (interrupt latency), and how to choose
//! the budget are in docs/emulator.md, "Run-ahead". [`RunAheadTrigger`] is the
//! policy helper that decides when run-ahead pays.

use core::fmt;
use core::sync::atomic::{Ordering, fence};

use crate::a64::{self, Cpu};
use crate::decode::{self, Base, Insn, Offset, Op};
use crate::emulate::{EmulateError, Emulator, Outcome};
use crate::mem::{GuestRam, MemError, MmioBus};
use crate::regcache::RegCache;
use crate::regs::{Reg, RegError, SysReg, VcpuRegs};
use crate::stage1::{self, AccessKind, El, LazyStage1};

/// PSTATE.SS: the instruction is being software-stepped.
const PSTATE_SS: u64 = 1 << 21;
/// PSTATE.nRW.
const PSTATE_NRW: u64 = 1 << 4;
/// PSTATE.M\[0\]: SP_ELx selected.
const PSTATE_SP: u64 = 1;
/// PSTATE.PAN.
const PSTATE_PAN: u64 = 1 << 22;
/// MDSCR_EL1.SS.
const MDSCR_SS: u64 = 1;
/// MDSCR_EL1.MDE.
const MDSCR_MDE: u64 = 1 << 15;
/// SCTLR_EL1.SA (EL1 SP alignment check).
const SCTLR_SA: u64 = 1 << 3;
/// SCTLR_EL1.SA0 (EL0 SP alignment check).
const SCTLR_SA0: u64 = 1 << 4;

/// The run-ahead budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RunAheadConfig {
    /// Instructions executed after the faulting one, at most. 0 disables
    /// run-ahead.
    pub max_insns: u32,
    /// Microseconds of [`RunAheadControl::now_micros`] at most (checked before
    /// each instruction, so one more emulated access may follow). Ignored
    /// when the control has no clock.
    pub max_micros: u64,
}

impl Default for RunAheadConfig {
    /// 256 instructions, 100 microseconds.
    fn default() -> Self {
        RunAheadConfig {
            max_insns: 256,
            max_micros: 100,
        }
    }
}

/// What the caller tells run-ahead while it runs.
pub trait RunAheadControl {
    /// Whether run-ahead must stop before the next instruction: the vCPU was
    /// asked to stop or pause (a kick), or the caller knows an interrupt is
    /// pending for it.
    fn stop_requested(&mut self) -> bool;

    /// A monotonic clock in microseconds for [`RunAheadConfig::max_micros`];
    /// `None` when the caller has none (the time budget is then not applied).
    fn now_micros(&mut self) -> Option<u64> {
        None
    }
}

/// A control that never asks to stop and has no clock: only the instruction
/// budget applies. For tests and single-vCPU tools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unlimited;

impl RunAheadControl for Unlimited {
    fn stop_requested(&mut self) -> bool {
        false
    }
}

impl<T: RunAheadControl + ?Sized> RunAheadControl for &mut T {
    fn stop_requested(&mut self) -> bool {
        (**self).stop_requested()
    }
    fn now_micros(&mut self) -> Option<u64> {
        (**self).now_micros()
    }
}

/// Why run-ahead stopped (or did not start). Every reason leaves the vCPU at
/// an instruction boundary, with everything before it done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The faulting instruction was not emulated (its [`Outcome`] is not
    /// `Emulated`): nothing ran ahead.
    NotEmulated,
    /// Run-ahead is disabled ([`RunAheadConfig::max_insns`] is 0).
    Disabled,
    /// The guest is being debugged (PSTATE.SS, MDSCR_EL1.SS or
    /// MDSCR_EL1.MDE), or MDSCR_EL1 could not be read.
    Debug,
    /// The guest is not in AArch64 at EL0 or EL1.
    State,
    /// The instruction budget was used up.
    Budget,
    /// The time budget was used up.
    Time,
    /// [`RunAheadControl::stop_requested`] said so.
    Requested,
    /// The next instruction could not be fetched (untranslatable PC, not RAM,
    /// misaligned).
    Fetch,
    /// The next instruction is outside the model.
    Unmodelled {
        /// The instruction word.
        word: u32,
    },
    /// An exclusive, atomic or CAS to RAM.
    RamAtomicity,
    /// An SP-based access with a misaligned SP and SP alignment checking on.
    SpAlignment,
    /// The emulator would not complete the next load/store (guest fault, no
    /// device, unsupported); the CPU re-executes it.
    Access,
    /// A branch target that `AArch64.BranchAddr` would rewrite.
    BranchTarget,
}

impl StopReason {
    /// A short name, for statistics.
    pub fn name(&self) -> &'static str {
        match self {
            StopReason::NotEmulated => "not-emulated",
            StopReason::Disabled => "disabled",
            StopReason::Debug => "debug",
            StopReason::State => "state",
            StopReason::Budget => "budget",
            StopReason::Time => "time",
            StopReason::Requested => "requested",
            StopReason::Fetch => "fetch",
            StopReason::Unmodelled { .. } => "unmodelled",
            StopReason::RamAtomicity => "ram-atomicity",
            StopReason::SpAlignment => "sp-alignment",
            StopReason::Access => "access",
            StopReason::BranchTarget => "branch-target",
        }
    }

    fn index(&self) -> usize {
        match self {
            StopReason::NotEmulated => 0,
            StopReason::Disabled => 1,
            StopReason::Debug => 2,
            StopReason::State => 3,
            StopReason::Budget => 4,
            StopReason::Time => 5,
            StopReason::Requested => 6,
            StopReason::Fetch => 7,
            StopReason::Unmodelled { .. } => 8,
            StopReason::RamAtomicity => 9,
            StopReason::SpAlignment => 10,
            StopReason::Access => 11,
            StopReason::BranchTarget => 12,
        }
    }

    const NAMES: [StopReason; 13] = [
        StopReason::NotEmulated,
        StopReason::Disabled,
        StopReason::Debug,
        StopReason::State,
        StopReason::Budget,
        StopReason::Time,
        StopReason::Requested,
        StopReason::Fetch,
        StopReason::Unmodelled { word: 0 },
        StopReason::RamAtomicity,
        StopReason::SpAlignment,
        StopReason::Access,
        StopReason::BranchTarget,
    ];
}

/// The result of one [`RunAhead::emulate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAheadOutcome {
    /// What happened to the faulting instruction (as [`Emulator::emulate`]
    /// reports it).
    pub outcome: Outcome,
    /// Instructions executed after it.
    pub ran: u32,
    /// Load/store instructions among them.
    pub accesses: u32,
    /// Why it stopped.
    pub stop: StopReason,
}

/// Counters over every [`RunAhead::emulate`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunAheadStats {
    /// Calls that executed at least one instruction after the faulting one.
    pub active: u64,
    /// Instructions executed after faulting ones.
    pub instructions: u64,
    /// Load/store instructions among them.
    pub accesses: u64,
    /// Stops, per [`StopReason`].
    pub stops: [u64; 13],
}

impl RunAheadStats {
    /// How many runs stopped for `reason` (the word of `Unmodelled` is
    /// ignored).
    pub fn stops_for(&self, reason: StopReason) -> u64 {
        self.stops[reason.index()]
    }
}

impl fmt::Display for RunAheadStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} runs, {} instructions ({} loads/stores); stops:",
            self.active, self.instructions, self.accesses
        )?;
        for r in StopReason::NAMES {
            let n = self.stops[r.index()];
            if n > 0 {
                write!(f, " {} {}", r.name(), n)?;
            }
        }
        Ok(())
    }
}

/// Run-ahead emulation: the option of [`Emulator`] that keeps executing after
/// the faulting instruction. Keep one per vCPU, next to its [`Emulator`] (it
/// caches ID_AA64MMFR0_EL1 and counts).
#[derive(Clone, Debug, Default)]
pub struct RunAhead {
    config: RunAheadConfig,
    pa_bits: Option<u8>,
    stats: RunAheadStats,
}

/// [`GuestRam`] whose aligned accesses of 1, 2, 4, 8 (and 16, as two 8-byte
/// halves) bytes are single-copy atomic ([`GuestRam::read_atomic`]).
struct AtomicRam<'a, M: ?Sized>(&'a M);

impl<M: GuestRam + ?Sized> GuestRam for AtomicRam<'_, M> {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let n = buf.len();
        match n {
            1 | 2 | 4 | 8 if ipa.is_multiple_of(n as u64) => self.0.read_atomic(ipa, buf),
            16 if ipa.is_multiple_of(8) => {
                let (lo, hi) = buf.split_at_mut(8);
                self.0.read_atomic(ipa, lo)?;
                self.0.read_atomic(ipa.wrapping_add(8), hi)
            }
            _ => self.0.read(ipa, buf),
        }
    }
    fn write(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        let n = buf.len();
        match n {
            1 | 2 | 4 | 8 if ipa.is_multiple_of(n as u64) => self.0.write_atomic(ipa, buf),
            16 if ipa.is_multiple_of(8) => {
                let (lo, hi) = buf.split_at(8);
                self.0.write_atomic(ipa, lo)?;
                self.0.write_atomic(ipa.wrapping_add(8), hi)
            }
            _ => self.0.write(ipa, buf),
        }
    }
    fn is_ram(&self, ipa: u64, len: usize) -> bool {
        self.0.is_ram(ipa, len)
    }
    fn read_atomic(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.read_atomic(ipa, buf)
    }
    fn write_atomic(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        self.0.write_atomic(ipa, buf)
    }
}

/// The interpreter's view of the cached registers.
struct CacheCpu<'c, R: VcpuRegs> {
    c: &'c mut RegCache<R>,
    sp: Reg,
}

impl<R: VcpuRegs> Cpu for CacheCpu<'_, R> {
    type Error = RegError;
    fn x(&mut self, n: u8) -> Result<u64, RegError> {
        self.c.get(Reg::X(n))
    }
    fn set_x(&mut self, n: u8, v: u64) -> Result<(), RegError> {
        self.c.set(Reg::X(n), v)
    }
    fn sp(&mut self) -> Result<u64, RegError> {
        self.c.get(self.sp)
    }
    fn set_sp(&mut self, v: u64) -> Result<(), RegError> {
        self.c.set(self.sp, v)
    }
    fn nzcv(&mut self) -> Result<u8, RegError> {
        Ok(((self.c.get(Reg::Pstate)? >> 28) & 0xf) as u8)
    }
    fn set_nzcv(&mut self, nzcv: u8) -> Result<(), RegError> {
        let p = self.c.get(Reg::Pstate)?;
        self.c.set(
            Reg::Pstate,
            (p & !0xf000_0000) | (u64::from(nzcv & 0xf) << 28),
        )
    }
}

/// What the next instruction is (a short-lived stack value: the size of the
/// decoded load/store does not matter, and boxing it would allocate per
/// instruction).
#[allow(clippy::large_enum_variant)]
enum Next {
    Int(a64::IntInsn),
    Access(Insn),
    Barrier,
    Other,
}

fn classify(word: u32) -> Next {
    if let Some(i) = a64::decode(word) {
        return Next::Int(i);
    }
    if a64::barrier(word).is_some() {
        return Next::Barrier;
    }
    match decode::decode(word) {
        Ok(i) => Next::Access(i),
        Err(_) => Next::Other,
    }
}

/// The code page of the last fetch: instruction words are read from RAM by
/// IPA, one stage-1 walk per page (the CPU may cache the translation in its
/// TLB just as long: changing it needs TLB maintenance, which stops
/// run-ahead).
#[derive(Clone, Copy)]
struct CodePage {
    va: u64,
    size: u64,
    ipa: u64,
}

impl RunAhead {
    /// Run-ahead with this budget.
    pub fn new(config: RunAheadConfig) -> Self {
        RunAhead {
            config,
            ..Default::default()
        }
    }

    /// The budget.
    pub fn config(&self) -> RunAheadConfig {
        self.config
    }

    /// Change the budget.
    pub fn set_config(&mut self, config: RunAheadConfig) {
        self.config = config;
    }

    /// Counters so far.
    pub fn stats(&self) -> &RunAheadStats {
        &self.stats
    }

    /// Use this physical address size (ID_AA64MMFR0_EL1.PARange, in bits)
    /// for instruction fetches instead of reading the register once.
    pub fn with_pa_bits(mut self, bits: u8) -> Self {
        self.pa_bits = Some(bits);
        self
    }

    /// Emulate the faulting instruction (as [`Emulator::emulate`] does, with
    /// `fault_ipa`), then run ahead until a stop rule applies (module
    /// documentation). Registers are read at most once and written back to
    /// `regs` only if changed, PC last.
    ///
    /// Errors are the emulator's. A [`EmulateError`] during a run-ahead
    /// load/store (a device rejecting an access, a register read failing) is
    /// returned after the registers of the instructions completed before it
    /// have been written back; that load/store may have made some of its
    /// accesses, as with [`Emulator::emulate`].
    pub fn emulate<R, M, B, C>(
        &mut self,
        emu: &mut Emulator,
        regs: &mut R,
        ram: &M,
        bus: &mut B,
        fault_ipa: Option<u64>,
        ctl: &mut C,
    ) -> Result<RunAheadOutcome, EmulateError>
    where
        R: VcpuRegs,
        M: GuestRam,
        B: MmioBus,
        C: RunAheadControl + ?Sized,
    {
        let mut c = RegCache::new(&mut *regs);
        let aram = AtomicRam(ram);
        let r = self.run(emu, &mut c, &aram, bus, fault_ipa, ctl);
        // Write back whatever completed, also when a later step failed.
        let flushed = c.flush();
        let out = r?;
        flushed?;
        if out.ran > 0 {
            self.stats.active += 1;
            self.stats.instructions += u64::from(out.ran);
            self.stats.accesses += u64::from(out.accesses);
        }
        self.stats.stops[out.stop.index()] += 1;
        Ok(out)
    }

    fn run<R, M, B, C>(
        &mut self,
        emu: &mut Emulator,
        c: &mut RegCache<R>,
        ram: &M,
        bus: &mut B,
        fault_ipa: Option<u64>,
        ctl: &mut C,
    ) -> Result<RunAheadOutcome, EmulateError>
    where
        R: VcpuRegs,
        M: GuestRam,
        B: MmioBus,
        C: RunAheadControl + ?Sized,
    {
        // The emulator reads PSTATE first anyway: the cached value is the one
        // before the faulting instruction (with its SS bit).
        let pstate0 = c.get(Reg::Pstate)?;
        let outcome = emu.emulate(&mut *c, ram, bus, fault_ipa)?;
        let mut out = RunAheadOutcome {
            outcome,
            ran: 0,
            accesses: 0,
            stop: StopReason::NotEmulated,
        };
        if !matches!(out.outcome, Outcome::Emulated { .. }) {
            return Ok(out);
        }
        if self.config.max_insns == 0 {
            out.stop = StopReason::Disabled;
            return Ok(out);
        }
        if pstate0 & PSTATE_SS != 0 {
            out.stop = StopReason::Debug;
            return Ok(out);
        }
        let pstate = c.get(Reg::Pstate)?;
        if pstate & PSTATE_NRW != 0 {
            out.stop = StopReason::State;
            return Ok(out);
        }
        let el = match (pstate >> 2) & 3 {
            0 => El::El0,
            1 => El::El1,
            _ => {
                out.stop = StopReason::State;
                return Ok(out);
            }
        };
        let sp = if el == El::El1 && pstate & PSTATE_SP != 0 {
            Reg::SpEl1
        } else {
            Reg::SpEl0
        };
        let mut s1 = LazyStage1::read(&mut *c, &mut self.pa_bits)?;
        s1.set_pan(pstate & PSTATE_PAN != 0);
        let start = ctl.now_micros();
        let mut code: Option<CodePage> = None;
        let mut debug_checked = false;
        out.stop = loop {
            if out.ran >= self.config.max_insns {
                break StopReason::Budget;
            }
            if ctl.stop_requested() {
                break StopReason::Requested;
            }
            if let (Some(t0), Some(now)) = (start, ctl.now_micros())
                && now.saturating_sub(t0) >= self.config.max_micros
            {
                break StopReason::Time;
            }
            let pc = c.get(Reg::Pc)?;
            let Some(word) = fetch(&mut s1, &mut *c, ram, &mut code, pc, el)? else {
                break StopReason::Fetch;
            };
            let next = classify(word);
            if matches!(next, Next::Other) {
                break StopReason::Unmodelled { word };
            }
            if !debug_checked {
                // Only now, when something would run ahead: a lone access
                // whose next instruction stops run-ahead pays nothing.
                debug_checked = true;
                match c.get(Reg::Sys(SysReg::MdscrEl1)) {
                    Ok(m) if m & (MDSCR_SS | MDSCR_MDE) == 0 => {}
                    _ => break StopReason::Debug,
                }
            }
            match next {
                Next::Int(i) => {
                    let mut cpu = CacheCpu { c: &mut *c, sp };
                    match a64::execute(&i, pc, &mut cpu)? {
                        Some(npc) => c.set(Reg::Pc, npc)?,
                        None => break StopReason::BranchTarget,
                    }
                }
                Next::Barrier => {
                    // DMB/DSB/ISB: every access before it is complete (device
                    // accesses are synchronous calls); order RAM accesses for
                    // the other vCPUs. Instruction fetches re-read RAM, and
                    // no system register is changed by run-ahead, so ISB
                    // needs nothing more.
                    fence(Ordering::SeqCst);
                    c.set(Reg::Pc, pc.wrapping_add(4))?;
                }
                Next::Access(insn) => {
                    if let Some(stop) = self.access_rules(&insn, &mut s1, &mut *c, ram, el, sp)? {
                        break stop;
                    }
                    match emu.emulate_insn(&mut *c, ram, bus, &insn, None)? {
                        Outcome::Emulated { .. } => out.accesses += 1,
                        _ => break StopReason::Access,
                    }
                }
                Next::Other => break StopReason::Unmodelled { word },
            }
            out.ran += 1;
        };
        Ok(out)
    }

    /// Stop rules for a load/store the emulator would otherwise run.
    fn access_rules<R: VcpuRegs, M: GuestRam>(
        &mut self,
        insn: &Insn,
        s1: &mut LazyStage1,
        c: &mut RegCache<R>,
        ram: &M,
        el: El,
        sp: Reg,
    ) -> Result<Option<StopReason>, EmulateError> {
        if insn.base == Base::Sp {
            let sctlr = s1.regs().sctlr;
            let check = match el {
                El::El0 => sctlr & SCTLR_SA0 != 0,
                El::El1 => sctlr & SCTLR_SA != 0,
            };
            if check && !c.get(sp)?.is_multiple_of(16) {
                return Ok(Some(StopReason::SpAlignment));
            }
        }
        let needs_hw = matches!(
            insn.op,
            Op::LoadExclusive
                | Op::StoreExclusive { .. }
                | Op::Atomic { .. }
                | Op::CompareAndSwap { .. }
        );
        if !needs_hw {
            return Ok(None);
        }
        // These forms address [Xn|SP] with no offset; anything else is left
        // to the CPU.
        let base = match (insn.base, insn.offset) {
            (Base::X(n), Offset::Imm(0)) if n < 31 => c.get(Reg::X(n))?,
            (Base::Sp, Offset::Imm(0)) => c.get(sp)?,
            _ => return Ok(Some(StopReason::RamAtomicity)),
        };
        let kind = if insn.op == Op::LoadExclusive {
            AccessKind::Read
        } else {
            AccessKind::Write
        };
        let regs = s1.for_va(&mut *c, base, false)?;
        match stage1::translate(regs, base, kind, el, ram) {
            // Let the emulator report (and the CPU take) the fault.
            Err(_) => Ok(None),
            Ok(t) => {
                let len = usize::try_from(insn.elements.total_bytes()).unwrap_or(usize::MAX);
                let any_ram = ram.is_ram(t.ipa, 1)
                    || ram.is_ram(t.ipa.wrapping_add(len.saturating_sub(1) as u64), 1);
                Ok(any_ram.then_some(StopReason::RamAtomicity))
            }
        }
    }
}

/// Fetch the instruction word at `pc`, or `None` when it cannot be fetched
/// (misaligned, a translation fault, not RAM): the CPU fetches it itself.
fn fetch<R: VcpuRegs, M: GuestRam>(
    s1: &mut LazyStage1,
    c: &mut RegCache<R>,
    ram: &M,
    code: &mut Option<CodePage>,
    pc: u64,
    el: El,
) -> Result<Option<u32>, RegError> {
    if !pc.is_multiple_of(4) {
        return Ok(None);
    }
    let page = match *code {
        Some(p) if pc.wrapping_sub(p.va) < p.size => p,
        _ => {
            let regs = s1.for_va(&mut *c, pc, false)?;
            let Ok(t) = stage1::translate(regs, pc, AccessKind::Fetch, el, ram) else {
                return Ok(None);
            };
            let p = CodePage {
                va: pc & !(t.size - 1),
                size: t.size,
                ipa: t.ipa & !(t.size - 1),
            };
            *code = Some(p);
            p
        }
    };
    let ipa = page.ipa.wrapping_add(pc.wrapping_sub(page.va));
    let mut b = [0u8; 4];
    if ram.read_atomic(ipa, &mut b).is_err() {
        return Ok(None);
    }
    Ok(Some(u32::from_le_bytes(b)))
}

/// When run-ahead pays: the policy helper a VMM calls with the PC of each
/// NISV exit before deciding to use [`RunAhead`].
///
/// Run-ahead saves exits only inside loops; after a lone access it would
/// execute the following code in the VMM at the price of register reads and
/// writes the CPU does not need. [`RunAheadTrigger::repeat_within`] says yes
/// for an exit at a PC that also exited (one of the last four NISV exits)
/// within `window` microseconds: the second iteration of a device loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAheadTrigger {
    always: bool,
    window: u64,
    recent: [Option<(u64, u64)>; 4],
    next: usize,
}

impl RunAheadTrigger {
    /// Run ahead at a PC that exited within `window_micros` before.
    pub fn repeat_within(window_micros: u64) -> Self {
        RunAheadTrigger {
            always: false,
            window: window_micros,
            recent: [None; 4],
            next: 0,
        }
    }

    /// Run ahead on every exit (for tests and oracles).
    pub fn always() -> Self {
        RunAheadTrigger {
            always: true,
            ..Self::repeat_within(0)
        }
    }

    /// Record an exit at `pc` at time `now_micros`; whether to run ahead.
    pub fn should_run_ahead(&mut self, pc: u64, now_micros: u64) -> bool {
        let hit = self.always
            || self
                .recent
                .iter()
                .flatten()
                .any(|&(p, t)| p == pc && now_micros >= t && now_micros - t <= self.window);
        // Refresh the entry of this PC, or replace the oldest.
        match self
            .recent
            .iter_mut()
            .find(|e| matches!(e, Some((p, _)) if *p == pc))
        {
            Some(e) => *e = Some((pc, now_micros)),
            None => {
                if let Some(e) = self.recent.get_mut(self.next) {
                    *e = Some((pc, now_micros));
                }
                self.next = (self.next + 1) % self.recent.len();
            }
        }
        hit
    }

    /// Record that the exit at `pc` was handled at `now_micros` (the guest
    /// runs again). Optional: without it the window runs from the start of
    /// the previous exit at `pc`, so it also counts the VMM's handling of that
    /// exit; with it the window is the guest's own time between the two exits.
    /// Call it when handling can take a sizeable part of the window (a
    /// 64-element `ld1` on a slow or emulated host takes milliseconds).
    pub fn exit_handled(&mut self, pc: u64, now_micros: u64) {
        if let Some(e) = self
            .recent
            .iter_mut()
            .find(|e| matches!(e, Some((p, _)) if *p == pc))
        {
            *e = Some((pc, now_micros));
        }
    }
}
