// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Register ids for KVM_GET_ONE_REG / KVM_SET_ONE_REG, and
//! [`crate::regs::VcpuRegs`] over those ioctls.
//!
//! Register ids follow `Documentation/virt/kvm/api.rst` ("ARM64 registers are
//! mapped using the lower 32 bits..."):
//!
//! * core registers: `KVM_REG_ARM64 | KVM_REG_ARM_CORE | size | (offset / 4)`
//!   where `offset` is the byte offset of the field in `struct kvm_regs`
//!   (`arch/arm64/include/uapi/asm/kvm.h`), computed here with `offset_of!`
//!   on the real layout; X0-X30, SP (= SP_EL0), PC and PSTATE live in
//!   `regs` (`struct user_pt_regs`), SP_EL1 in `sp_el1`, V0-V31 in
//!   `fp_regs.vregs` (128 bits, `KVM_REG_SIZE_U128`);
//! * system registers: `KVM_REG_ARM64 | KVM_REG_SIZE_U64 |
//!   KVM_REG_ARM64_SYSREG | op0 << 14 | op1 << 11 | CRn << 7 | CRm << 3 | op2`
//!   (the `ARM64_SYS_REG()` macro), from [`SysReg::encoding`]; except ELR_EL1
//!   and SPSR_EL1, which KVM only exposes as core registers (`elr_el1`,
//!   `spsr[KVM_SPSR_EL1]`), so [`reg_id`] maps them there.
//!
//! Values are transferred in host byte order (the kernel copies the register
//! bytes); a V register's lane 0 is in the low bits of the `u128`.
//! Each get/set is one system call.
//!
//! The id computation is pure and portable. The backends: kvm-ioctls'
//! `VcpuFd` (feature `kvm-ioctls`, in `kvm_ioctls`, through its
//! `get_one_reg`/`set_one_reg`) and `RawVcpuFd` (feature `kvm`) for VMMs
//! without kvm-ioctls.

use alloc::format;
#[cfg(any(feature = "kvm", test))]
use alloc::string::String;
use core::mem::offset_of;
#[cfg(feature = "kvm")]
use std::os::fd::{AsRawFd, BorrowedFd};

#[cfg(feature = "kvm")]
use vmm_sys_util::ioctl::ioctl_with_ref;

#[cfg(any(feature = "kvm", test))]
use crate::errno::Errno;
#[cfg(feature = "kvm")]
use crate::regs::VcpuRegs;
use crate::regs::{Reg, RegError, SysReg};
use kvm_nisv_sys::{self as sys, kvm_regs, user_fpsimd_state, user_pt_regs};

/// Id of a [`SysReg`] (`ARM64_SYS_REG(op0, op1, CRn, CRm, op2)`).
pub fn sysreg_id(r: SysReg) -> Result<u64, RegError> {
    let (op0, op1, crn, crm, op2) = r.encoding();
    sys::kvm_sysreg_id(op0, op1, crn, crm, op2)
        .ok_or_else(|| RegError::Invalid(format!("{r:?} (encoding {op0},{op1},{crn},{crm},{op2})")))
}

/// The core register id of the `size`-byte field at byte `offset` of
/// `struct kvm_regs` (the -sys crate validates it like the kernel does).
fn core(offset: usize, size: usize, reg: &dyn core::fmt::Debug) -> Result<u64, RegError> {
    sys::kvm_core_reg_id(offset, size).ok_or_else(|| RegError::Invalid(format!("{reg:?}")))
}

const REGS: usize = offset_of!(kvm_regs, regs);
const X0_OFFSET: usize = REGS + offset_of!(user_pt_regs, regs);
const VREGS_OFFSET: usize = offset_of!(kvm_regs, fp_regs) + offset_of!(user_fpsimd_state, vregs);

/// The `KVM_GET_ONE_REG` id of a 64-bit register.
///
/// Fails with [`RegError::Invalid`] for `X(n)` with n > 30.
pub fn reg_id(reg: Reg) -> Result<u64, RegError> {
    match reg {
        Reg::X(n) if n <= 30 => core(X0_OFFSET + 8 * usize::from(n), 8, &reg),
        Reg::X(_) => Err(RegError::Invalid(format!("{reg:?}"))),
        Reg::SpEl0 => core(REGS + offset_of!(user_pt_regs, sp), 8, &reg),
        Reg::Pc => core(REGS + offset_of!(user_pt_regs, pc), 8, &reg),
        Reg::Pstate => core(REGS + offset_of!(user_pt_regs, pstate), 8, &reg),
        Reg::SpEl1 => core(offset_of!(kvm_regs, sp_el1), 8, &reg),
        // KVM exposes ELR_EL1 and SPSR_EL1 only as core registers
        // (`kvm_regs.elr_el1`, `kvm_regs.spsr[KVM_SPSR_EL1]`); their
        // ARM64_SYS_REG ids fail with ENOENT (seen on 6.1 and 6.12).
        Reg::Sys(SysReg::ElrEl1) => core(offset_of!(kvm_regs, elr_el1), 8, &reg),
        Reg::Sys(SysReg::SpsrEl1) => core(
            offset_of!(kvm_regs, spsr) + 8 * sys::KVM_SPSR_EL1 as usize,
            8,
            &reg,
        ),
        Reg::Sys(s) => sysreg_id(s),
    }
}

/// The `KVM_GET_ONE_REG` id of SIMD&FP register Vn (n in 0..=31).
pub fn vreg_id(n: u8) -> Result<u64, RegError> {
    if n > 31 {
        return Err(RegError::Invalid(format!("V{n}")));
    }
    core(
        VREGS_OFFSET + 16 * usize::from(n),
        16,
        &format_args!("V{n}"),
    )
}

/// Check that `buf` holds the register `id` names (the size is encoded in
/// the id).
#[cfg(any(feature = "kvm", test))]
fn check_buffer(id: u64, buf: &[u8], name: &dyn Fn() -> String) -> Result<(), RegError> {
    let size = sys::kvm_reg_size_bytes(id);
    if buf.len() < size {
        return Err(RegError::Invalid(format!(
            "{} (buffer of {} bytes for {size})",
            name(),
            buf.len()
        )));
    }
    Ok(())
}

/// One `KVM_GET_ONE_REG` (`set` false) or `KVM_SET_ONE_REG` (`set` true)
/// through `ioctl(id, buf)`, which transfers the register's bytes from or to
/// `buf`; its errno becomes [`RegError::Ioctl`] naming the register.
#[cfg(any(feature = "kvm", test))]
fn transfer(
    set: bool,
    id: u64,
    buf: &mut [u8],
    name: &dyn Fn() -> String,
    ioctl: impl FnOnce(u64, &mut [u8]) -> Result<(), Errno>,
) -> Result<(), RegError> {
    check_buffer(id, buf, name)?;
    ioctl(id, buf).map_err(|source| RegError::Ioctl {
        op: if set {
            "KVM_SET_ONE_REG"
        } else {
            "KVM_GET_ONE_REG"
        },
        reg: name(),
        id,
        source,
    })
}

/// Read 64-bit `reg` with a `KVM_GET_ONE_REG` implementation.
#[cfg(any(feature = "kvm", test))]
pub(crate) fn get64_with(
    reg: Reg,
    ioctl: impl FnOnce(u64, &mut [u8]) -> Result<(), Errno>,
) -> Result<u64, RegError> {
    let mut b = [0u8; 8];
    transfer(false, reg_id(reg)?, &mut b, &|| format!("{reg:?}"), ioctl)?;
    Ok(u64::from_ne_bytes(b))
}

/// Write 64-bit `reg` with a `KVM_SET_ONE_REG` implementation.
#[cfg(any(feature = "kvm", test))]
pub(crate) fn set64_with(
    reg: Reg,
    value: u64,
    ioctl: impl FnOnce(u64, &mut [u8]) -> Result<(), Errno>,
) -> Result<(), RegError> {
    let mut b = value.to_ne_bytes();
    transfer(true, reg_id(reg)?, &mut b, &|| format!("{reg:?}"), ioctl)
}

/// Read Vn with a `KVM_GET_ONE_REG` implementation.
#[cfg(any(feature = "kvm", test))]
pub(crate) fn get128_with(
    n: u8,
    ioctl: impl FnOnce(u64, &mut [u8]) -> Result<(), Errno>,
) -> Result<u128, RegError> {
    let mut b = [0u8; 16];
    transfer(false, vreg_id(n)?, &mut b, &|| format!("V{n}"), ioctl)?;
    Ok(u128::from_ne_bytes(b))
}

/// Write Vn with a `KVM_SET_ONE_REG` implementation.
#[cfg(any(feature = "kvm", test))]
pub(crate) fn set128_with(
    n: u8,
    value: u128,
    ioctl: impl FnOnce(u64, &mut [u8]) -> Result<(), Errno>,
) -> Result<(), RegError> {
    let mut b = value.to_ne_bytes();
    transfer(true, vreg_id(n)?, &mut b, &|| format!("V{n}"), ioctl)
}

/// [`VcpuRegs`] over a raw vCPU file descriptor, for VMMs that do not use
/// kvm-ioctls (kvm-ioctls' `VcpuFd` implements [`VcpuRegs`] itself).
#[cfg(feature = "kvm")]
#[derive(Clone, Copy, Debug)]
pub struct RawVcpuFd<'fd> {
    fd: BorrowedFd<'fd>,
}

#[cfg(feature = "kvm")]
impl<'fd> RawVcpuFd<'fd> {
    /// Wrap a borrowed vCPU fd.
    ///
    /// # Safety
    ///
    /// `fd` must be a KVM vCPU fd: every register access issues
    /// `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG` on it, for which the kernel reads
    /// one `struct kvm_one_reg` and transfers the register's bytes from or to
    /// a buffer of exactly that size. Another kind of fd could interpret the
    /// request numbers as different ioctls.
    pub unsafe fn new(fd: BorrowedFd<'fd>) -> Self {
        RawVcpuFd { fd }
    }

    fn ioctl(&self, set: bool, id: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let arg = sys::kvm_one_reg {
            id,
            addr: buf.as_mut_ptr() as u64,
        };
        let req = if set {
            sys::KVM_SET_ONE_REG()
        } else {
            sys::KVM_GET_ONE_REG()
        };
        // SAFETY: `self.fd` is a KVM vCPU fd (the contract of `new`). The
        // kernel reads the 16-byte `kvm_one_reg` and then reads or writes
        // exactly the register's size (encoded in `id`) at `addr`, which
        // points into `buf`: `transfer` checked it is at least that long, and
        // it is alive and exclusively borrowed for the duration of the call.
        let ret = unsafe { ioctl_with_ref(&self.fd.as_raw_fd(), req, &arg) };
        if ret < 0 {
            return Err(Errno::last());
        }
        Ok(())
    }
}

#[cfg(feature = "kvm")]
impl VcpuRegs for RawVcpuFd<'_> {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        get64_with(reg, |id, b| self.ioctl(false, id, b))
    }
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        set64_with(reg, value, |id, b| self.ioctl(true, id, b))
    }
    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        get128_with(n, |id, b| self.ioctl(false, id, b))
    }
    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        set128_with(n, value, |id, b| self.ioctl(true, id, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_ids_match_the_kernel_documentation() {
        // Documentation/virt/kvm/api.rst, "ARM64 core/FP-SIMD registers":
        //   0x6030 0000 0010 0000 X0          64  regs.regs[0]
        //   0x6030 0000 0010 003c X30         64  regs.regs[30]
        //   0x6030 0000 0010 003e SP          64  regs.sp
        //   0x6030 0000 0010 0040 PC          64  regs.pc
        //   0x6030 0000 0010 0042 PSTATE      64  regs.pstate
        //   0x6030 0000 0010 0044 SP_EL1      64  sp_el1
        //   0x6040 0000 0010 0054 V0         128  fp_regs.vregs[0]
        //   0x6040 0000 0010 0050 + 4*31 = ..d0 V31
        assert_eq!(reg_id(Reg::X(0)).unwrap(), 0x6030_0000_0010_0000);
        assert_eq!(reg_id(Reg::X(30)).unwrap(), 0x6030_0000_0010_003c);
        assert_eq!(reg_id(Reg::SpEl0).unwrap(), 0x6030_0000_0010_003e);
        assert_eq!(reg_id(Reg::Pc).unwrap(), 0x6030_0000_0010_0040);
        assert_eq!(reg_id(Reg::Pstate).unwrap(), 0x6030_0000_0010_0042);
        assert_eq!(reg_id(Reg::SpEl1).unwrap(), 0x6030_0000_0010_0044);
        assert_eq!(vreg_id(0).unwrap(), 0x6040_0000_0010_0054);
        assert_eq!(vreg_id(31).unwrap(), 0x6040_0000_0010_00d0);
        //   0x6030 0000 0010 0046 ELR_EL1     64  elr_el1
        //   0x6030 0000 0010 0048 SPSR_EL1    64  spsr[KVM_SPSR_EL1]
        assert_eq!(
            reg_id(Reg::Sys(SysReg::ElrEl1)).unwrap(),
            0x6030_0000_0010_0046
        );
        assert_eq!(
            reg_id(Reg::Sys(SysReg::SpsrEl1)).unwrap(),
            0x6030_0000_0010_0048
        );
        assert!(matches!(reg_id(Reg::X(31)), Err(RegError::Invalid(_))));
        assert!(matches!(vreg_id(32), Err(RegError::Invalid(_))));
    }

    #[test]
    fn core_ids_match_kvm_ioctls_test_constants() {
        // kvm-ioctls 0.25.1 src/ioctls/vcpu.rs tests: core_reg_base
        // 0x6030_0000_0010_0000, PC = base + 2 * 32, X8 = base + 2 * 8,
        // PSTATE_REG_ID = 0x6030_0000_0010_0042.
        let base = 0x6030_0000_0010_0000u64;
        assert_eq!(reg_id(Reg::Pc).unwrap(), base + 2 * 32);
        for n in 0..=30u8 {
            assert_eq!(reg_id(Reg::X(n)).unwrap(), base + 2 * u64::from(n));
        }
        assert_eq!(reg_id(Reg::Pstate).unwrap(), 0x6030_0000_0010_0042);
    }

    #[test]
    fn sysreg_ids_match_arm64_sys_reg() {
        // ARM64_SYS_REG(3, 0, 1, 0, 0) = SCTLR_EL1 = 0x6030_0000_0013_c080,
        // as in QEMU/kvmtool; MPIDR_EL1 (3,0,0,0,5) = 0x6030_0000_0013_c005
        // (kvm-ioctls' MPIDR test value).
        assert_eq!(sysreg_id(SysReg::SctlrEl1).unwrap(), 0x6030_0000_0013_c080);
        assert_eq!(
            sys::kvm_sysreg_id(3, 0, 0, 0, 5),
            Some(0x6030_0000_0013_c005)
        );
        // TCR_EL1 (3,0,2,0,2), TTBR0_EL1 (3,0,2,0,0), VBAR_EL1 (3,0,12,0,0),
        // ESR_EL1 (3,0,5,2,0), FAR_EL1 (3,0,6,0,0), DCZID_EL0 (3,3,0,0,7).
        assert_eq!(sysreg_id(SysReg::TcrEl1).unwrap(), 0x6030_0000_0013_c102);
        assert_eq!(sysreg_id(SysReg::Ttbr0El1).unwrap(), 0x6030_0000_0013_c100);
        assert_eq!(sysreg_id(SysReg::VbarEl1).unwrap(), 0x6030_0000_0013_c600);
        assert_eq!(sysreg_id(SysReg::EsrEl1).unwrap(), 0x6030_0000_0013_c290);
        assert_eq!(sysreg_id(SysReg::FarEl1).unwrap(), 0x6030_0000_0013_c300);
        assert_eq!(sysreg_id(SysReg::DczidEl0).unwrap(), 0x6030_0000_0013_d807);
        // Distinct ids for every SysReg.
        let mut ids: Vec<u64> = SysReg::ALL.iter().map(|&r| sysreg_id(r).unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), SysReg::ALL.len());
    }

    #[test]
    fn errors_carry_register_and_id() {
        let e = get64_with(Reg::Pc, |id, b| {
            assert_eq!((id, b.len()), (0x6030_0000_0010_0040, 8));
            Err(Errno::new(2))
        })
        .unwrap_err();
        match &e {
            RegError::Ioctl { op, id, source, .. } => {
                assert_eq!(*op, "KVM_GET_ONE_REG");
                assert_eq!(*id, 0x6030_0000_0010_0040);
                assert_eq!(source.errno(), 2);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains("Pc"), "{e}");
        let e = set128_with(3, 1, |_, _| Err(Errno::new(22))).unwrap_err();
        assert!(
            matches!(&e, RegError::Ioctl { op: "KVM_SET_ONE_REG", reg, .. } if reg == "V3"),
            "{e}"
        );
        // Invalid names fail before any call.
        let never = |_: u64, _: &mut [u8]| -> Result<(), Errno> { panic!("no ioctl expected") };
        assert!(matches!(
            set128_with(40, 0, never),
            Err(RegError::Invalid(_))
        ));
        assert!(matches!(
            set64_with(Reg::X(31), 0, never),
            Err(RegError::Invalid(_))
        ));
        // Values go through in host byte order.
        let v = get128_with(0, |_, b| {
            b.copy_from_slice(&0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128.to_ne_bytes());
            Ok(())
        });
        assert_eq!(v.unwrap(), 0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);
        let mut seen = 0;
        set64_with(Reg::X(5), 0x1234, |_, b| {
            seen = u64::from_ne_bytes(b.try_into().unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 0x1234);
    }

    #[test]
    fn short_buffers_are_refused() {
        let e = transfer(
            false,
            vreg_id(0).unwrap(),
            &mut [0u8; 8],
            &|| "V0".into(),
            |_, _| panic!("no ioctl expected"),
        )
        .unwrap_err();
        assert!(
            matches!(e, RegError::Invalid(ref m) if m.contains("8 bytes for 16")),
            "{e}"
        );
    }

    #[cfg(feature = "kvm")]
    #[test]
    fn raw_fd_ioctl_errors_carry_register_and_id() {
        let f = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: deliberately not a vCPU fd: /dev/null's driver rejects every
        // ioctl with ENOTTY without touching memory.
        let mut r = unsafe { RawVcpuFd::new(std::os::fd::AsFd::as_fd(&f)) };
        let e = r.get(Reg::Pc).unwrap_err();
        assert!(
            matches!(&e, RegError::Ioctl { op: "KVM_GET_ONE_REG", id: 0x6030_0000_0010_0040, source, .. }
                if source.errno() == libc::ENOTTY),
            "{e}"
        );
        assert!(matches!(r.set_v(40, 0), Err(RegError::Invalid(_))));
        assert!(matches!(r.set(Reg::X(31), 0), Err(RegError::Invalid(_))));
    }
}
