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
//! The functions take any [`AsRawFd`], so they work with kvm-ioctls' `Kvm` and
//! `VmFd` as well as with raw fds. (`kvm_ioctls::VmFd::enable_cap` does exist
//! on aarch64 in kvm-ioctls 0.25.1, but there is no NISV helper;
//! [`enable_nisv_to_user`] is that helper.)

use std::fmt;
use std::os::fd::AsRawFd;

use kvm_nisv_sys as sys;
use thiserror::Error;
use vmm_sys_util::errno;
use vmm_sys_util::ioctl::{ioctl_with_ref, ioctl_with_val};

/// The capabilities this crate deals with.
///
/// `#[non_exhaustive]`: the kernel keeps adding arm64 abort-related capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
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
        source: errno::Error,
    },
}

/// `KVM_CHECK_EXTENSION` for `cap` on a system (`/dev/kvm`) or VM fd.
///
/// Returns the kernel's value: 0 if absent, positive (1 for both NISV
/// capabilities) if present. On a VM fd the answer can depend on the VM
/// (recommended since Linux 4.x with `KVM_CAP_CHECK_EXTENSION_VM`).
pub fn check_extension<F: AsRawFd + ?Sized>(fd: &F, cap: Cap) -> Result<i32, CapError> {
    // SAFETY: KVM_CHECK_EXTENSION takes its argument by value and touches no
    // memory of ours; a wrong fd only makes the kernel return an error.
    let ret = unsafe {
        ioctl_with_val(
            &fd.as_raw_fd(),
            sys::KVM_CHECK_EXTENSION(),
            libc::c_ulong::from(cap.number()),
        )
    };
    if ret < 0 {
        return Err(CapError::Ioctl {
            op: "KVM_CHECK_EXTENSION",
            cap,
            source: errno::Error::last(),
        });
    }
    Ok(ret)
}

/// Fail with [`CapError::Missing`] unless `cap` is present on `fd`.
pub fn require<F: AsRawFd + ?Sized>(fd: &F, cap: Cap) -> Result<(), CapError> {
    if check_extension(fd, cap)? > 0 {
        Ok(())
    } else {
        Err(CapError::Missing { cap })
    }
}

/// Both capabilities at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Support {
    /// `KVM_CAP_ARM_NISV_TO_USER` is available (it still has to be enabled).
    pub nisv_to_user: bool,
    /// `KVM_CAP_ARM_INJECT_EXT_DABT` is available.
    pub inject_ext_dabt: bool,
}

impl Support {
    /// Probe both capabilities on a system or VM fd.
    pub fn probe<F: AsRawFd + ?Sized>(fd: &F) -> Result<Self, CapError> {
        Ok(Support {
            nisv_to_user: check_extension(fd, Cap::ArmNisvToUser)? > 0,
            inject_ext_dabt: check_extension(fd, Cap::ArmInjectExtDabt)? > 0,
        })
    }
}

/// Enable `KVM_CAP_ARM_NISV_TO_USER` on a VM fd (`KVM_ENABLE_CAP`).
///
/// Checks the capability first so that an old kernel gives
/// [`CapError::Missing`] rather than a bare `EINVAL`. Enabling twice is
/// harmless (the kernel sets a flag).
pub fn enable_nisv_to_user<F: AsRawFd + ?Sized>(vm: &F) -> Result<(), CapError> {
    let cap = Cap::ArmNisvToUser;
    require(vm, cap)?;
    let arg = sys::kvm_enable_cap {
        cap: cap.number(),
        ..Default::default()
    };
    // SAFETY: the kernel reads exactly size_of::<kvm_enable_cap>() bytes from
    // `arg`, which lives for the duration of the call.
    let ret = unsafe { ioctl_with_ref(&vm.as_raw_fd(), sys::KVM_ENABLE_CAP(), &arg) };
    if ret < 0 {
        return Err(CapError::Ioctl {
            op: "KVM_ENABLE_CAP",
            cap,
            source: errno::Error::last(),
        });
    }
    Ok(())
}

/// Enable `KVM_CAP_ARM_SEA_TO_USER` on a VM fd (`KVM_ENABLE_CAP`): from then on
/// the VM's synchronous external aborts that the host does not own exit with
/// `KVM_EXIT_ARM_SEA`. [`CapError::Missing`] on kernels without it (6.12 and older).
pub fn enable_sea_to_user<F: AsRawFd + ?Sized>(vm: &F) -> Result<(), CapError> {
    let cap = Cap::ArmSeaToUser;
    require(vm, cap)?;
    let arg = sys::kvm_enable_cap {
        cap: cap.number(),
        ..Default::default()
    };
    // SAFETY: the kernel reads exactly size_of::<kvm_enable_cap>() bytes from
    // `arg`, which lives for the duration of the call.
    let ret = unsafe { ioctl_with_ref(&vm.as_raw_fd(), sys::KVM_ENABLE_CAP(), &arg) };
    if ret < 0 {
        return Err(CapError::Ioctl {
            op: "KVM_ENABLE_CAP",
            cap,
            source: errno::Error::last(),
        });
    }
    Ok(())
}

/// Convenience methods on kvm-ioctls' `VmFd` (the free functions of this
/// module work on any fd; these only save an import and a borrow).
#[cfg(feature = "kvm-ioctls")]
pub trait VmFdNisvExt {
    /// [`Support::probe`] on this VM.
    fn nisv_support(&self) -> Result<Support, CapError>;
    /// [`enable_nisv_to_user`] on this VM.
    fn enable_nisv_to_user(&self) -> Result<(), CapError>;
    /// [`crate::inject::ExtDabtInjector::new`] on this VM.
    fn ext_dabt_injector(&self) -> Result<crate::inject::ExtDabtInjector, CapError>;
}

#[cfg(feature = "kvm-ioctls")]
impl VmFdNisvExt for kvm_ioctls::VmFd {
    fn nisv_support(&self) -> Result<Support, CapError> {
        Support::probe(self)
    }
    fn enable_nisv_to_user(&self) -> Result<(), CapError> {
        enable_nisv_to_user(self)
    }
    fn ext_dabt_injector(&self) -> Result<crate::inject::ExtDabtInjector, CapError> {
        crate::inject::ExtDabtInjector::new(self)
    }
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

    #[test]
    fn probing_a_non_kvm_fd_is_an_ioctl_error_not_a_panic() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = check_extension(&f, Cap::ArmNisvToUser).unwrap_err();
        assert!(
            matches!(
                e,
                CapError::Ioctl {
                    op: "KVM_CHECK_EXTENSION",
                    ..
                }
            ),
            "{e}"
        );
        let e = enable_nisv_to_user(&f).unwrap_err();
        assert!(matches!(e, CapError::Ioctl { .. }), "{e}");
    }
}
