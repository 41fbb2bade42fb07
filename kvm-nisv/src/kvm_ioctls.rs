// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Glue for rust-vmm's kvm-ioctls (feature `kvm-ioctls`, on by default).
//!
//! Everything here calls kvm-ioctls' own methods, so it is safe: the types
//! guarantee that the fds are KVM fds of the right kind.
//!
//! | what | how |
//! | --- | --- |
//! | probe the capabilities on `Kvm` or `VmFd` | [`KvmNisvCaps`], over `check_extension_raw` |
//! | enable `KVM_CAP_ARM_NISV_TO_USER` | [`VmFdNisvExt::enable_nisv_to_user`], over `VmFd::enable_cap` |
//! | inject an external data abort | [`ExtDabtInjector`], over `VcpuFd::set_vcpu_events` |
//! | registers for the emulator and the walker | [`VcpuRegs`] for `VcpuFd` and `&VcpuFd`, over `get_one_reg`/`set_one_reg` |
//! | the exit | `NisvExit::from_vcpu` for `VcpuExit::Unsupported(28)`, and [`KvmRunView`] for kvm-bindings' `kvm_run` |
//!
//! The same calls on raw file descriptors, for VMMs without kvm-ioctls, are
//! the `unsafe fn`s of [`crate::cap`], [`crate::inject`] and
//! [`crate::one_reg::RawVcpuFd`] (feature `kvm`).
//!
//! ```no_run
//! use kvm_ioctls::Kvm;
//! use kvm_nisv::kvm_ioctls::{KvmNisvCaps, VmFdNisvExt};
//!
//! let kvm = Kvm::new()?;
//! let vm = kvm.create_vm()?;
//! println!("{:?}", vm.nisv_support()?);
//! vm.enable_nisv_to_user()?; // KVM_EXIT_ARM_NISV instead of ENOSYS
//! let injector = vm.ext_dabt_injector()?; // for accesses nothing backs
//! # let _ = injector;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use ::kvm_ioctls::{Kvm, VcpuFd, VmFd};
use kvm_bindings::kvm_enable_cap;

use crate::cap::{self, Cap, CapError, Support};
use crate::errno::Errno;
use crate::exit::{KvmRunView, NisvExit};
use crate::inject::InjectError;
use crate::one_reg;
use crate::regs::{Reg, RegError, VcpuRegs};

/// `KVM_CHECK_EXTENSION` for this crate's capabilities on kvm-ioctls' system
/// (`Kvm`) and VM (`VmFd`) fds.
///
/// On a VM fd the answer can depend on the VM (`KVM_CAP_CHECK_EXTENSION_VM`);
/// prefer it.
pub trait KvmNisvCaps {
    /// The kernel's value for `cap`: 0 if absent, positive (1 for both NISV
    /// capabilities) if present.
    fn check_nisv_cap(&self, cap: Cap) -> Result<i32, CapError>;

    /// Fail with [`CapError::Missing`] unless `cap` is present.
    fn require_nisv_cap(&self, cap: Cap) -> Result<(), CapError> {
        cap::require_result(self.check_nisv_cap(cap)?, cap)
    }

    /// Probe both capabilities.
    fn nisv_support(&self) -> Result<Support, CapError> {
        Support::from_check(|c| self.check_nisv_cap(c))
    }
}

impl KvmNisvCaps for Kvm {
    fn check_nisv_cap(&self, cap: Cap) -> Result<i32, CapError> {
        cap::check_result(self.check_extension_raw(cap.number().into()), cap)
    }
}

impl KvmNisvCaps for VmFd {
    fn check_nisv_cap(&self, cap: Cap) -> Result<i32, CapError> {
        cap::check_result(self.check_extension_raw(cap.number().into()), cap)
    }
}

/// NISV set-up on kvm-ioctls' `VmFd`.
pub trait VmFdNisvExt {
    /// Enable `KVM_CAP_ARM_NISV_TO_USER` (`KVM_ENABLE_CAP`) so that data
    /// aborts without a valid syndrome exit with `KVM_EXIT_ARM_NISV` instead
    /// of failing `KVM_RUN` with `ENOSYS`.
    ///
    /// Checks the capability first so that an old kernel gives
    /// [`CapError::Missing`] rather than a bare `EINVAL`. Enabling twice is
    /// harmless (the kernel sets a flag); it cannot be disabled.
    fn enable_nisv_to_user(&self) -> Result<(), CapError>;

    /// Enable `KVM_CAP_ARM_SEA_TO_USER` (Linux 7.2+): synchronous external
    /// aborts the host does not own exit with `KVM_EXIT_ARM_SEA`
    /// ([`crate::exit::SeaExit`]) instead of KVM injecting them. Checks the
    /// capability first ([`CapError::Missing`] on 6.12 and older).
    fn enable_sea_to_user(&self) -> Result<(), CapError>;

    /// [`ExtDabtInjector::new`] on this VM.
    fn ext_dabt_injector(&self) -> Result<ExtDabtInjector, CapError>;
}

/// `KVM_ENABLE_CAP` of a capability without arguments, after checking it.
fn enable(vm: &VmFd, cap: Cap) -> Result<(), CapError> {
    vm.require_nisv_cap(cap)?;
    let arg = kvm_enable_cap {
        cap: cap.number(),
        ..Default::default()
    };
    vm.enable_cap(&arg).map_err(|e| CapError::Ioctl {
        op: "KVM_ENABLE_CAP",
        cap,
        source: e.into(),
    })
}

impl VmFdNisvExt for VmFd {
    fn enable_nisv_to_user(&self) -> Result<(), CapError> {
        enable(self, Cap::ArmNisvToUser)
    }

    fn enable_sea_to_user(&self) -> Result<(), CapError> {
        enable(self, Cap::ArmSeaToUser)
    }

    fn ext_dabt_injector(&self) -> Result<ExtDabtInjector, CapError> {
        ExtDabtInjector::new(self)
    }
}

/// Proof that the kernel supports `KVM_CAP_ARM_INJECT_EXT_DABT`; injects
/// external data aborts into vCPUs (see [`crate::inject`] for what the guest
/// sees).
///
/// The capability exists on KVM/arm64 only: on other architectures
/// [`ExtDabtInjector::new`] always fails with [`CapError::Missing`].
#[derive(Clone, Copy, Debug)]
pub struct ExtDabtInjector {
    #[cfg(target_arch = "aarch64")]
    _checked: (),
    #[cfg(not(target_arch = "aarch64"))]
    never: core::convert::Infallible,
}

impl ExtDabtInjector {
    /// Check the capability on a VM (or the `/dev/kvm`) fd.
    ///
    /// Fails with [`CapError::Missing`] naming `KVM_CAP_ARM_INJECT_EXT_DABT`
    /// and Linux 5.5 if the kernel lacks it.
    pub fn new<C: KvmNisvCaps + ?Sized>(kvm_or_vm: &C) -> Result<Self, CapError> {
        let cap = Cap::ArmInjectExtDabt;
        kvm_or_vm.require_nisv_cap(cap)?;
        #[cfg(target_arch = "aarch64")]
        return Ok(ExtDabtInjector { _checked: () });
        #[cfg(not(target_arch = "aarch64"))]
        return Err(CapError::Missing { cap });
    }

    /// Make an external data abort pending on `vcpu`; the guest takes it on
    /// the next `KVM_RUN`. Call it right after the exit that reported the
    /// access: the kernel reports the address of the last abort.
    pub fn inject(&self, vcpu: &VcpuFd) -> Result<(), InjectError> {
        #[cfg(target_arch = "aarch64")]
        {
            let mut events = kvm_bindings::kvm_vcpu_events::default();
            events.exception.ext_dabt_pending = 1;
            vcpu.set_vcpu_events(&events)
                .map_err(|e| InjectError::SetVcpuEvents { source: e.into() })
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            let _ = vcpu;
            match self.never {}
        }
    }
}

/// One `KVM_GET_ONE_REG` through kvm-ioctls.
fn get_one(vcpu: &VcpuFd, id: u64, buf: &mut [u8]) -> Result<(), Errno> {
    vcpu.get_one_reg(id, buf).map(drop).map_err(Errno::from)
}

/// One `KVM_SET_ONE_REG` through kvm-ioctls.
fn set_one(vcpu: &VcpuFd, id: u64, buf: &[u8]) -> Result<(), Errno> {
    vcpu.set_one_reg(id, buf).map(drop).map_err(Errno::from)
}

/// Registers of a kvm-ioctls vCPU: one `KVM_GET_ONE_REG`/`KVM_SET_ONE_REG`
/// per call, with the ids of [`crate::one_reg`].
impl VcpuRegs for &VcpuFd {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        one_reg::get64_with(reg, |id, b| get_one(self, id, b))
    }
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        one_reg::set64_with(reg, value, |id, b| set_one(self, id, b))
    }
    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        one_reg::get128_with(n, |id, b| get_one(self, id, b))
    }
    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        one_reg::set128_with(n, value, |id, b| set_one(self, id, b))
    }
}

/// As for `&VcpuFd` (kvm-ioctls' register calls take `&self`).
impl VcpuRegs for VcpuFd {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        (&*self).get(reg)
    }
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        (&*self).set(reg, value)
    }
    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        (&*self).get_v(n)
    }
    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        (&*self).set_v(n, value)
    }
}

impl KvmRunView for kvm_bindings::kvm_run {
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

    fn arm_sea_raw(&self) -> Option<[u64; 4]> {
        // kvm-bindings 0.14 predates `arm_sea`; read the same bytes (the first 32
        // of the exit union, which the kernel's `arm_sea` occupies) through the
        // union's `padding` member.
        // SAFETY: `padding` is a c_char array member of the exit union; every bit
        // pattern is a valid value.
        let pad = unsafe { self.__bindgen_anon_1.padding };
        let mut words = [0u64; 4];
        for (i, w) in words.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            for (j, byte) in b.iter_mut().enumerate() {
                // c_char is i8 on x86_64 and u8 on aarch64.
                *byte = pad[i * 8 + j].to_ne_bytes()[0];
            }
            *w = u64::from_ne_bytes(b);
        }
        Some(words)
    }
}

impl NisvExit {
    /// The exit from a kvm-ioctls vCPU whose `run()` just returned
    /// `VcpuExit::Unsupported(28)` (reads the mapped `kvm_run`); `None` if
    /// the last exit was another one.
    pub fn from_vcpu(vcpu: &mut VcpuFd) -> Option<Self> {
        Self::from_kvm_run(vcpu.get_kvm_run())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_hand_built_kvm_bindings_kvm_run() {
        let mut run = kvm_bindings::kvm_run {
            exit_reason: 28,
            ..Default::default()
        };
        run.__bindgen_anon_1.arm_nisv.esr_iss = 0x5;
        run.__bindgen_anon_1.arm_nisv.fault_ipa = 0x1000_0000;
        let e = NisvExit::from_kvm_run(&run).unwrap();
        assert!(!e.is_write());
        assert_eq!(e.fault_ipa, 0x1000_0000);
        // The payload sits at offset 32 of kvm_run, after the 32-byte header,
        // as in the kernel's struct (union at offset 32).
        let base = core::ptr::addr_of!(run) as usize;
        let field = core::ptr::addr_of!(run.__bindgen_anon_1.arm_nisv) as usize;
        assert_eq!(field - base, 32);
        run.exit_reason = 6; // KVM_EXIT_MMIO
        assert_eq!(NisvExit::from_kvm_run(&run), None);
    }

    #[test]
    fn kvm_bindings_and_sys_agree_on_the_ioctl_arguments() {
        // The raw-fd path builds kvm-nisv-sys' structs, this module
        // kvm-bindings': same sizes, same bytes.
        assert_eq!(
            core::mem::size_of::<kvm_enable_cap>(),
            core::mem::size_of::<kvm_nisv_sys::kvm_enable_cap>()
        );
        #[cfg(target_arch = "aarch64")]
        {
            let mut events = kvm_bindings::kvm_vcpu_events::default();
            events.exception.ext_dabt_pending = 1;
            // SAFETY: both are plain repr(C) data of 64 bytes without padding.
            let ours: [u8; 64] = unsafe { core::mem::transmute(crate::inject::ext_dabt_events()) };
            // SAFETY: as above.
            let theirs: [u8; 64] = unsafe { core::mem::transmute(events) };
            assert_eq!(ours, theirs);
        }
    }
}
