// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! KVM capability probing and enabling for NISV reporting and abort injection.
//!
//! Two capabilities, both added in Linux 5.5 (commits "KVM: arm/arm64: Allow
//! reporting non-ISV data aborts to userspace" and "KVM: arm/arm64: Allow user
//! injection of external data aborts"):
//!
//! * `KVM_CAP_ARM_NISV_TO_USER` (177): once enabled on a VM fd with
//!   `KVM_ENABLE_CAP`, a data abort outside any memslot whose syndrome has
//!   ISV = 0 returns from `KVM_RUN` with `KVM_EXIT_ARM_NISV` instead of failing
//!   with `ENOSYS`. Per VM; cannot be disabled again.
//! * `KVM_CAP_ARM_INJECT_EXT_DABT` (178): `KVM_SET_VCPU_EVENTS` accepts
//!   `exception.ext_dabt_pending`. Only probed; there is nothing to enable.
//!
//! And a newer one: `KVM_CAP_ARM_SEA_TO_USER` (245; absent in Linux 6.12, present
//! in 7.2): once enabled on a VM fd, a synchronous external abort taken from the
//! guest that the host does not own exits with `KVM_EXIT_ARM_SEA`
//! ([`crate::exit::SeaExit`]) instead of KVM injecting an SError
//! (`kvm_handle_guest_sea()`, `arch/arm64/kvm/mmu.c`). 1 on /dev/kvm and VM fds
//! of every 7.2 host (`kvm_vm_ioctl_check_extension()`); enabling takes no
//! arguments and sets `KVM_ARCH_FLAG_EXIT_SEA` (`kvm_vm_ioctl_enable_cap()`).
//!
//! [`Cap`], [`Support`] and [`CapError`] are plain data. The calls:
//!
//! * with kvm-ioctls (feature `kvm-ioctls`): safe methods on its own types,
//!   `kvm_ioctls::KvmNisvCaps` (`Kvm` and `VmFd`) and
//!   `kvm_ioctls::VmFdNisvExt` (`VmFd`), which call kvm-ioctls'
//!   `check_extension_raw` and `VmFd::enable_cap`;
//! * on raw file descriptors (feature `kvm`): the `unsafe fn`s below, for
//!   VMMs that do not use kvm-ioctls. They are unsafe because an ioctl
//!   request number means something else to another driver: only a KVM fd of
//!   the right kind makes the kernel read and write what the call expects.

use core::fmt;
#[cfg(feature = "kvm")]
use std::os::fd::{AsFd, AsRawFd};

use kvm_nisv_sys as sys;
use thiserror::Error;
#[cfg(feature = "kvm")]
use vmm_sys_util::ioctl::{ioctl_with_ref, ioctl_with_val};

use crate::errno::Errno;

/// The capabilities this crate deals with.
///
/// `#[non_exhaustive]`: the kernel keeps adding arm64 abort-related capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum Cap {
    /// `KVM_CAP_ARM_NISV_TO_USER`: report data aborts without a valid
    /// syndrome as `KVM_EXIT_ARM_NISV` (must be enabled per VM).
    ArmNisvToUser = sys::KVM_CAP_ARM_NISV_TO_USER,
    /// `KVM_CAP_ARM_INJECT_EXT_DABT`: inject external data aborts with
    /// `KVM_SET_VCPU_EVENTS`.
    ArmInjectExtDabt = sys::KVM_CAP_ARM_INJECT_EXT_DABT,
    /// `KVM_CAP_ARM_SEA_TO_USER`: report synchronous external aborts the host
    /// does not own as `KVM_EXIT_ARM_SEA` (must be enabled per VM).
    ArmSeaToUser = sys::KVM_CAP_ARM_SEA_TO_USER,
}

impl Cap {
    /// The capability number (`KVM_CHECK_EXTENSION` argument).
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// The kernel's name, `KVM_CAP_...`.
    pub const fn name(self) -> &'static str {
        match self {
            Cap::ArmNisvToUser => "KVM_CAP_ARM_NISV_TO_USER",
            Cap::ArmInjectExtDabt => "KVM_CAP_ARM_INJECT_EXT_DABT",
            Cap::ArmSeaToUser => "KVM_CAP_ARM_SEA_TO_USER",
        }
    }

    /// The first Linux release known to have the capability: the mainline
    /// release for the NISV pair; for SEA_TO_USER the oldest kernel this project
    /// checked that has it (Debian's 6.12 does not).
    pub const fn since(self) -> &'static str {
        match self {
            Cap::ArmNisvToUser | Cap::ArmInjectExtDabt => "Linux 5.5",
            Cap::ArmSeaToUser => "Linux 7.2 (not in 6.12)",
        }
    }

    /// What the capability provides, in a few words.
    pub const fn purpose(self) -> &'static str {
        match self {
            Cap::ArmNisvToUser => {
                "reporting data aborts without a valid instruction syndrome to userspace (KVM_EXIT_ARM_NISV)"
            }
            Cap::ArmInjectExtDabt => {
                "injecting external data aborts with KVM_SET_VCPU_EVENTS (ext_dabt_pending)"
            }
            Cap::ArmSeaToUser => {
                "reporting synchronous external aborts to userspace (KVM_EXIT_ARM_SEA)"
            }
        }
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

/// Errors of this module.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CapError {
    /// `KVM_CHECK_EXTENSION` returned 0 for the capability.
    #[error(
        "the kernel lacks {cap}: no support for {purpose}; it exists since {since} on arm64 hosts",
        purpose = .cap.purpose(),
        since = .cap.since()
    )]
    Missing {
        /// The missing capability.
        cap: Cap,
    },
    /// An ioctl failed.
    #[error("{op} for {cap} failed: {source}")]
    Ioctl {
        /// The ioctl.
        op: &'static str,
        /// The capability concerned.
        cap: Cap,
        /// The errno.
        #[source]
        source: Errno,
    },
}

/// Both capabilities at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Support {
    /// `KVM_CAP_ARM_NISV_TO_USER` is available (it still has to be enabled).
    pub nisv_to_user: bool,
    /// `KVM_CAP_ARM_INJECT_EXT_DABT` is available.
    pub inject_ext_dabt: bool,
}

impl Support {
    /// A result with the given answers (for tests and fakes; real values come
    /// from probing the kernel).
    pub const fn new(nisv_to_user: bool, inject_ext_dabt: bool) -> Self {
        Support {
            nisv_to_user,
            inject_ext_dabt,
        }
    }

    /// Build from a `KVM_CHECK_EXTENSION` function for one capability.
    #[cfg(any(feature = "kvm", test))]
    pub(crate) fn from_check<E>(mut check: impl FnMut(Cap) -> Result<i32, E>) -> Result<Self, E> {
        Ok(Support {
            nisv_to_user: check(Cap::ArmNisvToUser)? > 0,
            inject_ext_dabt: check(Cap::ArmInjectExtDabt)? > 0,
        })
    }

    /// Probe both capabilities on a system (`/dev/kvm`) or VM fd.
    ///
    /// # Safety
    ///
    /// As for [`check_extension`]: `fd` must be a KVM system or VM fd.
    #[cfg(feature = "kvm")]
    pub unsafe fn probe<F: AsFd + ?Sized>(fd: &F) -> Result<Self, CapError> {
        // SAFETY: the caller guarantees that `fd` is a KVM system or VM fd.
        Self::from_check(|cap| unsafe { check_extension(fd, cap) })
    }
}

/// Interpret the return value of `KVM_CHECK_EXTENSION` (negative: the
/// current errno is the reason).
#[cfg(feature = "kvm")]
pub(crate) fn check_result(ret: i32, cap: Cap) -> Result<i32, CapError> {
    if ret < 0 {
        return Err(CapError::Ioctl {
            op: "KVM_CHECK_EXTENSION",
            cap,
            source: Errno::last(),
        });
    }
    Ok(ret)
}

/// `Ok` if `KVM_CHECK_EXTENSION` answered a positive value, else
/// [`CapError::Missing`].
#[cfg(feature = "kvm")]
pub(crate) fn require_result(value: i32, cap: Cap) -> Result<(), CapError> {
    if value > 0 {
        Ok(())
    } else {
        Err(CapError::Missing { cap })
    }
}

/// `KVM_CHECK_EXTENSION` for `cap` on a system (`/dev/kvm`) or VM fd.
///
/// Returns the kernel's value: 0 if absent, positive (1 for both NISV
/// capabilities) if present. On a VM fd the answer can depend on the VM
/// (recommended since Linux 4.x with `KVM_CAP_CHECK_EXTENSION_VM`).
/// kvm-ioctls users call `kvm_ioctls::KvmNisvCaps::check_nisv_cap`.
///
/// # Safety
///
/// `fd` must be a KVM system fd (`/dev/kvm`) or a KVM VM fd. Another kind of
/// fd could interpret the request number as a different ioctl.
#[cfg(feature = "kvm")]
pub unsafe fn check_extension<F: AsFd + ?Sized>(fd: &F, cap: Cap) -> Result<i32, CapError> {
    // SAFETY: the caller guarantees a KVM system or VM fd, for which
    // KVM_CHECK_EXTENSION takes its argument by value and touches no memory
    // of ours.
    let ret = unsafe {
        ioctl_with_val(
            &fd.as_fd().as_raw_fd(),
            sys::KVM_CHECK_EXTENSION(),
            libc::c_ulong::from(cap.number()),
        )
    };
    check_result(ret, cap)
}

/// Fail with [`CapError::Missing`] unless `cap` is present on `fd`.
///
/// # Safety
///
/// As for [`check_extension`]: `fd` must be a KVM system or VM fd.
#[cfg(feature = "kvm")]
pub unsafe fn require<F: AsFd + ?Sized>(fd: &F, cap: Cap) -> Result<(), CapError> {
    // SAFETY: forwarded from the caller.
    require_result(unsafe { check_extension(fd, cap) }?, cap)
}

/// Enable `KVM_CAP_ARM_NISV_TO_USER` on a VM fd (`KVM_ENABLE_CAP`).
///
/// Checks the capability first so that an old kernel gives
/// [`CapError::Missing`] rather than a bare `EINVAL`. Enabling twice is
/// harmless (the kernel sets a flag). kvm-ioctls users call
/// `kvm_ioctls::VmFdNisvExt::enable_nisv_to_user`.
///
/// # Safety
///
/// `vm` must be a KVM VM fd: the kernel then reads exactly one
/// `struct kvm_enable_cap`. Another kind of fd could interpret the request
/// number as a different ioctl.
#[cfg(feature = "kvm")]
pub unsafe fn enable_nisv_to_user<F: AsFd + ?Sized>(vm: &F) -> Result<(), CapError> {
    // SAFETY: forwarded from the caller.
    unsafe { enable(vm, Cap::ArmNisvToUser) }
}

/// Enable `KVM_CAP_ARM_SEA_TO_USER` on a VM fd (`KVM_ENABLE_CAP`, Linux 7.2+):
/// from then on the VM's synchronous external aborts that the host does not
/// own exit with `KVM_EXIT_ARM_SEA` ([`crate::exit::SeaExit`]).
///
/// Checks the capability first: [`CapError::Missing`] on kernels without it
/// (6.12 and older). kvm-ioctls users call
/// `kvm_ioctls::VmFdNisvExt::enable_sea_to_user`.
///
/// # Safety
///
/// As [`enable_nisv_to_user`]: `vm` must be a KVM VM fd.
#[cfg(feature = "kvm")]
pub unsafe fn enable_sea_to_user<F: AsFd + ?Sized>(vm: &F) -> Result<(), CapError> {
    // SAFETY: forwarded from the caller.
    unsafe { enable(vm, Cap::ArmSeaToUser) }
}

/// `KVM_ENABLE_CAP` of a capability that takes no arguments, after checking it.
///
/// # Safety
///
/// `vm` must be a KVM VM fd.
#[cfg(feature = "kvm")]
unsafe fn enable<F: AsFd + ?Sized>(vm: &F, cap: Cap) -> Result<(), CapError> {
    // SAFETY: forwarded from the caller (a VM fd answers KVM_CHECK_EXTENSION).
    unsafe { require(vm, cap) }?;
    let arg = sys::kvm_enable_cap {
        cap: cap.number(),
        ..Default::default()
    };
    // SAFETY: the caller guarantees a KVM VM fd, for which the kernel reads
    // exactly size_of::<kvm_enable_cap>() bytes from `arg`, which lives for
    // the duration of the call.
    let ret = unsafe { ioctl_with_ref(&vm.as_fd().as_raw_fd(), sys::KVM_ENABLE_CAP(), &arg) };
    if ret < 0 {
        return Err(CapError::Ioctl {
            op: "KVM_ENABLE_CAP",
            cap,
            source: Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_numbers_and_names() {
        assert_eq!(Cap::ArmNisvToUser.number(), 177);
        assert_eq!(Cap::ArmInjectExtDabt.number(), 178);
        // From the generated 7.2 bindings (checked against the headers' fixture).
        assert_eq!(Cap::ArmSeaToUser.number(), 245);
        assert_eq!(
            Cap::ArmSeaToUser.to_string(),
            "KVM_CAP_ARM_SEA_TO_USER (245)"
        );
        let msg = CapError::Missing {
            cap: Cap::ArmSeaToUser,
        }
        .to_string();
        assert!(
            msg.contains("KVM_EXIT_ARM_SEA") && msg.contains("7.2"),
            "{msg}"
        );
        assert_eq!(
            Cap::ArmNisvToUser.to_string(),
            "KVM_CAP_ARM_NISV_TO_USER (177)"
        );
    }

    #[cfg(feature = "kvm")]
    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // _IO(0xAE, 0x03), _IOW(0xAE, 0xa3, 104 bytes), _IOW(0xAE, 0xa0, 64),
        // _IOW(0xAE, 0xab/0xac, 16) as computed by the kernel's asm-generic/ioctl.h.
        assert_eq!(sys::KVM_CHECK_EXTENSION(), 0xae03);
        assert_eq!(sys::KVM_ENABLE_CAP(), 0x4068_aea3);
        assert_eq!(sys::KVM_SET_VCPU_EVENTS(), 0x4040_aea0);
        assert_eq!(sys::KVM_GET_ONE_REG(), 0x4010_aeab);
        assert_eq!(sys::KVM_SET_ONE_REG(), 0x4010_aeac);
    }

    #[test]
    fn missing_cap_message_names_what_and_since_when() {
        let e = CapError::Missing {
            cap: Cap::ArmNisvToUser,
        };
        let msg = e.to_string();
        assert!(msg.contains("KVM_CAP_ARM_NISV_TO_USER (177)"), "{msg}");
        assert!(msg.contains("Linux 5.5"), "{msg}");
        assert!(msg.contains("KVM_EXIT_ARM_NISV"), "{msg}");
        let msg = CapError::Missing {
            cap: Cap::ArmInjectExtDabt,
        }
        .to_string();
        assert!(msg.contains("KVM_CAP_ARM_INJECT_EXT_DABT (178)"), "{msg}");
        assert!(msg.contains("ext_dabt_pending"), "{msg}");
    }

    #[cfg(feature = "kvm")]
    #[test]
    fn probing_a_non_kvm_fd_is_an_ioctl_error_not_a_panic() {
        let f = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: deliberately not a KVM fd: /dev/null's driver rejects every
        // ioctl with ENOTTY without touching memory.
        let e = unsafe { check_extension(&f, Cap::ArmNisvToUser) }.unwrap_err();
        assert!(
            matches!(
                e,
                CapError::Ioctl {
                    op: "KVM_CHECK_EXTENSION",
                    source,
                    ..
                } if source.errno() == libc::ENOTTY
            ),
            "{e}"
        );
        // SAFETY: as above.
        let e = unsafe { enable_nisv_to_user(&f) }.unwrap_err();
        assert!(matches!(e, CapError::Ioctl { .. }), "{e}");
        // SAFETY: as above.
        let e = unsafe { Support::probe(&f) }.unwrap_err();
        assert!(matches!(e, CapError::Ioctl { .. }), "{e}");
    }

    #[test]
    fn support_from_answers() {
        let s = Support::from_check(|c| Ok::<_, ()>(i32::from(c == Cap::ArmNisvToUser)));
        assert_eq!(s, Ok(Support::new(true, false)));
        let e = Support::from_check(|_| Err::<i32, _>("no"));
        assert_eq!(e, Err("no"));
    }
}
