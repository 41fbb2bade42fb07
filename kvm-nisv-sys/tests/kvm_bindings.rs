// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Cross-check with rust-vmm's `kvm-bindings` (0.14.x, arm64 module), so a VMM that
//! mixes the two crates (e.g. hands a `kvm_bindings::kvm_run` to kvm-nisv) is safe.
//!
//! kvm-bindings compiles its arm64 module only for arm/aarch64 targets, so this file
//! exists only there: run it with
//! `cargo test -p kvm-nisv-sys --target aarch64-unknown-linux-musl` (on x86_64 with
//! `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64` from Debian's
//! `qemu-user`), or natively on an arm64 machine.

#![cfg(target_arch = "aarch64")]
#![allow(clippy::undocumented_unsafe_blocks)]

use std::mem::{offset_of, size_of};

use kvm_bindings as kb;
use kvm_nisv_sys as ks;

/// Compares constants by name; collects every mismatch.
macro_rules! same_consts {
    ($errs:ident, $($name:ident),+ $(,)?) => {
        $(
            let (a, b) = (ks::$name as u64, kb::$name as u64);
            if a != b {
                $errs.push(format!("{}: kvm-nisv-sys {a:#x}, kvm-bindings {b:#x}", stringify!($name)));
            }
        )+
    };
}

/// Compares the size of a type and the offsets of the given field paths.
macro_rules! same_layout {
    ($errs:ident, $ty:ident { $($($p:ident).+),* $(,)? }) => {
        let (a, b) = (size_of::<ks::$ty>(), size_of::<kb::$ty>());
        if a != b {
            $errs.push(format!("size_of::<{}>: {a} vs {b}", stringify!($ty)));
        }
        $(
            let (a, b) = (offset_of!(ks::$ty, $($p).+), offset_of!(kb::$ty, $($p).+));
            if a != b {
                $errs.push(format!(
                    "offset_of!({}, {}): {a} vs {b}",
                    stringify!($ty),
                    stringify!($($p).+)
                ));
            }
        )*
    };
}

#[test]
fn constants_agree_with_kvm_bindings() {
    let mut errs = Vec::new();
    same_consts!(
        errs,
        KVM_EXIT_UNKNOWN,
        KVM_EXIT_EXCEPTION,
        KVM_EXIT_IO,
        KVM_EXIT_HYPERCALL,
        KVM_EXIT_DEBUG,
        KVM_EXIT_HLT,
        KVM_EXIT_MMIO,
        KVM_EXIT_IRQ_WINDOW_OPEN,
        KVM_EXIT_SHUTDOWN,
        KVM_EXIT_FAIL_ENTRY,
        KVM_EXIT_INTR,
        KVM_EXIT_SET_TPR,
        KVM_EXIT_TPR_ACCESS,
        KVM_EXIT_S390_SIEIC,
        KVM_EXIT_S390_RESET,
        KVM_EXIT_DCR,
        KVM_EXIT_NMI,
        KVM_EXIT_INTERNAL_ERROR,
        KVM_EXIT_OSI,
        KVM_EXIT_PAPR_HCALL,
        KVM_EXIT_S390_UCONTROL,
        KVM_EXIT_WATCHDOG,
        KVM_EXIT_S390_TSCH,
        KVM_EXIT_EPR,
        KVM_EXIT_SYSTEM_EVENT,
        KVM_EXIT_S390_STSI,
        KVM_EXIT_IOAPIC_EOI,
        KVM_EXIT_HYPERV,
        KVM_EXIT_ARM_NISV,
        KVM_EXIT_X86_RDMSR,
        KVM_EXIT_X86_WRMSR,
        KVM_EXIT_DIRTY_RING_FULL,
        KVM_EXIT_AP_RESET_HOLD,
        KVM_EXIT_X86_BUS_LOCK,
        KVM_EXIT_XEN,
        KVM_EXIT_RISCV_SBI,
        KVM_EXIT_RISCV_CSR,
        KVM_EXIT_NOTIFY,
        KVM_EXIT_LOONGARCH_IOCSR,
        KVM_EXIT_MEMORY_FAULT,
    );
    same_consts!(
        errs,
        KVM_CAP_ARM_PSCI,
        KVM_CAP_ARM_SET_DEVICE_ADDR,
        KVM_CAP_ARM_EL1_32BIT,
        KVM_CAP_ARM_PSCI_0_2,
        KVM_CAP_ARM_PMU_V3,
        KVM_CAP_ARM_USER_IRQ,
        KVM_CAP_ARM_INJECT_SERROR_ESR,
        KVM_CAP_ARM_VM_IPA_SIZE,
        KVM_CAP_ARM_SVE,
        KVM_CAP_ARM_PTRAUTH_ADDRESS,
        KVM_CAP_ARM_PTRAUTH_GENERIC,
        KVM_CAP_ARM_IRQ_LINE_LAYOUT_2,
        KVM_CAP_ARM_NISV_TO_USER,
        KVM_CAP_ARM_INJECT_EXT_DABT,
        KVM_CAP_ARM_MTE,
        KVM_CAP_ARM_SYSTEM_SUSPEND,
        KVM_CAP_ARM_EAGER_SPLIT_CHUNK_SIZE,
        KVM_CAP_ARM_SUPPORTED_BLOCK_SIZES,
        KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES,
        KVM_CAP_USER_MEMORY,
        KVM_CAP_SET_GUEST_DEBUG,
        KVM_CAP_VCPU_EVENTS,
        KVM_CAP_IRQFD,
        KVM_CAP_ONE_REG,
        KVM_CAP_READONLY_MEM,
        KVM_CAP_DEVICE_CTRL,
        KVM_CAP_IMMEDIATE_EXIT,
    );
    same_consts!(
        errs,
        KVMIO,
        KVM_API_VERSION,
        KVM_ARM_VCPU_POWER_OFF,
        KVM_ARM_VCPU_EL1_32BIT,
        KVM_ARM_VCPU_PSCI_0_2,
        KVM_ARM_VCPU_PMU_V3,
        KVM_ARM_VCPU_SVE,
        KVM_ARM_VCPU_PTRAUTH_ADDRESS,
        KVM_ARM_VCPU_PTRAUTH_GENERIC,
        KVM_ARM_VCPU_HAS_EL2,
        KVM_SYSTEM_EVENT_SHUTDOWN,
        KVM_SYSTEM_EVENT_RESET,
        KVM_SYSTEM_EVENT_CRASH,
        KVM_SYSTEM_EVENT_WAKEUP,
        KVM_SYSTEM_EVENT_SUSPEND,
        KVM_SYSTEM_EVENT_SEV_TERM,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        KVM_DEV_ARM_VGIC_GRP_DIST_REGS,
        KVM_DEV_ARM_VGIC_GRP_CPU_REGS,
        KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
        KVM_DEV_ARM_VGIC_GRP_CTRL,
        KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
        KVM_DEV_ARM_VGIC_CTRL_INIT,
        KVM_VGIC_V3_ADDR_TYPE_DIST,
        KVM_VGIC_V3_ADDR_TYPE_REDIST,
        KVM_ARM_IRQ_TYPE_SHIFT,
        KVM_ARM_IRQ_TYPE_SPI,
        KVM_ARM_IRQ_TYPE_PPI,
        KVM_ARM_IRQ_VCPU_SHIFT,
        KVM_ARM_IRQ_NUM_SHIFT,
        KVM_MEM_LOG_DIRTY_PAGES,
        KVM_MEM_READONLY,
        KVM_IRQFD_FLAG_DEASSIGN,
        KVM_REG_ARM64,
        KVM_REG_SIZE_SHIFT,
        KVM_REG_SIZE_MASK,
        KVM_REG_SIZE_U8,
        KVM_REG_SIZE_U16,
        KVM_REG_SIZE_U32,
        KVM_REG_SIZE_U64,
        KVM_REG_SIZE_U128,
        KVM_REG_SIZE_U256,
        KVM_REG_SIZE_U512,
        KVM_REG_SIZE_U1024,
        KVM_REG_SIZE_U2048,
        KVM_REG_ARM_COPROC_MASK,
        KVM_REG_ARM_COPROC_SHIFT,
        KVM_REG_ARM_CORE,
        KVM_REG_ARM64_SYSREG,
        KVM_REG_ARM64_SYSREG_OP0_MASK,
        KVM_REG_ARM64_SYSREG_OP0_SHIFT,
        KVM_REG_ARM64_SYSREG_OP1_MASK,
        KVM_REG_ARM64_SYSREG_OP1_SHIFT,
        KVM_REG_ARM64_SYSREG_CRN_MASK,
        KVM_REG_ARM64_SYSREG_CRN_SHIFT,
        KVM_REG_ARM64_SYSREG_CRM_MASK,
        KVM_REG_ARM64_SYSREG_CRM_SHIFT,
        KVM_REG_ARM64_SYSREG_OP2_MASK,
        KVM_REG_ARM64_SYSREG_OP2_SHIFT,
        kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
    );
    assert!(errs.is_empty(), "constants differ:\n{}", errs.join("\n"));
}

#[test]
fn layouts_agree_with_kvm_bindings() {
    let mut errs = Vec::new();
    same_layout!(errs, kvm_run {
        request_interrupt_window,
        immediate_exit,
        exit_reason,
        ready_for_interrupt_injection,
        if_flag,
        flags,
        cr8,
        apic_base,
        __bindgen_anon_1,
        __bindgen_anon_1.mmio,
        __bindgen_anon_1.mmio.phys_addr,
        __bindgen_anon_1.mmio.data,
        __bindgen_anon_1.mmio.len,
        __bindgen_anon_1.mmio.is_write,
        __bindgen_anon_1.arm_nisv,
        __bindgen_anon_1.arm_nisv.esr_iss,
        __bindgen_anon_1.arm_nisv.fault_ipa,
        __bindgen_anon_1.system_event.type_,
        __bindgen_anon_1.system_event.ndata,
        __bindgen_anon_1.internal.suberror,
        __bindgen_anon_1.fail_entry.hardware_entry_failure_reason,
        kvm_valid_regs,
        kvm_dirty_regs,
        s,
    });
    same_layout!(errs, kvm_vcpu_events {
        exception,
        exception.serror_pending,
        exception.serror_has_esr,
        exception.ext_dabt_pending,
        exception.pad,
        exception.serror_esr,
        reserved,
    });
    same_layout!(
        errs,
        kvm_enable_cap {
            cap,
            flags,
            args,
            pad
        }
    );
    same_layout!(errs, kvm_one_reg { id, addr });
    same_layout!(errs, kvm_vcpu_init { target, features });
    same_layout!(
        errs,
        kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr,
            memory_size,
            userspace_addr,
        }
    );
    same_layout!(
        errs,
        kvm_device_attr {
            flags,
            group,
            attr,
            addr
        }
    );
    same_layout!(errs, kvm_create_device { type_, fd, flags });
    same_layout!(errs, kvm_irq_level { level });
    same_layout!(
        errs,
        kvm_irqfd {
            fd,
            gsi,
            flags,
            resamplefd,
            pad
        }
    );
    same_layout!(
        errs,
        user_pt_regs {
            regs,
            sp,
            pc,
            pstate
        }
    );
    same_layout!(errs, user_fpsimd_state { vregs, fpsr, fpcr });
    same_layout!(
        errs,
        kvm_regs {
            regs,
            sp_el1,
            elr_el1,
            spsr,
            fp_regs
        }
    );
    assert!(errs.is_empty(), "layouts differ:\n{}", errs.join("\n"));
}

#[test]
fn a_kvm_bindings_kvm_run_reads_the_same_through_kvm_nisv_sys() {
    let mut theirs = kb::kvm_run {
        exit_reason: kb::KVM_EXIT_ARM_NISV,
        ..Default::default()
    };
    theirs.__bindgen_anon_1.arm_nisv.esr_iss = 0x45;
    theirs.__bindgen_anon_1.arm_nisv.fault_ipa = 0x1000_0123;
    // SAFETY: both are repr(C) plain-data types of the same size (checked in
    // layouts_agree_with_kvm_bindings; transmute_copy reads size_of::<ks::kvm_run>()
    // bytes, which the assertion below also checks).
    assert_eq!(size_of::<kb::kvm_run>(), size_of::<ks::kvm_run>());
    let ours: ks::kvm_run = unsafe { std::mem::transmute_copy(&theirs) };
    assert_eq!(ours.exit_reason, ks::KVM_EXIT_ARM_NISV);
    // SAFETY: exit_reason selects arm_nisv.
    let nisv = unsafe { ours.__bindgen_anon_1.arm_nisv };
    assert_eq!((nisv.esr_iss, nisv.fault_ipa), (0x45, 0x1000_0123));
}
