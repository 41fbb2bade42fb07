// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Typed parsing of KVM_EXIT_ARM_NISV from `kvm_run`.
//!
//! `io_mem_abort()` (`arch/arm64/kvm/mmio.c`) fills, for a data abort outside
//! every memslot whose syndrome has ISV = 0, on a VM with
//! `KVM_CAP_ARM_NISV_TO_USER` enabled:
//!
//! * `exit_reason = KVM_EXIT_ARM_NISV` (28);
//! * `arm_nisv.esr_iss`: ESR_EL2 masked to CM | WnR | DFSC ([`NisvIss`]);
//! * `arm_nisv.fault_ipa`: the faulting IPA. `kvm_handle_guest_abort()`
//!   (`arch/arm64/kvm/mmu.c`) builds it from HPFAR_EL2 (page-aligned) ORed with
//!   `FAR_EL2 & GENMASK(11, 0)`, so it includes the offset within a 4 KiB page
//!   (tests/kvm_nisv.rs checks this on the live kernels).
//!
//! The PC is not advanced: the vCPU re-executes the instruction on the next
//! `KVM_RUN` unless userspace emulates it (and moves the PC) or injects an
//! abort ([`crate::inject`]).
//!
//! kvm-ioctls (0.25) has no variant for this exit and reports it as
//! `VcpuExit::Unsupported(28)`; `NisvExit::from_vcpu` (feature `kvm-ioctls`,
//! in `kvm_ioctls`) reads the payload from the vCPU's mapped
//! `kvm_run`. Without the capability the same abort makes `KVM_RUN` fail with
//! `ENOSYS`; `RunError::from_errno` (feature `kvm`) names the cause.

use core::fmt;

#[cfg(feature = "kvm")]
use thiserror::Error;

#[cfg(feature = "kvm")]
use crate::errno::Errno;
use crate::esr::NisvIss;

/// `KVM_EXIT_ARM_NISV`.
pub const KVM_EXIT_ARM_NISV: u32 = kvm_nisv_sys::KVM_EXIT_ARM_NISV;

/// Read access to the parts of a `struct kvm_run` this module needs.
///
/// Implemented for `kvm_nisv_sys::kvm_run` and for kvm-bindings' `kvm_run`
/// (feature `kvm-ioctls`, in `kvm_ioctls`). Any other binding of the kernel's `struct kvm_run`
/// can implement it.
pub trait KvmRunView {
    /// `kvm_run.exit_reason`.
    fn exit_reason(&self) -> u32;
    /// `kvm_run.arm_nisv.{esr_iss, fault_ipa}`, read without checking the exit
    /// reason (the union member is plain integers, so any content is a valid
    /// value; it is only meaningful when `exit_reason` is 28).
    fn arm_nisv_raw(&self) -> (u64, u64);
}

impl KvmRunView for kvm_nisv_sys::kvm_run {
    fn exit_reason(&self) -> u32 {
        self.exit_reason
    }

    fn arm_nisv_raw(&self) -> (u64, u64) {
        // SAFETY: `arm_nisv` is a member of the exit union made of two u64s;
        // every bit pattern is a valid value, so reading it cannot be UB even
        // when another member was written last.
        let n = unsafe { self.__bindgen_anon_1.arm_nisv };
        (n.esr_iss, n.fault_ipa)
    }
}

/// A parsed `KVM_EXIT_ARM_NISV` exit.
///
/// Built by [`NisvExit::from_kvm_run`], `NisvExit::from_vcpu` (kvm-ioctls) or
/// [`NisvExit::new`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct NisvExit {
    /// The syndrome bits the kernel passes.
    pub iss: NisvIss,
    /// The faulting IPA, including the offset within the 4 KiB page.
    pub fault_ipa: u64,
}

impl NisvExit {
    /// Build from the raw `arm_nisv` payload.
    pub const fn new(esr_iss: u64, fault_ipa: u64) -> Self {
        NisvExit {
            iss: NisvIss::new(esr_iss),
            fault_ipa,
        }
    }

    /// The exit, if `run` holds a `KVM_EXIT_ARM_NISV` exit.
    pub fn from_kvm_run<R: KvmRunView + ?Sized>(run: &R) -> Option<Self> {
        if run.exit_reason() != KVM_EXIT_ARM_NISV {
            return None;
        }
        let (esr_iss, fault_ipa) = run.arm_nisv_raw();
        Some(Self::new(esr_iss, fault_ipa))
    }

    /// Whether the access was a write (WnR).
    pub const fn is_write(&self) -> bool {
        self.iss.is_write()
    }
}

impl fmt::Debug for NisvExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NisvExit")
            .field("iss", &self.iss)
            .field("fault_ipa", &format_args!("{:#x}", self.fault_ipa))
            .finish()
    }
}

impl fmt::Display for NisvExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data abort without valid syndrome at IPA {:#x}: {}",
            self.fault_ipa, self.iss
        )
    }
}

/// A `KVM_RUN` failure, with the NISV case explained.
#[cfg(feature = "kvm")]
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RunError {
    /// `ENOSYS`: on arm64 this is what `io_mem_abort()` returns for a data
    /// abort outside guest RAM without a valid syndrome when the VM has not
    /// enabled `KVM_CAP_ARM_NISV_TO_USER` (Linux 6.1 also logs "Data abort
    /// outside memslots with no valid syndrome info").
    #[error(
        "KVM_RUN failed with ENOSYS: the guest accessed an address outside guest RAM with an \
         instruction KVM cannot decode (data abort without a valid instruction syndrome, e.g. a \
         load/store with writeback or a load/store pair), and KVM_CAP_ARM_NISV_TO_USER (177, \
         Linux 5.5+) is not enabled on this VM; enable it (kvm_nisv::kvm_ioctls::VmFdNisvExt::enable_nisv_to_user) \
         to receive KVM_EXIT_ARM_NISV and emulate the access"
    )]
    NisvNotEnabled,
    /// Any other errno.
    #[error("KVM_RUN failed: {source}")]
    Other {
        /// The errno of `KVM_RUN`.
        #[source]
        source: Errno,
    },
}

#[cfg(feature = "kvm")]
impl RunError {
    /// Classify the errno of a failed `KVM_RUN` (kvm-ioctls' `VcpuFd::run`
    /// error, or [`Errno`]).
    pub fn from_errno(e: impl Into<Errno>) -> Self {
        let e = e.into();
        if e.errno() == libc::ENOSYS {
            RunError::NisvNotEnabled
        } else {
            RunError::Other { source: e }
        }
    }
}

#[cfg(feature = "kvm")]
impl From<vmm_sys_util::errno::Error> for RunError {
    fn from(e: vmm_sys_util::errno::Error) -> Self {
        Self::from_errno(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esr::Dfsc;

    /// A minimal stand-in for a `kvm_run` binding.
    struct FakeRun(u32, u64, u64);
    impl KvmRunView for FakeRun {
        fn exit_reason(&self) -> u32 {
            self.0
        }
        fn arm_nisv_raw(&self) -> (u64, u64) {
            (self.1, self.2)
        }
    }

    #[test]
    fn parses_only_exit_28() {
        let e = NisvExit::from_kvm_run(&FakeRun(28, 0x45, 0x1000_0010)).unwrap();
        assert!(e.is_write());
        assert_eq!(e.fault_ipa, 0x1000_0010);
        assert_eq!(e.iss.dfsc(), Dfsc::Translation { level: 1 });
        assert_eq!(
            e.to_string(),
            "data abort without valid syndrome at IPA 0x10000010: write, translation fault, level 1 (DFSC 0x05)"
        );
        assert_eq!(NisvExit::from_kvm_run(&FakeRun(6, 0x45, 1)), None);
        assert_eq!(NisvExit::from_kvm_run(&FakeRun(0, 0, 0)), None);
    }

    #[test]
    fn parses_a_hand_built_sys_kvm_run() {
        let mut run = kvm_nisv_sys::kvm_run {
            exit_reason: kvm_nisv_sys::KVM_EXIT_ARM_NISV,
            ..Default::default()
        };
        run.__bindgen_anon_1.arm_nisv.esr_iss = 0x145;
        run.__bindgen_anon_1.arm_nisv.fault_ipa = 0x0900_0ff8;
        let e = NisvExit::from_kvm_run(&run).unwrap();
        assert!(e.is_write());
        assert!(e.iss.is_cache_maintenance());
        assert_eq!(e.fault_ipa, 0x0900_0ff8);
        run.exit_reason = kvm_nisv_sys::KVM_EXIT_MMIO;
        assert_eq!(NisvExit::from_kvm_run(&run), None);
    }

    #[cfg(feature = "kvm")]
    #[test]
    fn enosys_is_explained() {
        use vmm_sys_util::errno;
        let e = RunError::from_errno(errno::Error::new(libc::ENOSYS));
        assert!(matches!(e, RunError::NisvNotEnabled));
        let msg = e.to_string();
        assert!(msg.contains("KVM_CAP_ARM_NISV_TO_USER"), "{msg}");
        assert!(msg.contains("ENOSYS"), "{msg}");
        assert!(msg.contains("Linux 5.5"), "{msg}");
        let e = RunError::from(errno::Error::new(libc::EINTR));
        assert!(matches!(e, RunError::Other { source } if source.errno() == libc::EINTR));
        assert!(e.to_string().starts_with("KVM_RUN failed: "), "{e}");
    }
}
