// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `abort` guest: `str x0, [x1], #8` to 0x0F00_0000, where there is neither
//! RAM nor a device. Under `--on-nisv emulate` and `inject` the guest must see a
//! synchronous external abort (checked in its handler: EC 0x25, DFSC 0x10, FAR);
//! under `stop` the VMM must stop with its report naming the instruction.

#![cfg(target_arch = "aarch64")]

mod guest_common;

use guest_common::run_guest;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);
/// kvm-nisv-vmm's exit status for `--on-nisv stop` (src/nisv.rs EXIT_NISV_STOP).
const EXIT_NISV_STOP: i32 = 3;

fn expect_pass(policy: &str) {
    let r = run_guest("abort", &["--on-nisv", policy], TIMEOUT);
    assert_eq!(
        r.code(),
        Some(0),
        "abort guest under --on-nisv {policy} did not exit 0\n{}",
        r.dump()
    );
    assert!(
        r.lines()
            .any(|l| l.starts_with("abort: PASS: synchronous external abort at 0xf000000")),
        "no PASS line\n{}",
        r.dump()
    );
    assert!(!r.stdout.contains("FAIL"), "{}", r.dump());
}

#[test]
fn guest_abort_emulate_injects_external_abort() {
    expect_pass("emulate");
}

#[test]
fn guest_abort_inject_injects_external_abort() {
    expect_pass("inject");
}

#[test]
fn guest_abort_default_policy_is_emulate() {
    let r = run_guest("abort", &[], TIMEOUT);
    assert_eq!(r.code(), Some(0), "{}", r.dump());
    assert!(r.stdout.contains("abort: PASS"), "{}", r.dump());
}

#[test]
fn guest_abort_stop_reports_the_instruction() {
    let r = run_guest("abort", &["--on-nisv", "stop"], TIMEOUT);
    assert_eq!(
        r.code(),
        Some(EXIT_NISV_STOP),
        "expected the stop status {EXIT_NISV_STOP}\n{}",
        r.dump()
    );
    assert!(
        r.stderr.contains("str x0, [x1], #8"),
        "the report does not name the instruction\n{}",
        r.dump()
    );
    assert!(
        r.stderr.contains("0xf000000") || r.stderr.to_lowercase().contains("0x0f00_0000"),
        "the report does not name the address\n{}",
        r.dump()
    );
    assert!(
        !r.stdout.contains("abort: PASS"),
        "the guest went on after a stop\n{}",
        r.dump()
    );
    assert!(
        r.stdout.contains("abort: str x0, [x1], #8"),
        "the guest did not start\n{}",
        r.dump()
    );
}
