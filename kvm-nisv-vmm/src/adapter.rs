// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The one place where the VMM meets kvm-nisv's `decode`, `emulate`,
//! `stage1`, `esr`, `exit` and `kvm_ioctls` modules (guest RAM is kvm-nisv's
//! vm-memory adapter, see `memory.rs`; the vCPU registers are kvm-ioctls'
//! `&VcpuFd`, for which kvm-nisv implements `VcpuRegs`).
//!
//! Everything else in this crate calls only the functions and types below, so
//! the policy and exit-handling code can be tested with scripted emulators and
//! in-memory register files, and an API change in kvm-nisv is absorbed here.
//! No decoding, emulation or page-table walking is done in this file.

use kvm_nisv::decode::Insn;
use kvm_nisv::emulate::{EmulateError, Outcome};
use kvm_nisv::mem::GuestRam;
use kvm_nisv::regs::{Reg, VcpuRegs};

use crate::bus::Bus;

/// The NISV emulator as the policy uses it. The production implementation is
/// [`KvmNisvEmulator`]; tests substitute their own.
pub trait NisvEmulator: Send {
    /// Emulate the instruction at the vCPU's PC; `fault_ipa` is `kvm_run.arm_nisv.fault_ipa`.
    fn emulate(
        &mut self,
        regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        bus: &Bus,
        fault_ipa: u64,
    ) -> Result<Outcome, EmulateError>;

    /// The VMM made the vCPU take an exception (an injected abort): forget
    /// per-vCPU state such as the exclusive monitor.
    fn exception_injected(&mut self) {}
}

/// kvm-nisv's emulator (`kvm_nisv::emulate::Emulator`), one per vCPU: it owns
/// that vCPU's exclusive monitor, and its run-ahead state when enabled.
#[derive(Debug)]
pub struct KvmNisvEmulator {
    inner: kvm_nisv::emulate::Emulator,
    run_ahead: Option<RunAheadState>,
}

/// `--nisv-run-ahead` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAheadSettings {
    /// Instructions after the faulting one, at most (`--nisv-run-ahead`).
    pub max_insns: u32,
    /// Microseconds, at most (`--nisv-run-ahead-us`).
    pub max_micros: u64,
    /// Run ahead after every exit, not only on a repeated PC.
    pub always: bool,
}

/// A NISV exit at a PC that exited less than this long before is in a loop:
/// run-ahead pays there (`kvm_nisv::runahead::RunAheadTrigger`).
pub const RUN_AHEAD_WINDOW_US: u64 = 2000;

#[derive(Debug)]
struct RunAheadState {
    ra: kvm_nisv::runahead::RunAhead,
    trigger: kvm_nisv::runahead::RunAheadTrigger,
    /// Whether the vCPU was kicked (a stop or pause request).
    stop_requested: fn() -> bool,
    stats: std::sync::Arc<crate::nisv::NisvStats>,
}

/// The VMM's side of run-ahead: kicks stop it, `Instant` is its clock.
struct Control(fn() -> bool);

impl kvm_nisv::runahead::RunAheadControl for Control {
    fn stop_requested(&mut self) -> bool {
        (self.0)()
    }
    fn now_micros(&mut self) -> Option<u64> {
        Some(now_micros())
    }
}

/// Microseconds since the first call (monotonic).
fn now_micros() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let e = EPOCH.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(e.as_micros()).unwrap_or(u64::MAX)
}

impl KvmNisvEmulator {
    /// A fresh emulator (one per vCPU).
    ///
    /// On an arm64 host it is given the host's DCZID_EL0
    /// (`kvm_nisv::dczid::host_dczid`): KVM does not expose that register through
    /// `KVM_GET_ONE_REG` (ENOENT) and does not trap it, so the guest reads the
    /// hardware value, which is the host's (see `kvm_nisv::dczid`).
    pub fn new() -> Self {
        let inner = kvm_nisv::emulate::Emulator::new();
        let inner = match kvm_nisv::dczid::host_dczid() {
            Some(d) => inner.with_dczid(d),
            None => inner,
        };
        KvmNisvEmulator {
            inner,
            run_ahead: None,
        }
    }

    /// Enable run-ahead (`kvm_nisv::runahead`) with `settings`;
    /// `stop_requested` says whether this vCPU's thread was kicked; run-ahead
    /// totals go to `stats`.
    pub fn with_run_ahead(
        mut self,
        settings: RunAheadSettings,
        stop_requested: fn() -> bool,
        stats: std::sync::Arc<crate::nisv::NisvStats>,
    ) -> Self {
        use kvm_nisv::runahead::{RunAhead, RunAheadConfig, RunAheadTrigger};
        self.run_ahead = (settings.max_insns > 0).then(|| RunAheadState {
            ra: RunAhead::new(RunAheadConfig {
                max_insns: settings.max_insns,
                max_micros: settings.max_micros,
            }),
            trigger: if settings.always {
                RunAheadTrigger::always()
            } else {
                RunAheadTrigger::repeat_within(RUN_AHEAD_WINDOW_US)
            },
            stop_requested,
            stats,
        });
        self
    }
}

impl Default for KvmNisvEmulator {
    fn default() -> Self {
        Self::new()
    }
}

impl NisvEmulator for KvmNisvEmulator {
    fn emulate(
        &mut self,
        mut regs: &mut dyn VcpuRegs,
        ram: &dyn GuestRam,
        mut bus: &Bus,
        fault_ipa: u64,
    ) -> Result<Outcome, EmulateError> {
        // The PC read is free: the VMM's per-exit register cache keeps it for
        // the emulator.
        let (go, pc) = match &mut self.run_ahead {
            Some(st) => {
                let pc = regs.get(Reg::Pc)?;
                (st.trigger.should_run_ahead(pc, now_micros()), pc)
            }
            None => (false, 0),
        };
        let r = match &mut self.run_ahead {
            Some(st) if go => {
                let out = st.ra.emulate(
                    &mut self.inner,
                    &mut regs,
                    &ram,
                    &mut bus,
                    Some(fault_ipa),
                    &mut Control(st.stop_requested),
                )?;
                if out.ran > 0 {
                    use std::sync::atomic::Ordering::Relaxed;
                    st.stats.run_ahead_exits.fetch_add(1, Relaxed);
                    st.stats
                        .run_ahead_insns
                        .fetch_add(u64::from(out.ran), Relaxed);
                }
                out.outcome
            }
            _ => self
                .inner
                .emulate(&mut regs, &ram, &mut bus, Some(fault_ipa))?,
        };
        if let Some(st) = &mut self.run_ahead {
            // The loop window counts the guest's time between two exits at
            // this PC, not the emulation's (milliseconds for a 64-element
            // LD1 on the emulated host).
            st.trigger.exit_handled(pc, now_micros());
        }
        if matches!(r, Outcome::GuestFault(_) | Outcome::NoDevice { .. }) {
            // The guest takes an exception: like CLREX, it clears the monitor.
            self.inner.clear_monitor();
        }
        Ok(r)
    }

    fn exception_injected(&mut self) {
        self.inner.clear_monitor();
    }
}

/// Decode an instruction word (`kvm_nisv::decode::decode`).
pub fn decode(word: u32) -> Option<Insn> {
    kvm_nisv::decode::decode(word).ok()
}

/// Disassemble a decoded instruction (`Insn`'s Display), with its word.
pub fn disasm(insn: &Insn) -> String {
    format!("{insn} ({:#010x})", insn.word)
}

/// Translate a guest virtual address to an IPA for a data read at the vCPU's
/// current exception level, with `kvm_nisv::stage1` (flat when SCTLR_EL1.M = 0).
pub fn translate(regs: &mut dyn VcpuRegs, ram: &dyn GuestRam, va: u64) -> Result<u64, String> {
    use kvm_nisv::stage1::{self, AccessKind, El, Stage1Regs};
    let s1 = Stage1Regs::read(regs).map_err(|e| e.to_string())?;
    let pstate = regs.get(Reg::Pstate).map_err(|e| e.to_string())?;
    // PSTATE.M[3:2] is the exception level (SPSR layout, Arm ARM C5.2.18).
    let el = if (pstate >> 2) & 3 == 0 {
        El::El0
    } else {
        El::El1
    };
    stage1::translate(&s1, va, AccessKind::Read, el, ram)
        .map(|t| t.ipa)
        .map_err(|f| f.to_string())
}

/// Describe the ISS of a NISV exit (`kvm_nisv::esr::NisvIss`'s Display) with the raw value.
pub fn describe_iss(iss: u64) -> String {
    format!("{iss:#x} ({})", kvm_nisv::esr::NisvIss::new(iss))
}

/// The KVM side: capabilities, the exit payload, abort injection
/// (`kvm_nisv::kvm_ioctls`). Registers need no adapter: kvm-nisv implements
/// `VcpuRegs` for `&VcpuFd`.
#[cfg(target_arch = "aarch64")]
pub mod kvm {
    use kvm_bindings::{KVM_REG_ARM64, KVM_REG_SIZE_U64};
    use kvm_ioctls::{VcpuFd, VmFd};
    use kvm_nisv::exit::NisvExit;
    use kvm_nisv::kvm_ioctls::{ExtDabtInjector, KvmNisvCaps, VmFdNisvExt};

    /// Whether the kernel offers NISV exits and external-abort injection.
    pub fn nisv_caps(vm: &VmFd) -> (bool, bool) {
        match vm.nisv_support() {
            Ok(s) => (s.nisv_to_user, s.inject_ext_dabt),
            Err(e) => {
                log::warn!("probing the NISV capabilities: {e}");
                (false, false)
            }
        }
    }

    /// Enable `KVM_CAP_ARM_NISV_TO_USER` on the VM.
    pub fn enable_nisv(vm: &VmFd) -> Result<(), String> {
        vm.enable_nisv_to_user().map_err(|e| e.to_string())
    }

    /// The NISV payload `(esr_iss, fault_ipa)` of the current exit, if it is one.
    pub fn nisv_payload(vcpu: &mut VcpuFd) -> Option<(u64, u64)> {
        NisvExit::from_vcpu(vcpu).map(|e| (e.iss.bits(), e.fault_ipa))
    }

    /// The abort injector, when the kernel supports it.
    pub fn injector(vm: &VmFd) -> Option<ExtDabtInjector> {
        vm.ext_dabt_injector().ok()
    }

    /// The one-reg id of MPIDR_EL1 (op0=3, op1=0, CRn=0, CRm=0, op2=5), which
    /// `SysReg` does not name.
    pub const MPIDR_EL1_ID: u64 = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | 0x0013_0000 | (3 << 14) | 5;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_nisv::mem::VecRam;
    use kvm_nisv::regs::RegisterFile;

    #[test]
    fn disassembly_names_the_instruction() {
        let i = decode(0xf800_8420).unwrap();
        assert_eq!(disasm(&i), "str x0, [x1], #8 (0xf8008420)");
    }

    #[test]
    fn iss_description_names_the_fields() {
        let s = describe_iss(0x45);
        assert!(s.starts_with("0x45 ("), "{s}");
        assert!(s.contains("write"), "{s}");
        let s = describe_iss(0x05);
        assert!(s.contains("read"), "{s}");
    }

    #[test]
    fn translate_is_flat_with_the_mmu_off() {
        let mut r = RegisterFile::new();
        r.pstate = 0x3c5;
        let ram = VecRam::new();
        assert_eq!(translate(&mut r, &ram, 0x1234), Ok(0x1234));
        // MMU on with no page tables in RAM: a fault, not a guess.
        r.set_sys(kvm_nisv::regs::SysReg::SctlrEl1, 1);
        assert!(translate(&mut r, &ram, 0x1234).is_err());
    }
}
