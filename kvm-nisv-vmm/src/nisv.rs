// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What to do with a `KVM_EXIT_ARM_NISV` exit: the `--on-nisv` policy.
//!
//! * `emulate` (default): run kvm-nisv's emulator over the MMIO bus and RAM. An
//!   access that hits neither RAM nor a device gets an injected external abort,
//!   so the guest sees the same thing real hardware gives it for a bus error.
//!   An instruction the emulator cannot handle inside a device window stops the
//!   VM with a report.
//! * `inject`: always inject an external abort (the behaviour a VMM without an
//!   emulator should choose instead of dying).
//! * `stop`: print the report and exit with [`EXIT_NISV_STOP`].
//!
//! The policy code is plain: it takes the vCPU's registers, RAM and the bus
//! through kvm-nisv's traits and returns a [`NisvAction`]; the caller injects
//! or stops. So every branch is unit-tested with an in-memory register file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kvm_nisv::decode::{Class, Insn};
use kvm_nisv::mem::GuestRam;
use kvm_nisv::regs::{Reg, RegError, SysReg, VcpuRegs};

use crate::adapter::{self, EmuOutcome, NisvEmulator};
use crate::bus::Bus;

/// Exit status when `--on-nisv stop` (or an instruction we cannot emulate inside
/// a device window, or an emulator error) stops the VM.
pub const EXIT_NISV_STOP: i32 = 3;
/// Exit status when a guest keeps faulting on the same instruction after
/// injected aborts.
pub const EXIT_RETRY_LOOP: i32 = 4;
/// How many consecutive injected aborts at one PC count as a retry loop.
pub const RETRY_LIMIT: u32 = 16;
/// Frames printed in the backtrace at most.
pub const BACKTRACE_MAX: usize = 32;

/// The `--on-nisv` policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// Emulate the access with kvm-nisv (inject an abort if nothing is there).
    #[default]
    Emulate,
    /// Inject an external data abort into the guest every time.
    Inject,
    /// Print a report and exit with status 3.
    Stop,
}

/// What the caller must do after the policy ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NisvAction {
    /// The access was emulated; resume the vCPU.
    Resume,
    /// Make an external data abort pending, then resume.
    InjectAbort,
    /// Deliver a synchronous data abort with this syndrome (a fault the
    /// emulator found: translation, permission, alignment...), then resume.
    DeliverAbort {
        /// ESR_EL1.
        esr: u64,
        /// FAR_EL1.
        far: u64,
    },
    /// Stop the VM: print `report` and exit with `status`.
    Stop {
        /// Process exit status.
        status: i32,
        /// The human-readable report.
        report: String,
    },
}

/// Counters shared by every vCPU, printed at exit.
#[derive(Debug, Default)]
pub struct NisvStats {
    /// NISV exits seen.
    pub exits: AtomicU64,
    /// Exits emulated (also shown to the guest as the test device's `NISV_COUNT`).
    pub emulated: Arc<AtomicU64>,
    /// External aborts injected.
    pub injected: AtomicU64,
    /// Faults found by the emulator and delivered to the guest.
    pub faults_delivered: AtomicU64,
    /// Exits whose instruction could not be decoded.
    pub undecoded: AtomicU64,
    /// Exits after which run-ahead executed at least one more instruction
    /// (`--nisv-run-ahead`).
    pub run_ahead_exits: AtomicU64,
    /// Instructions executed by run-ahead.
    pub run_ahead_insns: AtomicU64,
    /// `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG` calls made for NISV exits.
    pub reg_calls: AtomicU64,
    per_class: Mutex<BTreeMap<Class, u64>>,
}

impl NisvStats {
    /// Count one decoded instruction of `class`.
    pub fn count_class(&self, class: Class) {
        let mut m = self.per_class.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(class).or_insert(0) += 1;
    }

    /// Per-class counts.
    pub fn per_class(&self) -> BTreeMap<Class, u64> {
        self.per_class
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The summary printed at exit.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "kvm-nisv-vmm: NISV exits: {} (emulated {}, aborts injected {}, faults delivered {}, undecoded {})",
            self.exits.load(Ordering::Relaxed),
            self.emulated.load(Ordering::Relaxed),
            self.injected.load(Ordering::Relaxed),
            self.faults_delivered.load(Ordering::Relaxed),
            self.undecoded.load(Ordering::Relaxed),
        );
        let exits = self.exits.load(Ordering::Relaxed);
        let calls = self.reg_calls.load(Ordering::Relaxed);
        if exits > 0 {
            let _ = write!(
                s,
                "\nkvm-nisv-vmm: register calls: {calls} ({:.2} per NISV exit)",
                calls as f64 / exits as f64
            );
        }
        let ra = self.run_ahead_exits.load(Ordering::Relaxed);
        if ra > 0 {
            let _ = write!(
                s,
                "\nkvm-nisv-vmm: run-ahead: {ra} exits, {} instructions",
                self.run_ahead_insns.load(Ordering::Relaxed)
            );
        }
        for (class, n) in self.per_class() {
            let _ = write!(s, "\nkvm-nisv-vmm:   {class:?}: {n}");
        }
        s
    }
}

/// Detects a guest that retries the same faulting instruction forever.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryDetector {
    last_pc: Option<u64>,
    count: u32,
}

impl RetryDetector {
    /// Note an abort injected at `pc`; returns the number of consecutive
    /// injections at that PC (including this one).
    pub fn injected_at(&mut self, pc: u64) -> u32 {
        if self.last_pc == Some(pc) {
            self.count = self.count.saturating_add(1);
        } else {
            self.last_pc = Some(pc);
            self.count = 1;
        }
        self.count
    }

    /// Forget the history (an exit was emulated: the guest made progress).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The per-vCPU NISV handler.
pub struct NisvHandler {
    policy: Policy,
    trace: bool,
    emulator: Box<dyn NisvEmulator>,
    stats: Arc<NisvStats>,
    retry: RetryDetector,
    retry_limit: u32,
}

impl std::fmt::Debug for NisvHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NisvHandler")
            .field("policy", &self.policy)
            .field("trace", &self.trace)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The faulting instruction, as far as it could be read.
struct Fetched {
    pc: u64,
    word: Option<u32>,
    insn: Option<Insn>,
    why_not: Option<String>,
}

fn fetch(regs: &mut dyn VcpuRegs, ram: &dyn GuestRam) -> Fetched {
    let pc = match regs.get(Reg::Pc) {
        Ok(pc) => pc,
        Err(e) => {
            return Fetched {
                pc: 0,
                word: None,
                insn: None,
                why_not: Some(e.to_string()),
            };
        }
    };
    let word = adapter::translate(regs, ram, pc).and_then(|ipa| {
        let mut b = [0u8; 4];
        ram.read(ipa, &mut b).map_err(|e| e.to_string())?;
        // Instructions are always little-endian (Arm ARM B2.6.2).
        Ok(u32::from_le_bytes(b))
    });
    match word {
        Ok(w) => Fetched {
            pc,
            word: Some(w),
            insn: adapter::decode(w),
            why_not: None,
        },
        Err(e) => Fetched {
            pc,
            word: None,
            insn: None,
            why_not: Some(e),
        },
    }
}

fn insn_text(f: &Fetched) -> String {
    match (&f.insn, f.word) {
        (Some(i), _) => adapter::disasm(i),
        (None, Some(w)) => format!("{w:#010x} (not a load/store the decoder knows)"),
        (None, None) => format!("unreadable ({})", f.why_not.as_deref().unwrap_or("?")),
    }
}

/// Which of the two situations the report distinguishes.
fn where_is(bus: &Bus, ram: &dyn GuestRam, ipa: u64) -> (Option<String>, String) {
    if let Some((name, base)) = bus.device_at(ipa) {
        (
            Some(name.to_string()),
            format!("inside the {name} window at +{:#x}", ipa - base),
        )
    } else if ram.is_ram(ipa, 1) {
        (None, "in guest RAM".to_string())
    } else {
        (None, "outside any RAM or device".to_string())
    }
}

/// Build the stop report: the case in plain words, the decoded ESR, the fault
/// IPA, the instruction, the registers, PSTATE and a frame-pointer backtrace.
pub fn report(
    regs: &mut dyn VcpuRegs,
    ram: &dyn GuestRam,
    bus: &Bus,
    esr_iss: Option<u64>,
    fault_ipa: u64,
    reason: &str,
) -> String {
    let f = fetch(regs, ram);
    let (device, place) = where_is(bus, ram, fault_ipa);
    let case = match (&device, f.insn.is_some()) {
        (Some(d), false) => {
            format!("access inside the {d} window with an instruction we cannot emulate")
        }
        (Some(d), true) => {
            format!("access inside the {d} window by an instruction the decoder knows")
        }
        (None, _) if ram.is_ram(fault_ipa, 1) => {
            "access to guest RAM without a valid syndrome (unexpected: RAM is a memslot)"
                .to_string()
        }
        (None, _) => "access outside any RAM or device (most likely a guest bug)".to_string(),
    };
    let mut s = String::new();
    let _ = writeln!(s, "kvm-nisv-vmm: NISV exit: {case}");
    let _ = writeln!(s, "  why stopped : {reason}");
    let _ = writeln!(s, "  fault IPA   : {fault_ipa:#x} ({place})");
    match esr_iss {
        Some(iss) => {
            let _ = writeln!(s, "  ESR ISS     : {}", adapter::describe_iss(iss));
        }
        None => {
            let _ = writeln!(
                s,
                "  ESR ISS     : (a KVM_EXIT_MMIO access with a valid syndrome, not a NISV exit)"
            );
        }
    }
    let _ = writeln!(s, "  instruction : {} at PC {:#x}", insn_text(&f), f.pc);
    let mut x = [0u64; 31];
    for (i, v) in x.iter_mut().enumerate() {
        *v = regs.get(Reg::X(i as u8)).unwrap_or(0);
    }
    for row in 0..8 {
        let mut line = String::from(" ");
        for col in 0..4 {
            let i = row * 4 + col;
            if let Some(v) = x.get(i) {
                let _ = write!(line, " x{i:<2}={v:016x}");
            }
        }
        let _ = writeln!(s, "{line}");
    }
    let sp0 = regs.get(Reg::SpEl0).unwrap_or(0);
    let sp1 = regs.get(Reg::SpEl1).unwrap_or(0);
    let _ = writeln!(s, "  sp_el0={sp0:016x} sp_el1={sp1:016x} pc={:016x}", f.pc);
    match regs.get(Reg::Pstate) {
        Ok(p) => {
            let _ = writeln!(s, "  PSTATE      : {}", describe_pstate(p));
        }
        Err(e) => {
            let _ = writeln!(s, "  PSTATE      : unreadable ({e})");
        }
    }
    let _ = writeln!(s, "  backtrace   :");
    for line in backtrace(regs, ram, f.pc) {
        let _ = writeln!(s, "    {line}");
    }
    s
}

/// Make the vCPU take a synchronous data abort to EL1 with `esr` and `far`, as
/// the CPU would (Arm ARM pseudocode `AArch64.TakeException`; KVM's
/// `inject_abt64()` in arch/arm64/kvm/inject_fault.c does the same for the
/// external aborts it injects): SPSR_EL1 = PSTATE, ELR_EL1 = PC, PSTATE = EL1h
/// with DAIF masked (NZCV and DIT kept, PAN set when SCTLR_EL1.SPAN = 0, SSBS
/// from SCTLR_EL1.DSSBS), PC = VBAR_EL1 + 0x000 (EL1t), 0x200 (EL1h) or 0x400
/// (from EL0).
pub fn deliver_sync_abort(regs: &mut dyn VcpuRegs, esr: u64, far: u64) -> Result<(), RegError> {
    const NZCV: u64 = 0xf000_0000;
    const DIT: u64 = 1 << 24;
    const PAN: u64 = 1 << 22;
    const SSBS: u64 = 1 << 12;
    const SCTLR_SPAN: u64 = 1 << 23;
    const SCTLR_DSSBS: u64 = 1 << 44;
    let pstate = regs.get(Reg::Pstate)?;
    let pc = regs.get(Reg::Pc)?;
    let vbar = regs.get(Reg::Sys(SysReg::VbarEl1))?;
    let sctlr = regs.get(Reg::Sys(SysReg::SctlrEl1))?;
    let offset = match (pstate >> 2) & 3 {
        0 => 0x400,
        _ if pstate & 1 == 1 => 0x200,
        _ => 0x000,
    };
    let mut new = (pstate & (NZCV | DIT | PAN)) | 0x3c5;
    if sctlr & SCTLR_SPAN == 0 {
        new |= PAN;
    }
    if sctlr & SCTLR_DSSBS != 0 {
        new |= SSBS;
    }
    regs.set(Reg::Sys(SysReg::SpsrEl1), pstate)?;
    regs.set(Reg::Sys(SysReg::ElrEl1), pc)?;
    regs.set(Reg::Sys(SysReg::EsrEl1), esr)?;
    regs.set(Reg::Sys(SysReg::FarEl1), far)?;
    regs.set(Reg::Pstate, new)?;
    regs.set(Reg::Pc, vbar.wrapping_add(offset))
}

/// PSTATE (SPSR layout) in words: NZCV, DAIF, mode.
pub fn describe_pstate(p: u64) -> String {
    let flag = |bit: u32, c: char| if p >> bit & 1 == 1 { c } else { '-' };
    let mode = match p & 0x1f {
        0b00000 => "EL0t",
        0b00100 => "EL1t",
        0b00101 => "EL1h",
        0b01000 => "EL2t",
        0b01001 => "EL2h",
        m if m & 0x10 != 0 => "AArch32",
        _ => "reserved",
    };
    format!(
        "{p:#x} ({}{}{}{} DAIF={}{}{}{} {mode})",
        flag(31, 'N'),
        flag(30, 'Z'),
        flag(29, 'C'),
        flag(28, 'V'),
        flag(9, 'D'),
        flag(8, 'A'),
        flag(7, 'I'),
        flag(6, 'F'),
    )
}

/// A frame-pointer backtrace (AAPCS64 frame records: `[x29] = caller's x29`,
/// `[x29 + 8] = return address`), read through the stage-1 walker. Stops at a
/// null, misaligned, non-increasing or untranslatable frame pointer.
pub fn backtrace(regs: &mut dyn VcpuRegs, ram: &dyn GuestRam, pc: u64) -> Vec<String> {
    let mut out = vec![format!("#0  pc {pc:#x}")];
    if let Ok(lr) = regs.get(Reg::X(30)) {
        out.push(format!("#1  lr {lr:#x}"));
    }
    let mut fp = regs.get(Reg::X(29)).unwrap_or(0);
    let mut prev = 0u64;
    while out.len() < BACKTRACE_MAX {
        if fp == 0 {
            break;
        }
        if !fp.is_multiple_of(16) || fp <= prev {
            out.push(format!(
                "(frame pointer {fp:#x} is not a frame record; stopping)"
            ));
            break;
        }
        let rec = adapter::translate(regs, ram, fp).and_then(|ipa| {
            let mut b = [0u8; 16];
            ram.read(ipa, &mut b).map_err(|e| e.to_string())?;
            let (lo, hi) = b.split_at(8);
            let next = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
            let ret = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));
            Ok((next, ret))
        });
        match rec {
            Ok((next, ret)) => {
                out.push(format!("#{:<2} ret {ret:#x} (frame {fp:#x})", out.len()));
                prev = fp;
                fp = next;
            }
            Err(e) => {
                out.push(format!("(frame {fp:#x} unreadable: {e})"));
                break;
            }
        }
    }
    out
}

impl NisvHandler {
    /// A handler with the given policy and emulator.
    pub fn new(
        policy: Policy,
        trace: bool,
        emulator: Box<dyn NisvEmulator>,
        stats: Arc<NisvStats>,
    ) -> Self {
        NisvHandler {
            policy,
            trace,
            emulator,
            stats,
            retry: RetryDetector::default(),
            retry_limit: RETRY_LIMIT,
        }
    }

    /// Change the retry-loop limit (tests).
    pub fn with_retry_limit(mut self, limit: u32) -> Self {
        self.retry_limit = limit.max(1);
        self
    }

    /// The shared counters.
    pub fn stats(&self) -> &Arc<NisvStats> {
        &self.stats
    }

    fn trace(&self, vcpu: usize, pc: u64, ipa: u64, iss: u64, what: &str, result: &str) {
        if self.trace {
            eprintln!(
                "kvm-nisv-vmm: nisv vcpu{vcpu} pc={pc:#x} ipa={ipa:#x} iss={iss:#x}: {what} -> {result}"
            );
        }
    }

    /// Decide what to do with one NISV exit.
    pub fn handle(
        &mut self,
        vcpu: usize,
        regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        bus: &Bus,
        esr_iss: u64,
        fault_ipa: u64,
    ) -> NisvAction {
        self.stats.exits.fetch_add(1, Ordering::Relaxed);
        let nothing_there = bus.device_at(fault_ipa).is_none() && !ram.is_ram(fault_ipa, 1);
        match self.policy {
            Policy::Stop => {
                let f = fetch(regs, ram);
                self.count(&f.insn);
                self.trace(vcpu, f.pc, fault_ipa, esr_iss, &insn_text(&f), "stop");
                NisvAction::Stop {
                    status: EXIT_NISV_STOP,
                    report: report(regs, ram, bus, Some(esr_iss), fault_ipa, "--on-nisv stop"),
                }
            }
            Policy::Inject => {
                let f = fetch(regs, ram);
                self.count(&f.insn);
                self.trace(
                    vcpu,
                    f.pc,
                    fault_ipa,
                    esr_iss,
                    &insn_text(&f),
                    "inject external abort",
                );
                self.inject(regs, ram, bus, Some(esr_iss), fault_ipa, f.pc)
            }
            Policy::Emulate => {
                let pc = regs.get(Reg::Pc).unwrap_or(0);
                match self.emulator.emulate(regs, ram, bus, fault_ipa) {
                    Ok(EmuOutcome::Emulated { insn }) => {
                        self.stats.count_class(insn.class);
                        self.stats.emulated.fetch_add(1, Ordering::Relaxed);
                        self.retry.reset();
                        self.trace(
                            vcpu,
                            pc,
                            fault_ipa,
                            esr_iss,
                            &adapter::disasm(&insn),
                            "emulated",
                        );
                        NisvAction::Resume
                    }
                    Ok(EmuOutcome::NoDevice { insn, va, ipa }) => {
                        self.stats.count_class(insn.class);
                        let what = format!(
                            "{} (va {va:#x} ipa {ipa:#x}: no RAM or device)",
                            adapter::disasm(&insn)
                        );
                        self.trace(vcpu, pc, fault_ipa, esr_iss, &what, "inject external abort");
                        self.inject(regs, ram, bus, Some(esr_iss), fault_ipa, pc)
                    }
                    Ok(EmuOutcome::GuestFault { esr, far, what }) => {
                        let f = fetch(regs, ram);
                        self.count(&f.insn);
                        let what = format!("{} ({what})", insn_text(&f));
                        self.trace(
                            vcpu,
                            pc,
                            fault_ipa,
                            esr_iss,
                            &what,
                            &format!("deliver data abort, ESR {esr:#x} FAR {far:#x}"),
                        );
                        if let Some(stop) =
                            self.retry_check(regs, ram, bus, Some(esr_iss), fault_ipa, pc)
                        {
                            return stop;
                        }
                        self.stats.faults_delivered.fetch_add(1, Ordering::Relaxed);
                        NisvAction::DeliverAbort { esr, far }
                    }
                    Ok(EmuOutcome::Unsupported { word, pc }) => {
                        self.stats.undecoded.fetch_add(1, Ordering::Relaxed);
                        let what = format!("{word:#010x} (unsupported)");
                        if nothing_there {
                            self.trace(
                                vcpu,
                                pc,
                                fault_ipa,
                                esr_iss,
                                &what,
                                "inject external abort",
                            );
                            return self.inject(regs, ram, bus, Some(esr_iss), fault_ipa, pc);
                        }
                        self.trace(vcpu, pc, fault_ipa, esr_iss, &what, "stop");
                        NisvAction::Stop {
                            status: EXIT_NISV_STOP,
                            report: report(
                                regs,
                                ram,
                                bus,
                                Some(esr_iss),
                                fault_ipa,
                                "the emulator does not support this instruction",
                            ),
                        }
                    }
                    Err(e) => {
                        let f = fetch(regs, ram);
                        self.count(&f.insn);
                        if nothing_there {
                            // Whatever the emulator's trouble, nothing is at this address:
                            // the guest gets the abort real hardware would give it.
                            self.trace(
                                vcpu,
                                pc,
                                fault_ipa,
                                esr_iss,
                                &insn_text(&f),
                                "inject external abort",
                            );
                            return self.inject(regs, ram, bus, Some(esr_iss), fault_ipa, pc);
                        }
                        self.trace(
                            vcpu,
                            pc,
                            fault_ipa,
                            esr_iss,
                            &insn_text(&f),
                            "stop (emulator error)",
                        );
                        NisvAction::Stop {
                            status: EXIT_NISV_STOP,
                            report: report(
                                regs,
                                ram,
                                bus,
                                Some(esr_iss),
                                fault_ipa,
                                &format!("emulator error: {e}"),
                            ),
                        }
                    }
                }
            }
        }
    }

    /// The vCPU took an exception the VMM injected or delivered.
    pub fn exception_delivered(&mut self) {
        self.emulator.exception_injected();
    }

    fn count(&self, insn: &Option<Insn>) {
        match insn {
            Some(i) => self.stats.count_class(i.class),
            None => {
                self.stats.undecoded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A `KVM_EXIT_MMIO` access to an address with neither RAM nor a device:
    /// inject an external abort (like a bus error on hardware), with the same
    /// retry-loop protection as NISV exits.
    #[allow(clippy::too_many_arguments)]
    pub fn unmapped_mmio(
        &mut self,
        vcpu: usize,
        regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        bus: &Bus,
        addr: u64,
        len: usize,
        write: bool,
    ) -> NisvAction {
        let pc = regs.get(Reg::Pc).unwrap_or(0);
        if self.trace {
            let dir = if write { "write" } else { "read" };
            eprintln!(
                "kvm-nisv-vmm: mmio vcpu{vcpu} pc={pc:#x} {dir} of {len} bytes at {addr:#x}: nothing there -> inject external abort"
            );
        }
        self.inject(regs, ram, bus, None, addr, pc)
    }

    /// Inject, unless the guest is looping on this PC.
    fn inject(
        &mut self,
        regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        bus: &Bus,
        esr_iss: Option<u64>,
        fault_ipa: u64,
        pc: u64,
    ) -> NisvAction {
        if let Some(stop) = self.retry_check(regs, ram, bus, esr_iss, fault_ipa, pc) {
            return stop;
        }
        self.stats.injected.fetch_add(1, Ordering::Relaxed);
        NisvAction::InjectAbort
    }

    /// Count an exception about to be raised at `pc`; the stop action when the
    /// guest has retried the same instruction too often.
    fn retry_check(
        &mut self,
        regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        bus: &Bus,
        esr_iss: Option<u64>,
        fault_ipa: u64,
        pc: u64,
    ) -> Option<NisvAction> {
        let n = self.retry.injected_at(pc);
        (n > self.retry_limit).then(|| NisvAction::Stop {
            status: EXIT_RETRY_LOOP,
            report: report(
                regs,
                ram,
                bus,
                esr_iss,
                fault_ipa,
                &format!(
                    "the guest faulted {} times in a row on the instruction at {pc:#x} after each abort the VMM raised (retry loop)",
                    n - 1
                ),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{BusDevice, DeviceError};
    use crate::memory::Ram;
    use kvm_nisv::decode::decode;
    use kvm_nisv::regs::RegisterFile;

    const RAM: u64 = 0x8000_0000;
    const DEV: u64 = 0x1000_0000;

    struct Scratch(Vec<u8>);
    impl BusDevice for Scratch {
        fn name(&self) -> &str {
            "scratch"
        }
        fn read(&mut self, o: u64, d: &mut [u8]) -> Result<(), DeviceError> {
            let s = self
                .0
                .get(o as usize..o as usize + d.len())
                .ok_or(DeviceError::BadAccess {
                    offset: o,
                    len: d.len(),
                })?;
            d.copy_from_slice(s);
            Ok(())
        }
        fn write(&mut self, o: u64, d: &[u8]) -> Result<(), DeviceError> {
            self.0
                .get_mut(o as usize..o as usize + d.len())
                .ok_or(DeviceError::BadAccess {
                    offset: o,
                    len: d.len(),
                })?
                .copy_from_slice(d);
            Ok(())
        }
    }

    /// A scripted emulator: returns the queued outcomes in order and, for
    /// `Emulated`, advances PC like a real emulator.
    struct Scripted(Vec<Result<EmuOutcome, String>>);
    impl NisvEmulator for Scripted {
        fn emulate(
            &mut self,
            regs: &mut dyn VcpuRegs,
            _: &dyn GuestRam,
            _: &Bus,
            _: u64,
        ) -> Result<EmuOutcome, String> {
            let o = if self.0.is_empty() {
                Err("script exhausted".into())
            } else {
                self.0.remove(0)
            };
            if let Ok(EmuOutcome::Emulated { .. }) = o {
                let pc = regs.get(Reg::Pc).unwrap();
                regs.set(Reg::Pc, pc + 4).unwrap();
            }
            o
        }
    }

    // str x0, [x1], #8
    const STR_POST: u32 = 0xf804_8420;

    fn setup() -> (RegisterFile, Ram, Bus) {
        let mut r = RegisterFile {
            pc: RAM + 0x100,
            pstate: 0x3c5,
            ..Default::default()
        };
        r.x[0] = 0x1122;
        r.x[1] = DEV + 8;
        let ram = Ram::new(RAM, 0x10000).unwrap();
        ram.write(RAM + 0x100, &STR_POST.to_le_bytes()).unwrap();
        let mut bus = Bus::new();
        bus.insert(DEV, 0x1000, Arc::new(Mutex::new(Scratch(vec![0; 0x1000]))))
            .unwrap();
        (r, ram, bus)
    }

    fn handler(policy: Policy, script: Vec<Result<EmuOutcome, String>>) -> NisvHandler {
        NisvHandler::new(
            policy,
            false,
            Box::new(Scripted(script)),
            Arc::new(NisvStats::default()),
        )
    }

    fn insn() -> Insn {
        decode(STR_POST).expect("the decoder handles str (post-index)")
    }

    #[test]
    fn emulate_resumes_and_counts_by_class() {
        let (mut r, ram, bus) = setup();
        let mut h = handler(
            Policy::Emulate,
            vec![Ok(EmuOutcome::Emulated { insn: insn() })],
        );
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8),
            NisvAction::Resume
        );
        assert_eq!(r.pc, RAM + 0x104);
        let st = h.stats();
        assert_eq!(st.exits.load(Ordering::Relaxed), 1);
        assert_eq!(st.emulated.load(Ordering::Relaxed), 1);
        assert_eq!(st.per_class().get(&insn().class), Some(&1));
        assert!(st.summary().contains("NISV exits: 1 (emulated 1"));
    }

    #[test]
    fn emulate_injects_when_nothing_is_there() {
        let (mut r, ram, bus) = setup();
        let mut h = handler(
            Policy::Emulate,
            vec![Ok(EmuOutcome::NoDevice {
                insn: insn(),
                va: 0x4000_0000,
                ipa: 0x4000_0000,
            })],
        );
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, 0x4000_0000),
            NisvAction::InjectAbort
        );
        assert_eq!(h.stats().injected.load(Ordering::Relaxed), 1);
        // An emulator error at an address with nothing behind it also injects.
        let mut h = handler(Policy::Emulate, vec![Err("boom".into())]);
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, 0x4000_0000),
            NisvAction::InjectAbort
        );
    }

    #[test]
    fn emulate_stops_on_unsupported_instruction_in_a_device_window() {
        let (mut r, ram, bus) = setup();
        let mut h = handler(
            Policy::Emulate,
            vec![Ok(EmuOutcome::Unsupported {
                word: 0xd503_201f,
                pc: r.pc,
            })],
        );
        match h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8) {
            NisvAction::Stop { status, report } => {
                assert_eq!(status, EXIT_NISV_STOP);
                assert!(report.contains("inside the scratch window"), "{report}");
                assert!(report.contains("does not support"), "{report}");
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn inject_policy_always_injects_and_stop_policy_stops() {
        let (mut r, ram, bus) = setup();
        let mut h = handler(Policy::Inject, vec![]);
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8),
            NisvAction::InjectAbort
        );
        assert_eq!(
            h.stats().per_class().get(&insn().class),
            Some(&1),
            "decoded for the counters"
        );
        let mut h = handler(Policy::Stop, vec![]);
        match h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8) {
            NisvAction::Stop { status, report } => {
                assert_eq!(status, EXIT_NISV_STOP);
                assert!(
                    report.contains("access inside the scratch window"),
                    "{report}"
                );
                assert!(
                    report.contains(&format!("{:#010x}", STR_POST)),
                    "names the instruction: {report}"
                );
                assert!(report.contains("fault IPA   : 0x10000008"), "{report}");
                assert!(report.contains("x1 =0000000010000008"), "{report}");
                assert!(report.contains("EL1h"), "{report}");
                assert!(report.contains("#0  pc 0x80000100"), "{report}");
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn stop_report_says_outside_any_ram_or_device() {
        let (mut r, ram, bus) = setup();
        let mut h = handler(Policy::Stop, vec![]);
        let NisvAction::Stop { report, .. } = h.handle(0, &mut r, &ram, &bus, 0x45, 0x2000_0000)
        else {
            panic!()
        };
        assert!(
            report.contains("access outside any RAM or device (most likely a guest bug)"),
            "{report}"
        );
    }

    #[test]
    fn retry_loop_is_detected_and_reset_by_progress() {
        let (mut r, ram, bus) = setup();
        let mut h = handler(Policy::Inject, vec![]).with_retry_limit(16);
        for i in 0..16 {
            assert_eq!(
                h.handle(0, &mut r, &ram, &bus, 0x45, 0x2000_0000),
                NisvAction::InjectAbort,
                "try {i}"
            );
        }
        match h.handle(0, &mut r, &ram, &bus, 0x45, 0x2000_0000) {
            NisvAction::Stop { status, report } => {
                assert_eq!(status, EXIT_RETRY_LOOP);
                assert!(report.contains("16 times in a row"), "{report}");
            }
            a => panic!("{a:?}"),
        }
        // Different PCs never trip it.
        let mut h = handler(Policy::Inject, vec![]).with_retry_limit(2);
        for i in 0..10u64 {
            r.pc = RAM + 0x100 + 4 * (i % 2);
            assert_eq!(
                h.handle(0, &mut r, &ram, &bus, 0x45, 0x2000_0000),
                NisvAction::InjectAbort
            );
        }
        // Emulated progress resets the count.
        let mut d = RetryDetector::default();
        assert_eq!(d.injected_at(4), 1);
        assert_eq!(d.injected_at(4), 2);
        d.reset();
        assert_eq!(d.injected_at(4), 1);
    }

    #[test]
    fn backtrace_follows_frame_records_and_stops_on_loops() {
        let (mut r, ram, _) = setup();
        // Two frame records: fp0 -> fp1 -> 0.
        let fp0 = RAM + 0x8000;
        let fp1 = RAM + 0x8100;
        ram.write(
            fp0,
            &[fp1.to_le_bytes(), (RAM + 0x444).to_le_bytes()].concat(),
        )
        .unwrap();
        ram.write(
            fp1,
            &[0u64.to_le_bytes(), (RAM + 0x888).to_le_bytes()].concat(),
        )
        .unwrap();
        r.x[29] = fp0;
        r.x[30] = RAM + 0x200;
        let bt = backtrace(&mut r, &ram, RAM + 0x100);
        assert_eq!(bt.len(), 4, "{bt:?}");
        assert!(bt[2].contains("ret 0x80000444"), "{bt:?}");
        assert!(bt[3].contains("ret 0x80000888"), "{bt:?}");
        // A self-referencing record stops instead of looping.
        ram.write(fp0, &fp0.to_le_bytes()).unwrap();
        let bt = backtrace(&mut r, &ram, RAM + 0x100);
        assert!(bt.last().unwrap().contains("not a frame record"), "{bt:?}");
        // Outside RAM: unreadable, no panic.
        r.x[29] = 0x10;
        let bt = backtrace(&mut r, &ram, 0);
        assert!(bt.last().unwrap().contains("unreadable"), "{bt:?}");
        // MMU on without tables: untranslatable, no panic.
        r.set_sys(SysReg::SctlrEl1, 1);
        r.x[29] = fp0;
        let bt = backtrace(&mut r, &ram, 0);
        assert!(bt.last().unwrap().contains("unreadable"), "{bt:?}");
    }

    #[test]
    fn emulator_faults_are_delivered_as_data_aborts() {
        let (mut r, ram, bus) = setup();
        let mut h = handler(
            Policy::Emulate,
            vec![Ok(EmuOutcome::GuestFault {
                esr: 0x9600_0021,
                far: DEV + 9,
                what: "alignment".into(),
            })],
        );
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8),
            NisvAction::DeliverAbort {
                esr: 0x9600_0021,
                far: DEV + 9
            }
        );
        assert_eq!(h.stats().faults_delivered.load(Ordering::Relaxed), 1);
        assert_eq!(h.stats().injected.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn taking_an_abort_follows_take_exception() {
        // From EL1h with NZCV = 0b0110, PAN clear, SCTLR_EL1.SPAN = 0.
        let mut r = RegisterFile {
            pc: RAM + 0x100,
            pstate: 0x6000_0005,
            ..Default::default()
        };
        r.set_sys(SysReg::VbarEl1, RAM + 0x800);
        deliver_sync_abort(&mut r, 0x9600_0021, 0x1234).unwrap();
        assert_eq!(r.pc, RAM + 0xa00);
        assert_eq!(r.pstate, 0x6000_0000 | (1 << 22) | 0x3c5);
        assert_eq!(r.sys(SysReg::ElrEl1), RAM + 0x100);
        assert_eq!(r.sys(SysReg::SpsrEl1), 0x6000_0005);
        assert_eq!(r.sys(SysReg::EsrEl1), 0x9600_0021);
        assert_eq!(r.sys(SysReg::FarEl1), 0x1234);
        // From EL0 (SPAN = 1: PAN unchanged): the lower-EL vector.
        let mut r = RegisterFile {
            pc: 0x4000,
            pstate: 0x0,
            ..Default::default()
        };
        r.set_sys(SysReg::VbarEl1, RAM + 0x800);
        r.set_sys(SysReg::SctlrEl1, 1 << 23);
        deliver_sync_abort(&mut r, 0x9200_0021, 0x1).unwrap();
        assert_eq!(r.pc, RAM + 0xc00);
        assert_eq!(r.pstate, 0x3c5);
        // From EL1t: offset 0.
        let mut r = RegisterFile {
            pc: 0x4000,
            pstate: 0x4,
            ..Default::default()
        };
        r.set_sys(SysReg::VbarEl1, RAM + 0x800);
        deliver_sync_abort(&mut r, 0, 0).unwrap();
        assert_eq!(r.pc, RAM + 0x800);
    }

    #[test]
    fn pstate_in_words() {
        assert_eq!(describe_pstate(0x3c5), "0x3c5 (---- DAIF=DAIF EL1h)");
        assert_eq!(
            describe_pstate(0x6000_0000),
            "0x60000000 (-ZC- DAIF=---- EL0t)"
        );
    }
}
