// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The demo round trip (`scripts/demo` runs this test with `--nocapture`): the
//! `classes-mmu-off` guest makes NISV accesses of every decoder class to the
//! test device under `--trace-nisv`; the VMM traces each exit with its
//! disassembly and prints per-class counters at exit.
//!
//! Asserts what KVM and the VMM really did: the exits arrived as NISV exits,
//! were emulated (not injected), and cover several decoder classes.

#![cfg(target_arch = "aarch64")]

mod guest_common;

use guest_common::run_guest;
use std::time::Duration;

#[test]
fn guest_demo_traces_nisv_exits_of_several_classes() {
    let r = run_guest(
        "classes-mmu-off",
        &["--trace-nisv"],
        Duration::from_secs(300),
    );
    // Show the whole round trip: guest UART output and the VMM's trace.
    println!("{}", r.dump());

    let traced: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("kvm-nisv-vmm: nisv vcpu"))
        .collect();
    assert!(
        traced.len() >= 50,
        "expected many traced NISV exits, got {}",
        traced.len()
    );
    // Each traced exit shows the disassembled instruction after `iss=...: `;
    // the guest draws its instructions at random per class, so count distinct
    // mnemonics rather than expecting particular ones.
    let mnemonics: std::collections::BTreeSet<&str> = traced
        .iter()
        .filter_map(|l| l.split(": ").nth(2))
        .filter_map(|t| t.split_whitespace().next())
        .collect();
    assert!(
        mnemonics.len() >= 10,
        "expected NISV exits of >= 10 distinct mnemonics, got {mnemonics:?}"
    );
    for family in [["stp", "ldp"], ["st1", "ld1"], ["cas", "casp"]] {
        assert!(
            mnemonics
                .iter()
                .any(|m| family.iter().any(|f| m.starts_with(f))),
            "no traced NISV exit of the {family:?} family in {mnemonics:?}"
        );
    }
    let summary = r
        .stderr
        .lines()
        .find(|l| l.starts_with("kvm-nisv-vmm: NISV exits: "))
        .unwrap_or_else(|| panic!("no NISV summary line"));
    let emulated: u64 = summary
        .split("emulated ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the emulated count in {summary:?}"));
    assert!(emulated >= 50, "only {emulated} exits emulated: {summary}");
    let classes = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("kvm-nisv-vmm:   ") && l.contains(": "))
        .filter(|l| !l.contains("bytes at"))
        .count();
    assert!(
        classes >= 6,
        "expected per-class counters for >= 6 classes, got {classes}"
    );
}
