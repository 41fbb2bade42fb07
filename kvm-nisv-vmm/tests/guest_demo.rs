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
    // Each traced exit shows the disassembled instruction; look for several
    // syndrome-less classes by their mnemonics.
    for m in ["stp ", "ldp ", "ld1 ", "st4 ", "ldadd", "cas"] {
        assert!(
            traced.iter().any(|l| l.contains(m)),
            "no traced NISV exit for `{m}`"
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
