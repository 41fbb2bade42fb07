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
use kvm_nisv::regs::{Reg, VcpuRegs};

use kvm_nisv::emulate::{EmulateError, GuestFault, Outcome};

use crate::adapter::{self, NisvEmulator};
use crate::bus::Bus;

/// Exit status when `--on-nisv stop` (or an instruction we cannot emulate inside
/// a device window, or an emulator error) stops the VM.
pub const EXIT_NISV_STOP: i32 = 3;
/// Exit status when a guest keeps faulting on the same instruction after
/// injected aborts.
pub const EXIT_RETRY_LOOP: i32 = 4;
/// How many consecutive injected aborts at one PC count as a retry loop.
pub const RETRY_LIMIT: u32 = 16;
pub use crate::report::{BACKTRACE_MAX, backtrace, describe_pstate, report};
use crate::report::{fetch, insn_text};

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
    /// Resume without changing anything: the vCPU executes the instruction
    /// again (the guest changed its tables between the fault and the walk).
    /// Counted by the retry-loop detector.
    Retry,
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
        crate::exit_stats::note_class(class);
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
                let r = self.emulator.emulate(regs, ram, bus, fault_ipa);
                self.emulate_outcome(vcpu, regs, ram, bus, esr_iss, fault_ipa, pc, r)
            }
        }
    }

    /// Map every emulator result to what the guest sees (or, for host-side
    /// failures only, a stop):
    ///
    /// | result | action |
    /// | --- | --- |
    /// | `Emulated` | resume |
    /// | `GuestFault` | deliver the fault (ESR/FAR of the faulting piece) |
    /// | `NoDevice` | deliver its synchronous external abort (FAR = the byte with nothing behind it) |
    /// | `Unsupported` | inject an external abort (what a VMM without an emulator gives) |
    /// | `FaultIpaMismatch`, `Fetch` | retry: resume unchanged (the guest changed its tables) |
    /// | `Bus` (a device refused an access) | inject an external abort |
    /// | `Regs`, `Mem` (host failures) | inject if nothing is at the IPA, else stop with the report |
    ///
    /// Every guest-visible exception and every retry goes through the
    /// retry-loop detector.
    #[allow(clippy::too_many_arguments)]
    fn emulate_outcome(
        &mut self,
        vcpu: usize,
        regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        bus: &Bus,
        esr_iss: u64,
        fault_ipa: u64,
        pc: u64,
        r: Result<Outcome, EmulateError>,
    ) -> NisvAction {
        let nothing_there = bus.device_at(fault_ipa).is_none() && !ram.is_ram(fault_ipa, 1);
        match r {
            Ok(Outcome::Emulated { insn }) => {
                self.stats.count_class(insn.class);
                crate::exit_stats::note_insn(&insn);
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
            Ok(Outcome::NoDevice {
                insn,
                va,
                ipa,
                fault,
                ..
            }) => {
                self.stats.count_class(insn.class);
                let what = format!(
                    "{} (va {va:#x} ipa {ipa:#x}: no RAM or device)",
                    adapter::disasm(&insn)
                );
                self.deliver(
                    vcpu,
                    regs,
                    ram,
                    bus,
                    Some(esr_iss),
                    fault_ipa,
                    pc,
                    &what,
                    &fault,
                )
            }
            Ok(Outcome::GuestFault(f)) => {
                let fetched = fetch(regs, ram);
                self.count(&fetched.insn);
                let what = format!("{} ({})", insn_text(&fetched), f.fault);
                self.deliver(
                    vcpu,
                    regs,
                    ram,
                    bus,
                    Some(esr_iss),
                    fault_ipa,
                    pc,
                    &what,
                    &f,
                )
            }
            Ok(Outcome::Unsupported {
                word, pc, reason, ..
            }) => {
                self.stats.undecoded.fetch_add(1, Ordering::Relaxed);
                let what = match word {
                    Some(w) => format!("{w:#010x} (not emulated: {reason})"),
                    None => format!("(nothing fetched: {reason})"),
                };
                self.trace(vcpu, pc, fault_ipa, esr_iss, &what, "inject external abort");
                self.inject(regs, ram, bus, Some(esr_iss), fault_ipa, pc)
            }
            Ok(other) => {
                // A future outcome this VMM does not know: the safe guest-visible answer.
                self.trace(
                    vcpu,
                    pc,
                    fault_ipa,
                    esr_iss,
                    &format!("{other:?}"),
                    "inject external abort",
                );
                self.inject(regs, ram, bus, Some(esr_iss), fault_ipa, pc)
            }
            Err(e @ (EmulateError::FaultIpaMismatch { .. } | EmulateError::Fetch { .. })) => {
                self.trace(vcpu, pc, fault_ipa, esr_iss, &e.to_string(), "retry");
                self.retry(regs, ram, bus, Some(esr_iss), fault_ipa, pc)
            }
            Err(e @ EmulateError::Bus(_)) => {
                let fetched = fetch(regs, ram);
                self.count(&fetched.insn);
                let what = format!("{} ({e})", insn_text(&fetched));
                self.trace(vcpu, pc, fault_ipa, esr_iss, &what, "inject external abort");
                self.inject(regs, ram, bus, Some(esr_iss), fault_ipa, pc)
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
                    "stop (host-side emulator error)",
                );
                NisvAction::Stop {
                    status: EXIT_NISV_STOP,
                    report: report(
                        regs,
                        ram,
                        bus,
                        Some(esr_iss),
                        fault_ipa,
                        &format!("host-side emulator error: {e}"),
                    ),
                }
            }
        }
    }

    /// Deliver `f` (a fault the emulator found, or the external abort of a byte
    /// with nothing behind it) unless the guest is looping on this PC.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        vcpu: usize,
        regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        bus: &Bus,
        esr_iss: Option<u64>,
        fault_ipa: u64,
        pc: u64,
        what: &str,
        f: &GuestFault,
    ) -> NisvAction {
        let (esr, far) = (f.esr(), f.va);
        if self.trace {
            eprintln!(
                "kvm-nisv-vmm: vcpu{vcpu} pc={pc:#x} ipa={fault_ipa:#x}: {what} -> deliver data abort, ESR {esr:#x} FAR {far:#x}"
            );
        }
        if let Some(stop) = self.retry_check(regs, ram, bus, esr_iss, fault_ipa, pc) {
            return stop;
        }
        self.stats.faults_delivered.fetch_add(1, Ordering::Relaxed);
        NisvAction::DeliverAbort { esr, far }
    }

    /// A page-straddling access with a valid syndrome (a `KVM_EXIT_MMIO` that
    /// `mmio_fixup::straddle` checked piece by piece) takes `f`.
    pub fn straddle_fault(
        &mut self,
        vcpu: usize,
        regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        bus: &Bus,
        addr: u64,
        f: &GuestFault,
    ) -> NisvAction {
        let pc = regs.get(Reg::Pc).unwrap_or(0);
        let what = format!("page-straddling MMIO access at {addr:#x}: {}", f.fault);
        self.deliver(vcpu, regs, ram, bus, None, addr, pc, &what, f)
    }

    /// A page-straddling access with a valid syndrome whose checks could not
    /// be made (the guest changed its tables): retry it.
    pub fn straddle_retry(
        &mut self,
        regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        bus: &Bus,
        addr: u64,
    ) -> NisvAction {
        let pc = regs.get(Reg::Pc).unwrap_or(0);
        self.retry(regs, ram, bus, None, addr, pc)
    }

    /// Resume unchanged unless the guest is looping on this PC.
    fn retry(
        &mut self,
        regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        bus: &Bus,
        esr_iss: Option<u64>,
        fault_ipa: u64,
        pc: u64,
    ) -> NisvAction {
        match self.retry_check(regs, ram, bus, esr_iss, fault_ipa, pc) {
            Some(stop) => stop,
            None => NisvAction::Retry,
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
    use kvm_nisv::regs::{RegError, RegisterFile, SysReg};
    use kvm_nisv::stage1::El;

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
    struct Scripted(Vec<Result<Outcome, EmulateError>>);
    impl NisvEmulator for Scripted {
        fn emulate(
            &mut self,
            regs: &mut dyn VcpuRegs,
            _: &dyn GuestRam,
            _: &Bus,
            _: u64,
        ) -> Result<Outcome, EmulateError> {
            let o = if self.0.is_empty() {
                Err(EmulateError::Regs(RegError::Unavailable(
                    "script exhausted".into(),
                )))
            } else {
                self.0.remove(0)
            };
            if let Ok(Outcome::Emulated { .. }) = o {
                let pc = regs.get(Reg::Pc).unwrap();
                regs.set(Reg::Pc, pc + 4).unwrap();
            }
            o
        }
    }

    // str x0, [x1], #8
    const STR_POST: u32 = 0xf804_8420;

    fn setup() -> (RegisterFile, Ram, Bus) {
        let mut r = RegisterFile::new();
        r.pc = RAM + 0x100;
        r.pstate = 0x3c5;
        r.x[0] = 0x1122;
        r.x[1] = DEV + 8;
        let ram = crate::memory::ram(RAM, 0x10000).unwrap();
        ram.write(RAM + 0x100, &STR_POST.to_le_bytes()).unwrap();
        let mut bus = Bus::new();
        bus.insert(DEV, 0x1000, Arc::new(Mutex::new(Scratch(vec![0; 0x1000]))))
            .unwrap();
        (r, ram, bus)
    }

    fn handler(policy: Policy, script: Vec<Result<Outcome, EmulateError>>) -> NisvHandler {
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
            vec![Ok(Outcome::Emulated { insn: insn() })],
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
    fn emulate_delivers_the_external_abort_of_the_byte_with_nothing_behind_it() {
        let (mut r, ram, bus) = setup();
        let fault = GuestFault::external_abort(0x4000_0ff8, true, El::El1);
        let mut h = handler(
            Policy::Emulate,
            vec![Ok(Outcome::NoDevice {
                insn: insn(),
                va: 0x4000_0ff8,
                ipa: 0x4000_0000,
                fault,
            })],
        );
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, 0x4000_0000),
            NisvAction::DeliverAbort {
                // EC 0x25 (same EL), IL, WnR, DFSC 0x10.
                esr: 0x9600_0050,
                far: 0x4000_0ff8
            }
        );
        assert_eq!(h.stats().faults_delivered.load(Ordering::Relaxed), 1);
        // A host-side emulator error at an address with nothing behind it injects.
        let mut h = handler(
            Policy::Emulate,
            vec![Err(EmulateError::Regs(RegError::Unavailable(
                "boom".into(),
            )))],
        );
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, 0x4000_0000),
            NisvAction::InjectAbort
        );
        // ... and inside a device window it stops (a host failure, not the guest's).
        let mut h = handler(
            Policy::Emulate,
            vec![Err(EmulateError::Regs(RegError::Unavailable(
                "boom".into(),
            )))],
        );
        assert!(matches!(
            h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8),
            NisvAction::Stop {
                status: EXIT_NISV_STOP,
                ..
            }
        ));
    }

    #[test]
    fn emulate_never_stops_for_what_the_guest_controls() {
        let (mut r, ram, bus) = setup();
        // An instruction the emulator does not handle, inside a device window.
        let mut h = handler(
            Policy::Emulate,
            vec![Ok(Outcome::Unsupported {
                word: Some(0xd503_201f),
                pc: r.pc,
                reason: kvm_nisv::emulate::UnsupportedReason::NotDecoded,
            })],
        );
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8),
            NisvAction::InjectAbort
        );
        // A device refusing the access: a bus error for the guest.
        let mut h = handler(
            Policy::Emulate,
            vec![Err(EmulateError::Bus(
                kvm_nisv::mem::BusError::DeviceError { ipa: DEV, len: 4 },
            ))],
        );
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8),
            NisvAction::InjectAbort
        );
        // The guest changed its tables under us: retried, up to the retry limit.
        let script = (0..3)
            .map(|_| Err(EmulateError::FaultIpaMismatch { fault_ipa: DEV }))
            .collect();
        let mut h = handler(Policy::Emulate, script).with_retry_limit(2);
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8),
            NisvAction::Retry
        );
        assert_eq!(
            h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8),
            NisvAction::Retry
        );
        assert!(matches!(
            h.handle(0, &mut r, &ram, &bus, 0x45, DEV + 8),
            NisvAction::Stop {
                status: EXIT_RETRY_LOOP,
                ..
            }
        ));
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
        let f = GuestFault::new(
            DEV + 9,
            kvm_nisv::stage1::Stage1Fault::new(kvm_nisv::stage1::FaultKind::Alignment, 0),
            false,
            El::El1,
        );
        let mut h = handler(Policy::Emulate, vec![Ok(Outcome::GuestFault(f))]);
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
    fn pstate_in_words() {
        assert_eq!(describe_pstate(0x3c5), "0x3c5 (---- DAIF=DAIF EL1h)");
        assert_eq!(
            describe_pstate(0x6000_0000),
            "0x60000000 (-ZC- DAIF=---- EL0t)"
        );
    }
}
