// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! KVM ioctl request numbers (hand-written, feature `ioctls`).
//!
//! bindgen cannot evaluate `_IO()`/`_IOW()`/... so these are built with
//! vmm-sys-util's `ioctl_*_nr!` macros from the generated `KVMIO` and the generated
//! argument types, as kvm-ioctls does. The arm64 `_IOC` encoding is the generic one
//! (`include/uapi/asm-generic/ioctl.h`) and the argument sizes are the arm64 layouts,
//! so the numbers are arm64's on any host. Each one is tested against the value
//! libclang computed from the real macro for `aarch64-unknown-linux-gnu` (the
//! `ioctl:*` items of `tests/fixtures/linux-*.txt`).
//!
//! Each item is a function returning the request as `c_ulong` (the type of glibc's
//! `ioctl()` request argument; musl's is `c_int`, so cast there).

use std::os::raw::c_ulong;

use super::bindings::{
    KVMIO, kvm_create_device, kvm_device_attr, kvm_enable_cap, kvm_irq_level, kvm_irqfd,
    kvm_one_reg, kvm_reg_list, kvm_userspace_memory_region, kvm_vcpu_events, kvm_vcpu_init,
};

/// The raw vmm-sys-util expansions; re-exported below with documentation.
#[allow(missing_docs)]
mod nr {
    use super::*;
    use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};

    ioctl_io_nr!(KVM_GET_API_VERSION, KVMIO, 0x00);
    ioctl_io_nr!(KVM_CREATE_VM, KVMIO, 0x01);
    ioctl_io_nr!(KVM_CHECK_EXTENSION, KVMIO, 0x03);
    ioctl_io_nr!(KVM_GET_VCPU_MMAP_SIZE, KVMIO, 0x04);
    ioctl_io_nr!(KVM_CREATE_VCPU, KVMIO, 0x41);
    ioctl_iow_nr!(
        KVM_SET_USER_MEMORY_REGION,
        KVMIO,
        0x46,
        kvm_userspace_memory_region
    );
    ioctl_iow_nr!(KVM_IRQ_LINE, KVMIO, 0x61, kvm_irq_level);
    ioctl_iow_nr!(KVM_IRQFD, KVMIO, 0x76, kvm_irqfd);
    ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
    ioctl_ior_nr!(KVM_GET_VCPU_EVENTS, KVMIO, 0x9f, kvm_vcpu_events);
    ioctl_iow_nr!(KVM_SET_VCPU_EVENTS, KVMIO, 0xa0, kvm_vcpu_events);
    ioctl_iow_nr!(KVM_ENABLE_CAP, KVMIO, 0xa3, kvm_enable_cap);
    ioctl_iow_nr!(KVM_GET_ONE_REG, KVMIO, 0xab, kvm_one_reg);
    ioctl_iow_nr!(KVM_SET_ONE_REG, KVMIO, 0xac, kvm_one_reg);
    ioctl_iow_nr!(KVM_ARM_VCPU_INIT, KVMIO, 0xae, kvm_vcpu_init);
    ioctl_ior_nr!(KVM_ARM_PREFERRED_TARGET, KVMIO, 0xaf, kvm_vcpu_init);
    ioctl_iowr_nr!(KVM_GET_REG_LIST, KVMIO, 0xb0, kvm_reg_list);
    ioctl_iowr_nr!(KVM_CREATE_DEVICE, KVMIO, 0xe0, kvm_create_device);
    ioctl_iow_nr!(KVM_SET_DEVICE_ATTR, KVMIO, 0xe1, kvm_device_attr);
    ioctl_iow_nr!(KVM_GET_DEVICE_ATTR, KVMIO, 0xe2, kvm_device_attr);
}

macro_rules! documented {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $(
            $(#[$doc])*
            #[allow(non_snake_case)]
            #[inline]
            pub fn $name() -> c_ulong {
                nr::$name()
            }
        )*
        /// Every request number in this module with its C name, for table-driven
        /// checks and diagnostics.
        pub fn all_ioctls() -> [(&'static str, c_ulong); [$(stringify!($name)),*].len()] {
            [$((stringify!($name), $name())),*]
        }
    };
}

documented! {
    /// `_IO(KVMIO, 0x00)` on `/dev/kvm`: returns `KVM_API_VERSION` (12).
    KVM_GET_API_VERSION;
    /// `_IO(KVMIO, 0x01)` on `/dev/kvm`: creates a VM; the argument is the IPA size/type.
    KVM_CREATE_VM;
    /// `_IO(KVMIO, 0x03)` on `/dev/kvm` or a VM fd: queries a `KVM_CAP_*`
    /// (e.g. `KVM_CAP_ARM_NISV_TO_USER`).
    KVM_CHECK_EXTENSION;
    /// `_IO(KVMIO, 0x04)` on `/dev/kvm`: size of the vCPU `mmap` (the `kvm_run` area).
    KVM_GET_VCPU_MMAP_SIZE;
    /// `_IO(KVMIO, 0x41)` on a VM fd: creates a vCPU.
    KVM_CREATE_VCPU;
    /// `_IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)` on a VM fd.
    KVM_SET_USER_MEMORY_REGION;
    /// `_IOW(KVMIO, 0x61, struct kvm_irq_level)` on a VM fd (arm64 `irq` encoding:
    /// `KVM_ARM_IRQ_TYPE_*`).
    KVM_IRQ_LINE;
    /// `_IOW(KVMIO, 0x76, struct kvm_irqfd)` on a VM fd.
    KVM_IRQFD;
    /// `_IO(KVMIO, 0x80)` on a vCPU fd: runs the vCPU until an exit
    /// (`kvm_run.exit_reason`, e.g. `KVM_EXIT_ARM_NISV`).
    KVM_RUN;
    /// `_IOR(KVMIO, 0x9f, struct kvm_vcpu_events)` on a vCPU fd.
    KVM_GET_VCPU_EVENTS;
    /// `_IOW(KVMIO, 0xa0, struct kvm_vcpu_events)` on a vCPU fd: with
    /// `exception.ext_dabt_pending = 1` injects an external data abort
    /// (`KVM_CAP_ARM_INJECT_EXT_DABT`).
    KVM_SET_VCPU_EVENTS;
    /// `_IOW(KVMIO, 0xa3, struct kvm_enable_cap)` on a VM fd: e.g. enables
    /// `KVM_CAP_ARM_NISV_TO_USER`.
    KVM_ENABLE_CAP;
    /// `_IOW(KVMIO, 0xab, struct kvm_one_reg)` on a vCPU fd (direction as in the
    /// header: the struct is written, the value goes through `addr`).
    KVM_GET_ONE_REG;
    /// `_IOW(KVMIO, 0xac, struct kvm_one_reg)` on a vCPU fd.
    KVM_SET_ONE_REG;
    /// `_IOW(KVMIO, 0xae, struct kvm_vcpu_init)` on a vCPU fd.
    KVM_ARM_VCPU_INIT;
    /// `_IOR(KVMIO, 0xaf, struct kvm_vcpu_init)` on a VM fd.
    KVM_ARM_PREFERRED_TARGET;
    /// `_IOWR(KVMIO, 0xb0, struct kvm_reg_list)` on a vCPU fd.
    KVM_GET_REG_LIST;
    /// `_IOWR(KVMIO, 0xe0, struct kvm_create_device)` on a VM fd (e.g. the vGICv3).
    KVM_CREATE_DEVICE;
    /// `_IOW(KVMIO, 0xe1, struct kvm_device_attr)` on a device/VM/vCPU fd.
    KVM_SET_DEVICE_ATTR;
    /// `_IOW(KVMIO, 0xe2, struct kvm_device_attr)` on a device/VM/vCPU fd.
    KVM_GET_DEVICE_ATTR;
}
