// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The one place where the VMM meets kvm-nisv modules that are still being
//! written (`decode`, `emulate`, `stage1`, `esr`, `cap`, `exit`, `inject`,
//! `one_reg`).
//!
//! Everything else in this crate calls only the functions and types below.
//! When a kvm-nisv module lands, the matching item here becomes a thin call
//! into it (the intended API is quoted next to each item) and the rest of the
//! VMM does not change. Until then, the items that need the decoder, emulator
//! or walker report "unavailable" instead of guessing: this file deliberately
//! contains no second decoder, emulator or page-table walker.

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
    /// The emulator found a fault the guest must see (stage-1 translation or
    /// permission fault, alignment fault...). Described in words.
    GuestFault(String),
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
}

/// kvm-nisv's emulator.
///
/// Intended API: `kvm_nisv::emulate::Emulator::new()` and
/// `Emulator::emulate(&mut self, regs: &mut R, ram: &M, bus: &mut B, fault_ipa: Option<u64>)
/// -> Result<Outcome, EmulateError>`.
#[derive(Debug, Default)]
pub struct KvmNisvEmulator {
    _private: (),
}

impl KvmNisvEmulator {
    /// A fresh emulator (one per vCPU).
    pub fn new() -> Self {
        Self::default()
    }
}

impl NisvEmulator for KvmNisvEmulator {
    fn emulate(
        &mut self,
        _regs: &mut dyn VcpuRegs,
        _ram: &dyn GuestRam,
        _bus: &Bus,
        _fault_ipa: u64,
    ) -> Result<EmuOutcome, String> {
        Err(NOT_YET.replace("{}", "emulate"))
    }
}

const NOT_YET: &str = "kvm_nisv::{} is not implemented yet in this build";

/// Decode an instruction word (`kvm_nisv::decode::decode`).
pub fn decode(word: u32) -> Option<Insn> {
    kvm_nisv::decode::decode(word).ok()
}

/// Disassemble a decoded instruction. Intended API: `Insn: Display`; until the
/// decoder provides it, the word, class and operation.
pub fn disasm(insn: &Insn) -> String {
    format!("{:#010x} ({:?} {:?})", insn.word, insn.class, insn.op)
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

/// The KVM side: capability, exit payload, abort injection and registers.
#[cfg(target_arch = "aarch64")]
pub mod kvm {
    use kvm_bindings::*;
    use kvm_ioctls::{VcpuFd, VmFd};
    use kvm_nisv::regs::{Reg, RegError, VcpuRegs};
    use vmm_sys_util::errno;
    use vmm_sys_util::ioctl::ioctl_with_ref;

    // include/uapi/linux/kvm.h: #define KVM_ENABLE_CAP _IOW(KVMIO, 0xa3, struct kvm_enable_cap).
    // kvm-ioctls compiles its own number out on aarch64.
    mod nr {
        #![allow(missing_docs)]
        use kvm_bindings::*;
        use vmm_sys_util::ioctl_iow_nr;
        ioctl_iow_nr!(KVM_ENABLE_CAP, KVMIO, 0xa3, kvm_enable_cap);
    }
    use nr::KVM_ENABLE_CAP;

    /// Whether the kernel offers NISV exits and external-abort injection.
    /// Intended API: `kvm_nisv::cap`.
    pub fn nisv_caps(vm: &VmFd) -> (bool, bool) {
        (
            vm.check_extension_raw(u64::from(KVM_CAP_ARM_NISV_TO_USER)) > 0,
            vm.check_extension_raw(u64::from(KVM_CAP_ARM_INJECT_EXT_DABT)) > 0,
        )
    }

    /// Enable `KVM_CAP_ARM_NISV_TO_USER` on the VM (Documentation/virt/kvm/api.rst 7.18).
    pub fn enable_nisv(vm: &VmFd) -> Result<(), errno::Error> {
        let cap = kvm_enable_cap {
            cap: KVM_CAP_ARM_NISV_TO_USER,
            ..Default::default()
        };
        // SAFETY: `vm` is a VM fd and the kernel reads exactly one kvm_enable_cap, which lives
        // for the duration of the call.
        let ret = unsafe { ioctl_with_ref(vm, KVM_ENABLE_CAP(), &cap) };
        if ret != 0 {
            return Err(errno::Error::last());
        }
        Ok(())
    }

    /// The NISV payload of the current exit. Only call after KVM_RUN returned
    /// exit reason `KVM_EXIT_ARM_NISV`. Intended API: `kvm_nisv::exit::NisvExit`.
    pub fn nisv_payload(vcpu: &mut VcpuFd) -> (u64, u64) {
        let run = vcpu.get_kvm_run();
        // SAFETY: the caller saw exit_reason == KVM_EXIT_ARM_NISV, which tells us the kernel
        // filled the arm_nisv member of the union; both fields are plain u64s.
        let n = unsafe { run.__bindgen_anon_1.arm_nisv };
        (n.esr_iss, n.fault_ipa)
    }

    /// Make an external data abort pending on the vCPU (KVM_SET_VCPU_EVENTS with
    /// `ext_dabt_pending`, Documentation/virt/kvm/api.rst 4.32). KVM synthesises
    /// the ESR/FAR from the faulting access at the next KVM_RUN.
    /// Intended API: `kvm_nisv::inject`.
    pub fn inject_ext_dabt(vcpu: &VcpuFd) -> Result<(), errno::Error> {
        let mut ev = kvm_vcpu_events::default();
        ev.exception.ext_dabt_pending = 1;
        vcpu.set_vcpu_events(&ev)
    }

    fn core_id(byte_offset: usize, size: u64) -> u64 {
        KVM_REG_ARM64 | size | u64::from(KVM_REG_ARM_CORE) | (byte_offset / 4) as u64
    }

    /// The one-reg id of a 64-bit register (Documentation/virt/kvm/api.rst, "ARM64 registers").
    pub fn reg_id(reg: Reg) -> Option<u64> {
        use std::mem::offset_of;
        let pt = offset_of!(kvm_regs, regs);
        Some(match reg {
            Reg::X(n @ 0..=30) => core_id(
                pt + offset_of!(user_pt_regs, regs) + 8 * usize::from(n),
                KVM_REG_SIZE_U64,
            ),
            Reg::X(_) => return None,
            Reg::SpEl0 => core_id(pt + offset_of!(user_pt_regs, sp), KVM_REG_SIZE_U64),
            Reg::Pc => core_id(pt + offset_of!(user_pt_regs, pc), KVM_REG_SIZE_U64),
            Reg::Pstate => core_id(pt + offset_of!(user_pt_regs, pstate), KVM_REG_SIZE_U64),
            Reg::SpEl1 => core_id(offset_of!(kvm_regs, sp_el1), KVM_REG_SIZE_U64),
            Reg::Sys(s) => sysreg_id(s.encoding()),
        })
    }

    /// The one-reg id of a system register from its (op0, op1, CRn, CRm, op2) encoding.
    pub fn sysreg_id((op0, op1, crn, crm, op2): (u8, u8, u8, u8, u8)) -> u64 {
        KVM_REG_ARM64
            | KVM_REG_SIZE_U64
            | u64::from(KVM_REG_ARM64_SYSREG)
            | (u64::from(op0) << 14)
            | (u64::from(op1) << 11)
            | (u64::from(crn) << 7)
            | (u64::from(crm) << 3)
            | u64::from(op2)
    }

    fn vreg_id(n: u8) -> u64 {
        use std::mem::offset_of;
        core_id(
            offset_of!(kvm_regs, fp_regs)
                + offset_of!(user_fpsimd_state, vregs)
                + 16 * usize::from(n),
            KVM_REG_SIZE_U128,
        )
    }

    /// [`VcpuRegs`] over a kvm-ioctls vCPU (one ioctl per access).
    /// Intended replacement: `kvm_nisv::one_reg`'s implementation for `VcpuFd`.
    #[derive(Debug)]
    pub struct KvmRegs<'a>(pub &'a VcpuFd);

    impl KvmRegs<'_> {
        fn get_raw<const N: usize>(&self, id: u64, what: String) -> Result<[u8; N], RegError> {
            let mut b = [0u8; N];
            self.0
                .get_one_reg(id, &mut b)
                .map_err(|source| RegError::Ioctl {
                    op: "KVM_GET_ONE_REG",
                    reg: what,
                    id,
                    source,
                })?;
            Ok(b)
        }
        fn set_raw(&self, id: u64, what: String, b: &[u8]) -> Result<(), RegError> {
            self.0
                .set_one_reg(id, b)
                .map(|_| ())
                .map_err(|source| RegError::Ioctl {
                    op: "KVM_SET_ONE_REG",
                    reg: what,
                    id,
                    source,
                })
        }
    }

    impl VcpuRegs for KvmRegs<'_> {
        fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
            let id = reg_id(reg).ok_or_else(|| RegError::Invalid(format!("{reg:?}")))?;
            self.get_raw::<8>(id, format!("{reg:?}"))
                .map(u64::from_le_bytes)
        }
        fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
            let id = reg_id(reg).ok_or_else(|| RegError::Invalid(format!("{reg:?}")))?;
            self.set_raw(id, format!("{reg:?}"), &value.to_le_bytes())
        }
        fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
            if n > 31 {
                return Err(RegError::Invalid(format!("V{n}")));
            }
            self.get_raw::<16>(vreg_id(n), format!("V{n}"))
                .map(u128::from_le_bytes)
        }
        fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
            if n > 31 {
                return Err(RegError::Invalid(format!("V{n}")));
            }
            self.set_raw(vreg_id(n), format!("V{n}"), &value.to_le_bytes())
        }
    }

    /// MPIDR_EL1's encoding (op0=3, op1=0, CRn=0, CRm=0, op2=5).
    pub const MPIDR_EL1: (u8, u8, u8, u8, u8) = (3, 0, 0, 0, 5);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_nisv::mem::VecRam;
    use kvm_nisv::regs::RegisterFile;

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
