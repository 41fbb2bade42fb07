// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The cross-version ABI guarantee.
//!
//! `tests/fixtures/linux-<version>.txt` are written by `gen/` from each kernel's
//! uapi headers (values evaluated by libclang for aarch64). These tests check that
//! (1) every item is identical in every header version, and (2) the public bindings
//! (generated from the newest headers) and the hand-written helpers produce exactly
//! the fixture values, measured with `size_of`/`offset_of!` on the real Rust types.

#![allow(clippy::undocumented_unsafe_blocks)]

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

use kvm_nisv_sys::*;

/// (version label, fixture text), oldest first.
const FIXTURES: &[(&str, &str)] = &[
    ("6.1", include_str!("fixtures/linux-6.1.txt")),
    ("6.12", include_str!("fixtures/linux-6.12.txt")),
];

const NEWEST: &str = include_str!("fixtures/linux-6.12.txt");

fn parse(text: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut items = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("line {}: `{line}` is not `item value`", n + 1))?;
        let value = match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse(),
        }
        .map_err(|e| format!("line {}: `{line}`: {e}", n + 1))?;
        if items.insert(name.to_string(), value).is_some() {
            return Err(format!("line {}: duplicate item `{name}`", n + 1));
        }
    }
    Ok(items)
}

/// A readable list of the differences between two item maps (empty if equal).
fn diff(
    a_name: &str,
    a: &BTreeMap<String, u64>,
    b_name: &str,
    b: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, va) in a {
        match b.get(k) {
            None => out.push(format!("  {k}: {a_name} = {va:#x}, missing in {b_name}")),
            Some(vb) if vb != va => out.push(format!(
                "  {k}: {a_name} = {va} ({va:#x}), {b_name} = {vb} ({vb:#x})"
            )),
            Some(_) => {}
        }
    }
    for (k, vb) in b {
        if !a.contains_key(k) {
            out.push(format!("  {k}: missing in {a_name}, {b_name} = {vb:#x}"));
        }
    }
    out
}

#[test]
fn diff_reports_every_kind_of_difference() {
    let a = parse("x 1\ny 0x10\nz 3\n").unwrap();
    let b = parse("# comment\nx 1\ny 17\nw 4\n").unwrap();
    let d = diff("A", &a, "B", &b);
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(
        d.iter()
            .any(|l| l.contains("y: A = 16 (0x10), B = 17 (0x11)"))
    );
    assert!(d.iter().any(|l| l.contains("z: A = 0x3, missing in B")));
    assert!(d.iter().any(|l| l.contains("w: missing in A, B = 0x4")));
    assert!(diff("A", &a, "A", &a).is_empty());
    assert!(parse("x 1\nx 2\n").is_err());
    assert!(parse("novalue\n").is_err());
    assert!(parse("x 0xZZ\n").is_err());
}

#[test]
fn fixtures_are_identical_across_kernel_versions() {
    let parsed: Vec<(&str, BTreeMap<String, u64>)> = FIXTURES
        .iter()
        .map(|(v, text)| {
            (
                *v,
                parse(text).unwrap_or_else(|e| panic!("linux-{v}.txt: {e}")),
            )
        })
        .collect();
    let (base_name, base) = &parsed[0];
    // The fixtures must cover the NISV essentials (a sanity floor, not the full list).
    for key in [
        "KVM_EXIT_ARM_NISV",
        "KVM_CAP_ARM_NISV_TO_USER",
        "KVM_CAP_ARM_INJECT_EXT_DABT",
        "offset:kvm_run.arm_nisv.esr_iss",
        "offset:kvm_run.arm_nisv.fault_ipa",
        "offset:kvm_vcpu_events.exception.ext_dabt_pending",
        "ioctl:KVM_SET_VCPU_EVENTS",
    ] {
        assert!(base.contains_key(key), "fixture lacks {key}");
    }
    let mut report = Vec::new();
    for (name, items) in &parsed[1..] {
        let d = diff(base_name, base, name, items);
        if !d.is_empty() {
            report.push(format!("Linux {base_name} vs {name}:"));
            report.extend(d);
        }
    }
    assert!(
        report.is_empty(),
        "ABI items differ across kernel versions:\n{}",
        report.join("\n")
    );
}

/// Records `offset:` and `size:` of a field path. `$c` is the C path (as in the
/// fixture), `$($p)+` the same path in the bindgen types.
macro_rules! field {
    ($out:ident, $ty:ident, $c:literal, $($p:tt)+) => {{
        $out.push((
            format!("offset:{}.{}", stringify!($ty), $c),
            offset_of!($ty, $($p)+) as u64,
        ));
        $out.push((
            format!("size:{}.{}", stringify!($ty), $c),
            // SAFETY: the closure is never called; it only names the field's type
            // (reading a union field needs `unsafe` even there).
            size_of_target(|v: &$ty| unsafe { &v.$($p)+ }) as u64,
        ));
    }};
}

fn size_of_target<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

macro_rules! consts {
    ($out:ident, $($name:ident),+ $(,)?) => {
        $( $out.push((stringify!($name).to_string(), $name as u64)); )+
    };
}

/// Every fixture item, computed from the public Rust API.
#[allow(unused_unsafe)] // `field!` wraps every path in `unsafe`, needed only for unions.
#[allow(clippy::vec_init_then_push)] // One push per item reads best here.
fn rust_items() -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = Vec::new();
    consts!(
        v,
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
    );
    consts!(
        v,
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
        KVM_CAP_USER_MEMORY,
        KVM_CAP_SET_GUEST_DEBUG,
        KVM_CAP_VCPU_EVENTS,
        KVM_CAP_IRQFD,
        KVM_CAP_ONE_REG,
        KVM_CAP_READONLY_MEM,
        KVM_CAP_DEVICE_CTRL,
        KVM_CAP_IMMEDIATE_EXIT,
    );
    consts!(
        v,
        KVMIO,
        KVM_API_VERSION,
        KVM_ARM_VCPU_POWER_OFF,
        KVM_ARM_VCPU_EL1_32BIT,
        KVM_ARM_VCPU_PSCI_0_2,
        KVM_ARM_VCPU_PMU_V3,
        KVM_ARM_VCPU_SVE,
        KVM_ARM_VCPU_PTRAUTH_ADDRESS,
        KVM_ARM_VCPU_PTRAUTH_GENERIC,
        KVM_SYSTEM_EVENT_SHUTDOWN,
        KVM_SYSTEM_EVENT_RESET,
        KVM_SYSTEM_EVENT_CRASH,
        KVM_SYSTEM_EVENT_WAKEUP,
        KVM_SYSTEM_EVENT_SUSPEND,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        KVM_DEV_ARM_VGIC_GRP_DIST_REGS,
        KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
        KVM_DEV_ARM_VGIC_GRP_CTRL,
        KVM_DEV_ARM_VGIC_GRP_REDIST_REGS,
        KVM_DEV_ARM_VGIC_CTRL_INIT,
        KVM_VGIC_V3_ADDR_TYPE_DIST,
        KVM_VGIC_V3_ADDR_TYPE_REDIST,
        KVM_ARM_IRQ_TYPE_SHIFT,
        KVM_ARM_IRQ_TYPE_SPI,
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
        KVM_REG_ARM_TIMER_CTL,
        KVM_REG_ARM_TIMER_CNT,
        KVM_REG_ARM_TIMER_CVAL,
    );
    v.push((
        "KVM_DEV_TYPE_ARM_VGIC_V3".into(),
        kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3 as u64,
    ));

    // Core register ids from the real struct kvm_regs offsets.
    let core = |name: &str, offset: usize, size: usize| {
        let id = kvm_core_reg_id(offset, size)
            .unwrap_or_else(|| panic!("kvm_core_reg_id refused {name} ({offset}, {size})"));
        (format!("regid:core.{name}"), id)
    };
    let x = offset_of!(kvm_regs, regs.regs);
    let vregs = offset_of!(kvm_regs, fp_regs) + offset_of!(user_fpsimd_state, vregs);
    let fp = offset_of!(kvm_regs, fp_regs);
    v.extend([
        core("regs.regs[0]", x, 8),
        core("regs.regs[1]", x + 8, 8),
        core("regs.regs[30]", x + 30 * 8, 8),
        core("regs.sp", offset_of!(kvm_regs, regs.sp), 8),
        core("regs.pc", offset_of!(kvm_regs, regs.pc), 8),
        core("regs.pstate", offset_of!(kvm_regs, regs.pstate), 8),
        core("sp_el1", offset_of!(kvm_regs, sp_el1), 8),
        core("elr_el1", offset_of!(kvm_regs, elr_el1), 8),
        core("spsr[0]", offset_of!(kvm_regs, spsr), 8),
        core("fp_regs.vregs[0]", vregs, 16),
        core("fp_regs.vregs[31]", vregs + 31 * 16, 16),
        core("fp_regs.fpsr", fp + offset_of!(user_fpsimd_state, fpsr), 4),
        core("fp_regs.fpcr", fp + offset_of!(user_fpsimd_state, fpcr), 4),
    ]);
    for (name, [op0, op1, crn, crm, op2]) in [
        ("MPIDR_EL1", [3, 0, 0, 0, 5]),
        ("ID_AA64MMFR0_EL1", [3, 0, 0, 7, 0]),
        ("SCTLR_EL1", [3, 0, 1, 0, 0]),
        ("TTBR0_EL1", [3, 0, 2, 0, 0]),
        ("TTBR1_EL1", [3, 0, 2, 0, 1]),
        ("TCR_EL1", [3, 0, 2, 0, 2]),
        ("ESR_EL1", [3, 0, 5, 2, 0]),
        ("FAR_EL1", [3, 0, 6, 0, 0]),
        ("PAR_EL1", [3, 0, 7, 4, 0]),
        ("MAIR_EL1", [3, 0, 10, 2, 0]),
        ("VBAR_EL1", [3, 0, 12, 0, 0]),
        ("CNTV_CTL_EL0", [3, 3, 14, 3, 1]),
    ] {
        let id = kvm_sysreg_id(op0, op1, crn, crm, op2).expect("valid encoding");
        v.push((format!("regid:sys.{name}"), id));
    }

    #[cfg(feature = "ioctls")]
    for (name, nr) in all_ioctls() {
        v.push((format!("ioctl:{name}"), nr));
    }

    // struct kvm_run.
    v.push(("size:kvm_run".into(), size_of::<kvm_run>() as u64));
    field!(
        v,
        kvm_run,
        "request_interrupt_window",
        request_interrupt_window
    );
    field!(v, kvm_run, "immediate_exit", immediate_exit);
    field!(v, kvm_run, "exit_reason", exit_reason);
    field!(
        v,
        kvm_run,
        "ready_for_interrupt_injection",
        ready_for_interrupt_injection
    );
    field!(v, kvm_run, "if_flag", if_flag);
    field!(v, kvm_run, "flags", flags);
    field!(v, kvm_run, "cr8", cr8);
    field!(v, kvm_run, "apic_base", apic_base);
    field!(v, kvm_run, "mmio", __bindgen_anon_1.mmio);
    field!(
        v,
        kvm_run,
        "mmio.phys_addr",
        __bindgen_anon_1.mmio.phys_addr
    );
    field!(v, kvm_run, "mmio.data", __bindgen_anon_1.mmio.data);
    field!(v, kvm_run, "mmio.len", __bindgen_anon_1.mmio.len);
    field!(v, kvm_run, "mmio.is_write", __bindgen_anon_1.mmio.is_write);
    field!(v, kvm_run, "arm_nisv", __bindgen_anon_1.arm_nisv);
    field!(
        v,
        kvm_run,
        "arm_nisv.esr_iss",
        __bindgen_anon_1.arm_nisv.esr_iss
    );
    field!(
        v,
        kvm_run,
        "arm_nisv.fault_ipa",
        __bindgen_anon_1.arm_nisv.fault_ipa
    );
    field!(v, kvm_run, "system_event", __bindgen_anon_1.system_event);
    field!(
        v,
        kvm_run,
        "system_event.type",
        __bindgen_anon_1.system_event.type_
    );
    field!(
        v,
        kvm_run,
        "system_event.ndata",
        __bindgen_anon_1.system_event.ndata
    );
    field!(
        v,
        kvm_run,
        "system_event.data",
        __bindgen_anon_1.system_event.__bindgen_anon_1.data
    );
    field!(v, kvm_run, "fail_entry", __bindgen_anon_1.fail_entry);
    field!(
        v,
        kvm_run,
        "fail_entry.hardware_entry_failure_reason",
        __bindgen_anon_1.fail_entry.hardware_entry_failure_reason
    );
    field!(
        v,
        kvm_run,
        "fail_entry.cpu",
        __bindgen_anon_1.fail_entry.cpu
    );
    field!(v, kvm_run, "internal", __bindgen_anon_1.internal);
    field!(
        v,
        kvm_run,
        "internal.suberror",
        __bindgen_anon_1.internal.suberror
    );
    field!(v, kvm_run, "kvm_valid_regs", kvm_valid_regs);
    field!(v, kvm_run, "kvm_dirty_regs", kvm_dirty_regs);
    field!(v, kvm_run, "s", s);

    // struct kvm_vcpu_events (arm64).
    v.push((
        "size:kvm_vcpu_events".into(),
        size_of::<kvm_vcpu_events>() as u64,
    ));
    field!(v, kvm_vcpu_events, "exception", exception);
    field!(
        v,
        kvm_vcpu_events,
        "exception.serror_pending",
        exception.serror_pending
    );
    field!(
        v,
        kvm_vcpu_events,
        "exception.serror_has_esr",
        exception.serror_has_esr
    );
    field!(
        v,
        kvm_vcpu_events,
        "exception.ext_dabt_pending",
        exception.ext_dabt_pending
    );
    field!(v, kvm_vcpu_events, "exception.pad", exception.pad);
    field!(
        v,
        kvm_vcpu_events,
        "exception.serror_esr",
        exception.serror_esr
    );
    field!(v, kvm_vcpu_events, "reserved", reserved);

    v.push((
        "size:kvm_enable_cap".into(),
        size_of::<kvm_enable_cap>() as u64,
    ));
    field!(v, kvm_enable_cap, "cap", cap);
    field!(v, kvm_enable_cap, "flags", flags);
    field!(v, kvm_enable_cap, "args", args);
    field!(v, kvm_enable_cap, "pad", pad);

    v.push(("size:kvm_one_reg".into(), size_of::<kvm_one_reg>() as u64));
    field!(v, kvm_one_reg, "id", id);
    field!(v, kvm_one_reg, "addr", addr);

    v.push((
        "size:kvm_vcpu_init".into(),
        size_of::<kvm_vcpu_init>() as u64,
    ));
    field!(v, kvm_vcpu_init, "target", target);
    field!(v, kvm_vcpu_init, "features", features);

    v.push((
        "size:kvm_userspace_memory_region".into(),
        size_of::<kvm_userspace_memory_region>() as u64,
    ));
    field!(v, kvm_userspace_memory_region, "slot", slot);
    field!(v, kvm_userspace_memory_region, "flags", flags);
    field!(
        v,
        kvm_userspace_memory_region,
        "guest_phys_addr",
        guest_phys_addr
    );
    field!(v, kvm_userspace_memory_region, "memory_size", memory_size);
    field!(
        v,
        kvm_userspace_memory_region,
        "userspace_addr",
        userspace_addr
    );

    v.push((
        "size:kvm_device_attr".into(),
        size_of::<kvm_device_attr>() as u64,
    ));
    field!(v, kvm_device_attr, "flags", flags);
    field!(v, kvm_device_attr, "group", group);
    field!(v, kvm_device_attr, "attr", attr);
    field!(v, kvm_device_attr, "addr", addr);

    v.push((
        "size:kvm_create_device".into(),
        size_of::<kvm_create_device>() as u64,
    ));
    field!(v, kvm_create_device, "type", type_);
    field!(v, kvm_create_device, "fd", fd);
    field!(v, kvm_create_device, "flags", flags);

    v.push((
        "size:kvm_irq_level".into(),
        size_of::<kvm_irq_level>() as u64,
    ));
    field!(v, kvm_irq_level, "irq", __bindgen_anon_1.irq);
    field!(v, kvm_irq_level, "level", level);

    v.push(("size:kvm_irqfd".into(), size_of::<kvm_irqfd>() as u64));
    field!(v, kvm_irqfd, "fd", fd);
    field!(v, kvm_irqfd, "gsi", gsi);
    field!(v, kvm_irqfd, "flags", flags);
    field!(v, kvm_irqfd, "resamplefd", resamplefd);
    field!(v, kvm_irqfd, "pad", pad);

    v.push(("size:user_pt_regs".into(), size_of::<user_pt_regs>() as u64));
    field!(v, user_pt_regs, "regs", regs);
    field!(v, user_pt_regs, "sp", sp);
    field!(v, user_pt_regs, "pc", pc);
    field!(v, user_pt_regs, "pstate", pstate);

    v.push((
        "size:user_fpsimd_state".into(),
        size_of::<user_fpsimd_state>() as u64,
    ));
    field!(v, user_fpsimd_state, "vregs", vregs);
    field!(v, user_fpsimd_state, "fpsr", fpsr);
    field!(v, user_fpsimd_state, "fpcr", fpcr);
    field!(v, user_fpsimd_state, "__reserved", __reserved);

    v.push(("size:kvm_regs".into(), size_of::<kvm_regs>() as u64));
    field!(v, kvm_regs, "regs", regs);
    field!(v, kvm_regs, "sp_el1", sp_el1);
    field!(v, kvm_regs, "elr_el1", elr_el1);
    field!(v, kvm_regs, "spsr", spsr);
    field!(v, kvm_regs, "fp_regs", fp_regs);
    v
}

#[test]
fn bindings_match_the_newest_fixture() {
    let fixture = parse(NEWEST).expect("newest fixture parses");
    let mut rust = BTreeMap::new();
    for (k, val) in rust_items() {
        assert!(
            rust.insert(k.clone(), val).is_none(),
            "duplicate Rust item {k}"
        );
    }
    // Without the `ioctls` feature the request numbers cannot be checked here.
    let fixture: BTreeMap<String, u64> = fixture
        .into_iter()
        .filter(|(k, _)| cfg!(feature = "ioctls") || !k.starts_with("ioctl:"))
        .collect();
    let d = diff("fixture linux-6.12", &fixture, "Rust bindings", &rust);
    assert!(
        d.is_empty(),
        "the bindings disagree with tests/fixtures/linux-6.12.txt \
         (a `missing in Rust bindings` line means this test's table lacks the item):\n{}",
        d.join("\n")
    );
}

#[test]
fn nisv_payload_is_where_the_kernel_writes_it() {
    // Independent of the fixture: the values docs/abi.md states.
    assert_eq!(KVM_EXIT_ARM_NISV, 28);
    assert_eq!(KVM_CAP_ARM_NISV_TO_USER, 177);
    assert_eq!(KVM_CAP_ARM_INJECT_EXT_DABT, 178);
    assert_eq!(offset_of!(kvm_run, exit_reason), 8);
    assert_eq!(offset_of!(kvm_run, __bindgen_anon_1.arm_nisv.esr_iss), 32);
    assert_eq!(offset_of!(kvm_run, __bindgen_anon_1.arm_nisv.fault_ipa), 40);
    assert_eq!(offset_of!(kvm_vcpu_events, exception.ext_dabt_pending), 2);
    assert_eq!(size_of::<kvm_vcpu_events>(), 64);

    // A kvm_run as the kernel fills it for the exit measured on the emulated host
    // (`str x0, [x1], #8` to 0x1000_0000): write the bytes at the fixture offsets
    // and read them back through the typed union member.
    let fixture = parse(NEWEST).unwrap();
    let off = |k: &str| fixture[k] as usize;
    let mut bytes = vec![0u8; size_of::<kvm_run>()];
    bytes[off("offset:kvm_run.exit_reason")..][..4].copy_from_slice(&28u32.to_ne_bytes());
    bytes[off("offset:kvm_run.arm_nisv.esr_iss")..][..8].copy_from_slice(&0x45u64.to_ne_bytes());
    bytes[off("offset:kvm_run.arm_nisv.fault_ipa")..][..8]
        .copy_from_slice(&0x1000_0000u64.to_ne_bytes());
    // SAFETY: kvm_run is plain repr(C) data for which every bit pattern is valid,
    // and `bytes` holds exactly size_of::<kvm_run>() bytes (read_unaligned copes
    // with the Vec's alignment).
    let run: kvm_run = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    assert_eq!(run.exit_reason, KVM_EXIT_ARM_NISV);
    // SAFETY: exit_reason says arm_nisv is the active member.
    let nisv = unsafe { run.__bindgen_anon_1.arm_nisv };
    assert_eq!(nisv.esr_iss, 0x45);
    assert_eq!(nisv.fault_ipa, 0x1000_0000);
}
