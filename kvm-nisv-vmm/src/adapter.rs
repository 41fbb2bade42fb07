// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The one place where the VMM meets kvm-nisv's `decode`, `emulate`,
//! `stage1`, `esr`, `cap`, `exit`, `inject` and `one_reg` modules.
//!
//! Everything else in this crate calls only the functions and types below, so
//! the policy and exit-handling code can be tested with scripted emulators and
//! in-memory register files, and an API change in kvm-nisv is absorbed here.
//! No decoding, emulation or page-table walking is done in this file.

use kvm_nisv::decode::Insn;
use kvm_nisv::mem::GuestRam;
use kvm_nisv::regs::{Reg, VcpuRegs};

use crate::bus::Bus;

/// What the emulator did with one NISV exit.
///
/// Mirrors the intended `kvm_nisv::emulate::Outcome`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmuOutcome {
    /// The access was performed and the vCPU state advanced past the instruction.
    Emulated {
        /// The decoded instruction.
        insn: Insn,
    },
    /// The instruction was decoded but (part of) the access hits neither RAM nor
    /// a device.
    NoDevice {
        /// The decoded instruction.
        insn: Insn,
        /// The virtual address that missed.
        va: u64,
        /// Its IPA.
        ipa: u64,
    },
    /// The instruction is not one the emulator handles.
    Unsupported {
        /// The instruction word.
        word: u32,
        /// Its address.
        pc: u64,
    },
    /// The emulator found a fault the guest must see (stage-1 translation,
    /// permission or alignment fault...): deliver a synchronous data abort with
    /// this syndrome.
    GuestFault {
        /// ESR_EL1 to report.
        esr: u64,
        /// FAR_EL1 to report (the faulting virtual address).
        far: u64,
        /// The fault in words.
        what: String,
    },
}

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
    ) -> Result<EmuOutcome, String>;

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
    /// On an arm64 host it is given the host's DCZID_EL0: KVM does not expose
    /// that register through `KVM_GET_ONE_REG` (ENOENT on 6.1 and 6.12) and does
    /// not trap it, so the guest reads the hardware value, which is the host's.
    pub fn new() -> Self {
        let inner = kvm_nisv::emulate::Emulator::new();
        #[cfg(target_arch = "aarch64")]
        let inner = inner.with_dczid(host_dczid());
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

/// DCZID_EL0 of the host CPU (readable at EL0).
#[cfg(target_arch = "aarch64")]
pub fn host_dczid() -> u64 {
    let v: u64;
    // SAFETY: MRS of DCZID_EL0 reads an identification register that EL0 may access
    // (Arm ARM D23.2 DCZID_EL0); no memory or other state is touched.
    unsafe {
        std::arch::asm!("mrs {}, dczid_el0", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
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
    ) -> Result<EmuOutcome, String> {
        use kvm_nisv::emulate::Outcome;
        // The PC read is free: the VMM's per-exit register cache keeps it for
        // the emulator.
        let go = match &mut self.run_ahead {
            Some(st) => {
                let pc = regs.get(Reg::Pc).map_err(|e| e.to_string())?;
                st.trigger.should_run_ahead(pc, now_micros())
            }
            None => false,
        };
        let r = match &mut self.run_ahead {
            Some(st) if go => {
                let out = st
                    .ra
                    .emulate(
                        &mut self.inner,
                        &mut regs,
                        &ram,
                        &mut bus,
                        Some(fault_ipa),
                        &mut Control(st.stop_requested),
                    )
                    .map_err(|e| e.to_string())?;
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
                .emulate(&mut regs, &ram, &mut bus, Some(fault_ipa))
                .map_err(|e| e.to_string())?,
        };
        Ok(match r {
            Outcome::Emulated { insn } => EmuOutcome::Emulated { insn },
            Outcome::NoDevice { insn, va, ipa } => EmuOutcome::NoDevice { insn, va, ipa },
            Outcome::Unsupported { word, pc } => EmuOutcome::Unsupported { word, pc },
            Outcome::GuestFault(f) => {
                // The guest takes an exception: like CLREX, it clears the monitor.
                self.inner.clear_monitor();
                EmuOutcome::GuestFault {
                    esr: f.esr(),
                    far: f.va,
                    what: f.fault.to_string(),
                }
            }
        })
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

/// The KVM side: capabilities, the exit payload, abort injection, registers
/// (`kvm_nisv::{cap, exit, inject, one_reg}`).
#[cfg(target_arch = "aarch64")]
pub mod kvm {
    use kvm_bindings::{KVM_REG_ARM_CORE, KVM_REG_ARM64, KVM_REG_SIZE_U64, kvm_regs};
    use kvm_ioctls::{VcpuFd, VmFd};
    use kvm_nisv::cap::{Support, enable_nisv_to_user};
    use kvm_nisv::exit::NisvExit;
    use kvm_nisv::inject::ExtDabtInjector;
    use kvm_nisv::regs::{Reg, RegError, SysReg, VcpuRegs};

    /// Whether the kernel offers NISV exits and external-abort injection.
    pub fn nisv_caps(vm: &VmFd) -> (bool, bool) {
        match Support::probe(vm) {
            Ok(s) => (s.nisv_to_user, s.inject_ext_dabt),
            Err(e) => {
                log::warn!("probing the NISV capabilities: {e}");
                (false, false)
            }
        }
    }

    /// Enable `KVM_CAP_ARM_NISV_TO_USER` on the VM.
    pub fn enable_nisv(vm: &VmFd) -> Result<(), String> {
        enable_nisv_to_user(vm).map_err(|e| e.to_string())
    }

    /// The NISV payload `(esr_iss, fault_ipa)` of the current exit, if it is one.
    pub fn nisv_payload(vcpu: &mut VcpuFd) -> Option<(u64, u64)> {
        NisvExit::from_vcpu(vcpu).map(|e| (e.iss.bits(), e.fault_ipa))
    }

    /// The abort injector, when the kernel supports it.
    pub fn injector(vm: &VmFd) -> Option<ExtDabtInjector> {
        ExtDabtInjector::new(vm).ok()
    }

    /// Make an external data abort pending on the vCPU.
    pub fn inject_ext_dabt(inj: Option<&ExtDabtInjector>, vcpu: &VcpuFd) -> Result<(), String> {
        match inj {
            Some(i) => i.inject(vcpu).map_err(|e| e.to_string()),
            None => Err("the kernel lacks KVM_CAP_ARM_INJECT_EXT_DABT".into()),
        }
    }

    /// ELR_EL1 and SPSR_EL1 as KVM core registers (`kvm_regs.elr_el1`,
    /// `kvm_regs.spsr[KVM_SPSR_EL1]`): KVM keeps them outside its sysreg table
    /// for userspace, so the one-reg sysreg ids are not used for them.
    fn core_el1_id(reg: Reg) -> Option<u64> {
        use std::mem::offset_of;
        let off = match reg {
            Reg::Sys(SysReg::ElrEl1) => offset_of!(kvm_regs, elr_el1),
            Reg::Sys(SysReg::SpsrEl1) => offset_of!(kvm_regs, spsr),
            _ => return None,
        };
        Some(KVM_REG_ARM64 | KVM_REG_SIZE_U64 | u64::from(KVM_REG_ARM_CORE) | (off / 4) as u64)
    }

    fn raw(fd: &VcpuFd) -> kvm_nisv::one_reg::RawVcpuFd<'_> {
        use std::os::fd::{AsRawFd, BorrowedFd};
        // SAFETY: the descriptor belongs to `fd`, which the returned value borrows, so it
        // stays open for the borrow's lifetime.
        let b = unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) };
        kvm_nisv::one_reg::RawVcpuFd::new(b)
    }

    /// [`VcpuRegs`] over a kvm-ioctls vCPU: kvm-nisv's one-reg implementation,
    /// with ELR_EL1/SPSR_EL1 through their core ids.
    #[derive(Debug)]
    pub struct KvmRegs<'a>(pub &'a VcpuFd);

    impl VcpuRegs for KvmRegs<'_> {
        fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
            if let Some(id) = core_el1_id(reg) {
                let mut b = [0u8; 8];
                return self
                    .0
                    .get_one_reg(id, &mut b)
                    .map(|_| u64::from_le_bytes(b))
                    .map_err(|source| RegError::Ioctl {
                        op: "KVM_GET_ONE_REG",
                        reg: format!("{reg:?}"),
                        id,
                        source,
                    });
            }
            raw(self.0).get(reg)
        }
        fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
            if let Some(id) = core_el1_id(reg) {
                return self
                    .0
                    .set_one_reg(id, &value.to_le_bytes())
                    .map(|_| ())
                    .map_err(|source| RegError::Ioctl {
                        op: "KVM_SET_ONE_REG",
                        reg: format!("{reg:?}"),
                        id,
                        source,
                    });
            }
            raw(self.0).set(reg, value)
        }
        fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
            raw(self.0).get_v(n)
        }
        fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
            raw(self.0).set_v(n, value)
        }
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
        let mut r = RegisterFile {
            pstate: 0x3c5,
            ..Default::default()
        };
        let ram = VecRam::new();
        assert_eq!(translate(&mut r, &ram, 0x1234), Ok(0x1234));
        // MMU on with no page tables in RAM: a fault, not a guess.
        r.set_sys(kvm_nisv::regs::SysReg::SctlrEl1, 1);
        assert!(translate(&mut r, &ram, 0x1234).is_err());
    }
}
