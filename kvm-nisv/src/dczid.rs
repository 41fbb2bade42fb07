// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The DC ZVA block size of a vCPU (`DCZID_EL0`), for emulating `DC ZVA`.
//!
//! An emulator needs `DCZID_EL0` (BS: log2 of the block size in words; DZP: DC ZVA
//! prohibited) to zero the right block. There are two ways to learn it, tried in
//! this order by [`vcpu_dczid`]:
//!
//! 1. `KVM_GET_ONE_REG` of `DCZID_EL0` (`ARM64_SYS_REG(3, 3, 0, 0, 7)`). No kernel
//!    this project checks (5.10 to 7.3) has a `sys_reg_desc` for it in
//!    `arch/arm64/kvm/sys_regs.c`, so the ioctl fails with `ENOENT`
//!    (docs/compatibility.md has the live result per kernel); a later kernel or
//!    another hypervisor may answer.
//! 2. The VMM's own `DCZID_EL0`, read with `mrs` at EL0 ([`host_dczid`], aarch64
//!    only). KVM does not trap guest reads of `DCZID_EL0`: no `HCR_EL2.TID3`-group
//!    register, no fine-grained trap (`HFGRTR_EL2.DCZID_EL0`) outside nested
//!    virtualisation, and `HCR_EL2.TDZ` clear, so the guest reads the hardware
//!    register of the CPU it runs on, the same CPU type the VMM thread runs on.
//!    BS is the same; DZP is 0 for both (Linux sets `SCTLR_EL1.DZE` for the VMM,
//!    the emulator checks the guest's own `SCTLR_EL1.DZE` for guest EL0).
//!
//!    When the two can differ (then pass the guest's value with
//!    [`Emulator::with_dczid`](crate::emulate::Emulator::with_dczid), e.g. read by
//!    the guest itself): a heterogeneous system whose CPU types have different
//!    block sizes; a VMM that is itself a nested guest whose hypervisor traps and
//!    virtualises `DCZID_EL0`; a guest migrated from another machine; a future
//!    KVM that virtualises the register (then step 1 answers).
//!
//! Neither available (not aarch64, and `ENOENT`): [`DczidError::Unavailable`], never
//! a guessed block size.

use thiserror::Error;

use crate::regs::{Reg, RegError, SysReg, VcpuRegs};

/// Where a `DCZID_EL0` value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DczidSource {
    /// `KVM_GET_ONE_REG` on the vCPU.
    OneReg,
    /// `mrs` in the VMM's own context (the host CPU).
    HostCpu,
}

/// A `DCZID_EL0` value and its origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dczid {
    /// The raw register value.
    pub value: u64,
    /// Where it was read.
    pub source: DczidSource,
}

impl Dczid {
    /// The DC ZVA block size in bytes (`4 << BS`), or `None` if DZP says DC ZVA is
    /// prohibited or BS is beyond the architectural maximum (2 KiB, BS = 9).
    pub const fn block_size(&self) -> Option<u64> {
        let bs = self.value & 0xf;
        if self.value & (1 << 4) != 0 || bs > 9 {
            None
        } else {
            Some(4 << bs)
        }
    }
}

/// Errors of [`vcpu_dczid`].
#[derive(Debug, Error)]
pub enum DczidError {
    /// `KVM_GET_ONE_REG` failed and the host CPU cannot be asked (not aarch64).
    #[error(
        "the DC ZVA block size is unknown: KVM_GET_ONE_REG(DCZID_EL0) failed ({one_reg}) and \
         the VMM does not run on an arm64 CPU whose DCZID_EL0 it could read; pass the guest's \
         value with Emulator::with_dczid"
    )]
    Unavailable {
        /// Why the ONE_REG read failed.
        #[source]
        one_reg: RegError,
    },
}

/// `DCZID_EL0` of the CPU this code runs on (`mrs` at EL0), on aarch64; `None`
/// elsewhere.
pub fn host_dczid() -> Option<u64> {
    #[cfg(target_arch = "aarch64")]
    {
        let v: u64;
        // SAFETY: MRS of DCZID_EL0 reads an identification register that EL0 may
        // always access (Arm ARM, DCZID_EL0 accessibility); it touches no memory.
        unsafe {
            core::arch::asm!("mrs {}, dczid_el0", out(reg) v, options(nomem, nostack, preserves_flags))
        };
        Some(v)
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        None
    }
}

/// The vCPU's `DCZID_EL0`: `KVM_GET_ONE_REG` first, else the host CPU's value
/// (see the module docs for why that equals the guest's), else an error.
pub fn vcpu_dczid(regs: &mut dyn VcpuRegs) -> Result<Dczid, DczidError> {
    vcpu_dczid_with(regs, host_dczid())
}

/// [`vcpu_dczid`] with the host value given (`None`: no host CPU to ask).
pub fn vcpu_dczid_with(regs: &mut dyn VcpuRegs, host: Option<u64>) -> Result<Dczid, DczidError> {
    match regs.get(Reg::Sys(SysReg::DczidEl0)) {
        Ok(value) => Ok(Dczid {
            value,
            source: DczidSource::OneReg,
        }),
        Err(one_reg) => match host {
            Some(value) => Ok(Dczid {
                value,
                source: DczidSource::HostCpu,
            }),
            None => Err(DczidError::Unavailable { one_reg }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::RegisterFile;

    #[test]
    fn one_reg_wins_then_host_then_error() {
        let mut rf = RegisterFile::default();
        // RegisterFile knows every SysReg: the ONE_REG path.
        rf.set(Reg::Sys(SysReg::DczidEl0), 0x4).unwrap();
        let d = vcpu_dczid_with(&mut rf, Some(0x5)).unwrap();
        assert_eq!(
            d,
            Dczid {
                value: 0x4,
                source: DczidSource::OneReg
            }
        );
        assert_eq!(d.block_size(), Some(64));
        assert_eq!(
            Dczid {
                value: 0x14,
                source: DczidSource::HostCpu
            }
            .block_size(),
            None,
            "DZP set"
        );
        assert_eq!(
            Dczid {
                value: 0xa,
                source: DczidSource::HostCpu
            }
            .block_size(),
            None,
            "BS 10 is reserved"
        );
    }

    /// A vCPU whose DCZID_EL0 read fails like KVM's (ENOENT).
    struct NoDczid;
    impl VcpuRegs for NoDczid {
        fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
            Err(RegError::Unavailable(format!("{reg:?}")))
        }
        fn set(&mut self, reg: Reg, _: u64) -> Result<(), RegError> {
            Err(RegError::Unavailable(format!("{reg:?}")))
        }
        fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
            Err(RegError::Unavailable(format!("V{n}")))
        }
        fn set_v(&mut self, n: u8, _: u128) -> Result<(), RegError> {
            Err(RegError::Unavailable(format!("V{n}")))
        }
    }

    #[test]
    fn falls_back_to_the_host_and_never_guesses() {
        let d = vcpu_dczid_with(&mut NoDczid, Some(0x4)).unwrap();
        assert_eq!(d.source, DczidSource::HostCpu);
        assert_eq!(d.value, 0x4);
        let e = vcpu_dczid_with(&mut NoDczid, None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("DC ZVA block size is unknown"), "{msg}");
        assert!(msg.contains("with_dczid"), "{msg}");
        assert_eq!(host_dczid().is_some(), cfg!(target_arch = "aarch64"));
    }
}
