// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! External data abort injection through KVM_SET_VCPU_EVENTS.
//!
//! With `KVM_CAP_ARM_INJECT_EXT_DABT` (Linux 5.5), `KVM_SET_VCPU_EVENTS` with
//! `exception.ext_dabt_pending = 1` makes `__kvm_arm_vcpu_set_events()`
//! (`arch/arm64/kvm/guest.c`) call `kvm_inject_dabt(vcpu,
//! kvm_vcpu_get_hfar(vcpu))`: on the next `KVM_RUN` the guest takes a
//! synchronous external abort for the address of the last abort (so call it
//! right after the `KVM_EXIT_ARM_NISV` exit, before running the vCPU again).
//! `inject_abt64()` (`arch/arm64/kvm/inject_fault.c`) sets, for a guest at
//! EL1: ESR_EL1.EC = 0x25 (data abort, same EL; 0x24 from EL0), IL as in the
//! trapped syndrome, DFSC = 0x10 (synchronous external abort), FnV = 0,
//! FAR_EL1 = the faulting virtual address; the exception is taken to
//! VBAR_EL1 + 0x200 (current EL, SP_ELx) or + 0x400 (from EL0) with ELR_EL1
//! pointing at the faulting instruction.
//!
//! The capability cannot be checked on a vCPU fd, so it is checked once on a
//! VM (or `/dev/kvm`) fd and then the injection is made on vCPU fds:
//!
//! * with kvm-ioctls (feature `kvm-ioctls`):
//!   `kvm_ioctls::ExtDabtInjector`, created from a `Kvm` or `VmFd`,
//!   injects through kvm-ioctls' `VcpuFd::set_vcpu_events`;
//! * on raw file descriptors (feature `kvm`): `inject_ext_dabt`, an
//!   `unsafe fn` whose contract is that the fd is a KVM vCPU fd.

#[cfg(feature = "kvm")]
use std::os::fd::{AsFd, AsRawFd};

use thiserror::Error;
#[cfg(feature = "kvm")]
use vmm_sys_util::ioctl::ioctl_with_ref;

use crate::cap::CapError;
use crate::errno::Errno;
use kvm_nisv_sys as sys;

/// Errors from abort injection.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InjectError {
    /// The capability is missing (or could not be probed).
    #[error(transparent)]
    Cap(#[from] CapError),
    /// `KVM_SET_VCPU_EVENTS` failed.
    #[error("KVM_SET_VCPU_EVENTS (ext_dabt_pending) failed: {source}")]
    SetVcpuEvents {
        /// The errno the kernel returned.
        #[source]
        source: Errno,
    },
}

/// The `KVM_SET_VCPU_EVENTS` argument that makes an external data abort
/// pending: everything zero except `exception.ext_dabt_pending = 1`.
pub fn ext_dabt_events() -> sys::kvm_vcpu_events {
    let mut events = sys::kvm_vcpu_events::default();
    events.exception.ext_dabt_pending = 1;
    events
}

/// Make an external data abort pending on `vcpu`: the guest takes it on the
/// next `KVM_RUN`. Check `KVM_CAP_ARM_INJECT_EXT_DABT` first
/// (`cap::require`); without it the kernel ignores the field on
/// some versions and fails on others.
///
/// # Safety
///
/// `vcpu` must be a KVM vCPU fd: the kernel then reads exactly one
/// `struct kvm_vcpu_events` (64 bytes). Another kind of fd could interpret
/// the request number as a different ioctl.
#[cfg(feature = "kvm")]
pub unsafe fn inject_ext_dabt<V: AsFd + ?Sized>(vcpu: &V) -> Result<(), InjectError> {
    let events = ext_dabt_events();
    // SAFETY: the caller guarantees a KVM vCPU fd, for which the kernel reads
    // exactly size_of::<kvm_vcpu_events>() (64) bytes from `events`, which
    // outlives the call.
    let ret = unsafe {
        ioctl_with_ref(
            &vcpu.as_fd().as_raw_fd(),
            sys::KVM_SET_VCPU_EVENTS(),
            &events,
        )
    };
    if ret < 0 {
        return Err(InjectError::SetVcpuEvents {
            source: Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_layout_puts_ext_dabt_pending_at_byte_2() {
        let ev = ext_dabt_events();
        // SAFETY: kvm_vcpu_events is plain repr(C) data without padding
        // bytes (the explicit pad fields cover the holes), 64 bytes long.
        let bytes: [u8; 64] = unsafe { core::mem::transmute(ev) };
        let mut expect = [0u8; 64];
        expect[2] = 1;
        assert_eq!(bytes, expect);
    }

    #[cfg(feature = "kvm")]
    #[test]
    fn errors_on_non_kvm_fds() {
        let f = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: deliberately not a vCPU fd: /dev/null's driver rejects
        // every ioctl with ENOTTY without touching memory.
        let e = unsafe { inject_ext_dabt(&f) }.unwrap_err();
        assert!(
            matches!(e, InjectError::SetVcpuEvents { source } if source.errno() == libc::ENOTTY),
            "{e}"
        );
        assert!(e.to_string().contains("KVM_SET_VCPU_EVENTS"), "{e}");
    }
}
