// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `classes-*` guests: every decoder class against the test device (MMU
//! off; 4 KiB and 64 KiB page tables with Device-nGnRE and Normal mappings),
//! the straddle at 0x8000_0000, DC ZVA on Device memory, the alignment of
//! loads and stores to Device memory, FEAT_LSE2 alignment and GICD_IROUTER
//! programmed with a post-index store loop. The guest checks everything itself
//! and prints one PASS/FAIL line per class and check.

#![cfg(target_arch = "aarch64")]

mod guest_common;

use guest_common::run_guest;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(600);

/// The class names the guests report (guests/rt/src/insn.rs `Class::name`).
const CLASSES: [&str; 21] = [
    "ldr-str-imm",
    "ldur-stur",
    "ldr-str-post",
    "ldr-str-pre",
    "ldr-str-reg",
    "ldar-stlr",
    "fp-ldr-str-imm",
    "fp-ldur-pre-post",
    "fp-ldr-str-reg",
    "ldp-stp-ldpsw",
    "ldnp-stnp",
    "fp-ldp-stp",
    "ld1-4-st1-4-multiple",
    "ld1-4-st1-4-single",
    "ld1r-ld4r",
    "ldxr-stxr",
    "ldxp-stxp",
    "lse-ldop-swp",
    "cas",
    "casp",
    "dc-zva",
];

const CHECKS: [&str; 4] = [
    "straddle-stp-ldp",
    "straddle-st1-ld1",
    "dc-zva-device",
    "gic-irouter",
];

fn classes(name: &str) {
    let r = run_guest(name, &["--on-nisv", "emulate"], TIMEOUT);
    for l in r
        .lines()
        .filter(|l| l.contains("FAIL") || l.contains("MISMATCH"))
    {
        eprintln!("{l}");
    }
    assert_eq!(r.code(), Some(0), "{name} did not exit 0\n{}", r.dump());
    for c in CLASSES {
        // With the MMU off all data memory is Device-nGnRnE, where DC ZVA must
        // take an alignment fault (Arm ARM, DC ZVA) and QEMU's TCG does not:
        // the guest checks that case separately (`check dc-zva-device`) and
        // compares the class only on Normal memory (docs/oracle.md).
        if c == "dc-zva" && name == "classes-mmu-off" {
            continue;
        }
        let want = format!("{name}: class {c}: PASS (");
        assert!(
            r.lines().any(|l| l.starts_with(&want)),
            "no `{want}` line\n{}",
            r.dump()
        );
    }
    for c in CHECKS {
        let want = format!("{name}: check {c}: PASS");
        assert!(
            r.lines().any(|l| l == want),
            "no `{want}` line\n{}",
            r.dump()
        );
    }
    // Device-memory alignment on the CPU alone (every mode) and through the
    // window (MMU on), and FEAT_LSE2 alignment, CPU and emulator against each
    // other and against the rule for the CPU's ID_AA64MMFR2_EL1.AT (Normal
    // memory: MMU on only). guests/rt/src/devalign.rs has the rules.
    let mut checks = vec!["cpu-device-alignment"];
    if name != "classes-mmu-off" {
        checks.extend(["device-alignment", "lse2-alignment"]);
    }
    for c in checks {
        let want = format!("{name}: check {c}: PASS");
        assert!(
            r.lines().any(|l| l == want),
            "no `{want}` line\n{}",
            r.dump()
        );
    }
    for l in r
        .lines()
        .filter(|l| l.contains("alignment") || l.contains(" nAA ") || l.contains(" mod 16"))
    {
        eprintln!("{l}");
    }
    assert!(
        r.lines().any(|l| l == format!("{name}: PASS")),
        "no final PASS line\n{}",
        r.dump()
    );
    // The device runs must really have gone through the NISV path.
    let nisv = r
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: VMM reports ")))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no NISV count line\n{}", r.dump()));
    eprintln!("{name}: {nisv} NISV exits emulated");
    assert!(
        nisv >= 300,
        "only {nisv} NISV exits: the device runs did not exercise the emulator\n{}",
        r.dump()
    );
}

#[test]
fn guest_classes_mmu_off() {
    classes("classes-mmu-off");
}

#[test]
fn guest_classes_mmu_on_4k() {
    classes("classes-mmu-on-4k");
}

#[test]
fn guest_classes_mmu_on_64k() {
    classes("classes-mmu-on-64k");
}
