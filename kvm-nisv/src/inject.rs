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
//! The capability cannot be checked on a vCPU fd, so [`ExtDabtInjector`] is
//! created from a VM (or `/dev/kvm`) fd once and then used on vCPU fds.

use std::os::fd::AsRawFd;

use thiserror::Error;
use vmm_sys_util::errno;
use vmm_sys_util::ioctl::ioctl_with_ref;

use crate::cap::{self, Cap, CapError};
use kvm_nisv_sys as sys;

/// Errors from abort injection.
#[derive(Debug, Error)]
pub enum InjectError {
    /// The capability is missing (or could not be probed).
    #[error(transparent)]
    Cap(#[from] CapError),
    /// `KVM_SET_VCPU_EVENTS` failed.
    #[error("KVM_SET_VCPU_EVENTS (ext_dabt_pending) failed: {0}")]
    SetVcpuEvents(#[source] errno::Error),
}

/// Proof that the kernel supports `KVM_CAP_ARM_INJECT_EXT_DABT`; injects
/// external data aborts into vCPUs.
#[derive(Clone, Copy, Debug)]
pub struct ExtDabtInjector {
    _checked: (),
}

impl ExtDabtInjector {
    /// Check the capability on a VM fd (or the `/dev/kvm` fd).
    ///
    /// Fails with [`CapError::Missing`] naming `KVM_CAP_ARM_INJECT_EXT_DABT`
    /// and Linux 5.5 if the kernel lacks it.
    pub fn new<F: AsRawFd + ?Sized>(vm: &F) -> Result<Self, CapError> {
        cap::require(vm, Cap::ArmInjectExtDabt)?;
        Ok(ExtDabtInjector { _checked: () })
    }

    /// Make an external data abort pending on `vcpu` (a vCPU fd, e.g. a
    /// kvm-ioctls `VcpuFd`). The guest takes it on the next `KVM_RUN`.
    pub fn inject<V: AsRawFd + ?Sized>(&self, vcpu: &V) -> Result<(), InjectError> {
        let mut events = sys::kvm_vcpu_events::default();
        events.exception.ext_dabt_pending = 1;
        // SAFETY: the kernel reads exactly size_of::<kvm_vcpu_events>() (64)
        // bytes from `events`, which outlives the call.
        let ret = unsafe { ioctl_with_ref(&vcpu.as_raw_fd(), sys::KVM_SET_VCPU_EVENTS(), &events) };
        if ret < 0 {
            return Err(InjectError::SetVcpuEvents(errno::Error::last()));
        }
        Ok(())
    }
}

/// Check the capability on `vm` and inject an external data abort into
/// `vcpu` (one extra `KVM_CHECK_EXTENSION` per call; keep an
/// [`ExtDabtInjector`] to avoid it).
pub fn inject_ext_dabt<F: AsRawFd + ?Sized, V: AsRawFd + ?Sized>(
    vm: &F,
    vcpu: &V,
) -> Result<(), InjectError> {
    ExtDabtInjector::new(vm)?.inject(vcpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_layout_puts_ext_dabt_pending_at_byte_2() {
        let mut ev = sys::kvm_vcpu_events::default();
        ev.exception.ext_dabt_pending = 1;
        // SAFETY: kvm_vcpu_events is plain repr(C) data without padding
        // bytes (the explicit pad fields cover the holes), 64 bytes long.
        let bytes: [u8; 64] = unsafe { std::mem::transmute(ev) };
        let mut expect = [0u8; 64];
        expect[2] = 1;
        assert_eq!(bytes, expect);
    }

    #[test]
    fn errors_on_non_kvm_fds() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = ExtDabtInjector::new(&f).unwrap_err();
        assert!(matches!(e, CapError::Ioctl { .. }), "{e}");
        let e = inject_ext_dabt(&f, &f).unwrap_err();
        assert!(e.to_string().contains("KVM_CAP_ARM_INJECT_EXT_DABT"), "{e}");
        // The vCPU ioctl itself fails cleanly on a non-vCPU fd.
        let inj = ExtDabtInjector { _checked: () };
        let e = inj.inject(&f).unwrap_err();
        assert!(matches!(e, InjectError::SetVcpuEvents(_)), "{e}");
    }
}
