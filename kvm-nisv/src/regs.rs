// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vCPU register access as a trait.
//!
//! Emulating an access needs a handful of guest registers: the base and data
//! registers, PC, PSTATE, the stack pointers and the stage-1 translation
//! registers. [`VcpuRegs`] is the one interface the emulator and the walker use;
//! it is implemented over `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG` for KVM vCPUs and by
//! [`RegisterFile`] in memory for host tests. Each call on a KVM vCPU is a system
//! call, so callers read only what they need.

use alloc::format;
use alloc::string::String;

use thiserror::Error;

use crate::errno::Errno;

/// An AArch64 system register the crate knows how to name.
///
/// The encoding (op0, op1, CRn, CRm, op2) is the Arm ARM's and is what
/// `KVM_REG_ARM64_SYSREG` ids are built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SysReg {
    /// System Control Register (EL1): MMU enable, alignment check, endianness.
    SctlrEl1,
    /// Translation Control Register (EL1).
    TcrEl1,
    /// Translation Table Base Register 0 (EL1).
    Ttbr0El1,
    /// Translation Table Base Register 1 (EL1).
    Ttbr1El1,
    /// Memory Attribute Indirection Register (EL1).
    MairEl1,
    /// Data Cache Zero ID register: the DC ZVA block size.
    DczidEl0,
    /// Exception Syndrome Register (EL1).
    EsrEl1,
    /// Fault Address Register (EL1).
    FarEl1,
    /// Vector Base Address Register (EL1).
    VbarEl1,
    /// Exception Link Register (EL1).
    ElrEl1,
    /// Saved Program Status Register (EL1).
    SpsrEl1,
    /// AArch64 Memory Model Feature Register 0: physical address range, granules.
    IdAa64mmfr0El1,
    /// AArch64 Memory Model Feature Register 2: AT (\[35:32\], FEAT_LSE2).
    IdAa64mmfr2El1,
    /// Monitor Debug System Control Register (EL1): software step (SS) and
    /// breakpoint/watchpoint (MDE) enables; run-ahead emulation stays off
    /// while either is set.
    MdscrEl1,
}

impl SysReg {
    /// Every register of this enum, for tests and tables.
    pub const ALL: [SysReg; 14] = [
        SysReg::SctlrEl1,
        SysReg::TcrEl1,
        SysReg::Ttbr0El1,
        SysReg::Ttbr1El1,
        SysReg::MairEl1,
        SysReg::DczidEl0,
        SysReg::EsrEl1,
        SysReg::FarEl1,
        SysReg::VbarEl1,
        SysReg::ElrEl1,
        SysReg::SpsrEl1,
        SysReg::IdAa64mmfr0El1,
        SysReg::IdAa64mmfr2El1,
        SysReg::MdscrEl1,
    ];

    /// The register's encoding as `(op0, op1, CRn, CRm, op2)` (Arm ARM, chapter D23).
    pub const fn encoding(self) -> (u8, u8, u8, u8, u8) {
        match self {
            SysReg::SctlrEl1 => (3, 0, 1, 0, 0),
            SysReg::TcrEl1 => (3, 0, 2, 0, 2),
            SysReg::Ttbr0El1 => (3, 0, 2, 0, 0),
            SysReg::Ttbr1El1 => (3, 0, 2, 0, 1),
            SysReg::MairEl1 => (3, 0, 10, 2, 0),
            SysReg::DczidEl0 => (3, 3, 0, 0, 7),
            SysReg::EsrEl1 => (3, 0, 5, 2, 0),
            SysReg::FarEl1 => (3, 0, 6, 0, 0),
            SysReg::VbarEl1 => (3, 0, 12, 0, 0),
            SysReg::ElrEl1 => (3, 0, 4, 0, 1),
            SysReg::SpsrEl1 => (3, 0, 4, 0, 0),
            SysReg::IdAa64mmfr0El1 => (3, 0, 0, 7, 0),
            SysReg::IdAa64mmfr2El1 => (3, 0, 0, 7, 2),
            SysReg::MdscrEl1 => (2, 0, 0, 2, 2),
        }
    }
}

/// A 64-bit register reachable through [`VcpuRegs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reg {
    /// General-purpose register X0..=X30. `X(31)` is not a register (it is SP
    /// or XZR depending on the instruction) and is rejected with
    /// [`RegError::Invalid`].
    X(u8),
    /// Stack pointer used at EL0 (and at EL1 when PSTATE.SP = 0).
    SpEl0,
    /// Stack pointer used at EL1 when PSTATE.SP = 1.
    SpEl1,
    /// Program counter.
    Pc,
    /// PSTATE as KVM exposes it (`regs.pstate`, the SPSR layout).
    Pstate,
    /// A system register.
    Sys(SysReg),
}

/// Why a register could not be read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegError {
    /// The register name is not valid (for example `X(31)` or `V(32)`).
    #[error("invalid register {0}")]
    Invalid(String),
    /// The backend does not provide this register.
    #[error("register {0} is not available from this vCPU backend")]
    Unavailable(String),
    /// The `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG` ioctl failed.
    #[error("{op} of {reg} (id {id:#x}) failed: {source}")]
    Ioctl {
        /// `KVM_GET_ONE_REG` or `KVM_SET_ONE_REG`.
        op: &'static str,
        /// The register, as text.
        reg: String,
        /// The KVM register id.
        id: u64,
        /// The errno the kernel returned.
        #[source]
        source: Errno,
    },
}

/// Read and write vCPU registers.
///
/// Implemented for KVM vCPUs (one `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG` per call):
/// kvm-ioctls' `VcpuFd` and `&VcpuFd` (feature `kvm-ioctls`) and
/// `one_reg::RawVcpuFd` (feature `kvm`); and in memory by [`RegisterFile`].
pub trait VcpuRegs {
    /// Read a 64-bit register.
    fn get(&mut self, reg: Reg) -> Result<u64, RegError>;
    /// Write a 64-bit register.
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError>;
    /// Read SIMD&FP register Vn (n in 0..=31) as a 128-bit value (lane 0 in the low bits).
    fn get_v(&mut self, n: u8) -> Result<u128, RegError>;
    /// Write SIMD&FP register Vn (n in 0..=31).
    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError>;
}

impl<T: VcpuRegs + ?Sized> VcpuRegs for &mut T {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        (**self).get(reg)
    }
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        (**self).set(reg, value)
    }
    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        (**self).get_v(n)
    }
    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        (**self).set_v(n, value)
    }
}

/// An in-memory register file: the [`VcpuRegs`] backend for host tests, fuzzing
/// and reference models.
///
/// Build one with [`RegisterFile::new`] (all zero) and set the fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegisterFile {
    /// X0..=X30.
    pub x: [u64; 31],
    /// SP_EL0.
    pub sp_el0: u64,
    /// SP_EL1.
    pub sp_el1: u64,
    /// PC.
    pub pc: u64,
    /// PSTATE (SPSR layout).
    pub pstate: u64,
    /// V0..=V31.
    pub v: [u128; 32],
    /// System registers, indexed like [`SysReg::ALL`].
    pub sys: [u64; SysReg::ALL.len()],
}

impl RegisterFile {
    /// All registers zero.
    pub fn new() -> Self {
        Self::default()
    }

    fn sys_index(r: SysReg) -> usize {
        // ALL lists every variant exactly once, so the search always succeeds;
        // fall back to 0 rather than panicking if that ever changes.
        SysReg::ALL.iter().position(|&s| s == r).unwrap_or(0)
    }

    /// The value of a system register.
    pub fn sys(&self, r: SysReg) -> u64 {
        self.sys[Self::sys_index(r)]
    }

    /// Set a system register.
    pub fn set_sys(&mut self, r: SysReg, value: u64) {
        self.sys[Self::sys_index(r)] = value;
    }
}

impl VcpuRegs for RegisterFile {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        Ok(match reg {
            Reg::X(n) => *self
                .x
                .get(usize::from(n))
                .ok_or_else(|| RegError::Invalid(format!("{reg:?}")))?,
            Reg::SpEl0 => self.sp_el0,
            Reg::SpEl1 => self.sp_el1,
            Reg::Pc => self.pc,
            Reg::Pstate => self.pstate,
            Reg::Sys(s) => self.sys(s),
        })
    }

    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        match reg {
            Reg::X(n) => {
                *self
                    .x
                    .get_mut(usize::from(n))
                    .ok_or_else(|| RegError::Invalid(format!("{reg:?}")))? = value
            }
            Reg::SpEl0 => self.sp_el0 = value,
            Reg::SpEl1 => self.sp_el1 = value,
            Reg::Pc => self.pc = value,
            Reg::Pstate => self.pstate = value,
            Reg::Sys(s) => self.set_sys(s, value),
        }
        Ok(())
    }

    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        self.v
            .get(usize::from(n))
            .copied()
            .ok_or_else(|| RegError::Invalid(format!("V{n}")))
    }

    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        *self
            .v
            .get_mut(usize::from(n))
            .ok_or_else(|| RegError::Invalid(format!("V{n}")))? = value;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_file_rejects_out_of_range_names() {
        let mut r = RegisterFile::default();
        assert!(matches!(r.get(Reg::X(31)), Err(RegError::Invalid(_))));
        assert!(matches!(r.set(Reg::X(200), 1), Err(RegError::Invalid(_))));
        assert!(matches!(r.get_v(32), Err(RegError::Invalid(_))));
        r.set(Reg::X(30), 7).unwrap();
        r.set(Reg::Sys(SysReg::TcrEl1), 9).unwrap();
        r.set_v(31, u128::MAX).unwrap();
        assert_eq!(r.get(Reg::X(30)).unwrap(), 7);
        assert_eq!(r.get(Reg::Sys(SysReg::TcrEl1)).unwrap(), 9);
        assert_eq!(r.sys(SysReg::TcrEl1), 9);
        assert_eq!(r.get_v(31).unwrap(), u128::MAX);
    }
}
