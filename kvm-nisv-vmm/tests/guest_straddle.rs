// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `straddle` guest (issue 11): device accesses crossing into the next
//! virtual page, for {ISV=1 single register, NISV post-index, LDP/STP, SIMD
//! pair} x {next page unmapped, read-only, EL1-only from EL0, RAM, a hole,
//! another device page} x {load, store}. The guest compares each case with the
//! CPU's own result on RAM and with the architecture (ESR_EL1, FAR_EL1,
//! ELR_EL1, registers, memory and device state) and prints one PASS/FAIL line
//! per case; this test asserts on those lines and on the VMM staying alive
//! (no stop: `--on-nisv emulate` and `inject` never end the VM on a data access).

#![cfg(target_arch = "aarch64")]

mod guest_common;

use guest_common::run_guest;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);

const FORMS: [&str; 4] = ["isv1-single", "nisv-post-index", "ldp-stp", "simd-pair"];
const NEXT: [&str; 6] = [
    "next-unmapped",
    "next-read-only",
    "next-el1-only-from-el0",
    "next-ram",
    "next-hole",
    "next-other-device",
];

#[test]
fn every_page_crossing_case_gets_the_architectural_result() {
    let r = run_guest("straddle", &["--on-nisv", "emulate"], TIMEOUT);
    for l in r.lines().filter(|l| l.starts_with("straddle:")) {
        eprintln!("{l}");
    }
    assert_eq!(r.code(), Some(0), "straddle did not exit 0\n{}", r.dump());
    for f in FORMS {
        for n in NEXT {
            for dir in ["load", "store"] {
                let want = format!("straddle: PASS {f} {n} {dir}:");
                assert!(
                    r.lines().any(|l| l.starts_with(&want)),
                    "no `{want}` line\n{}",
                    r.dump()
                );
            }
        }
    }
    assert!(
        r.lines().any(|l| l == "straddle: 48 passed, 0 failed"),
        "{}",
        r.dump()
    );
    assert!(!r.stdout.contains("FAIL"), "{}", r.dump());
    assert!(
        !r.stderr.contains("stop"),
        "the VMM reported a stop\n{}",
        r.dump()
    );
}
