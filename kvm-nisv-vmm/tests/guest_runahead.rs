// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The run-ahead oracle guest (`runahead-oracle.bin`, docs/oracle.md): at
//! least 100,000 random sequences of integer instructions, branches, loops
//! and loads/stores, each run on RAM and on the test device with
//! `--nisv-run-ahead`, with zero mismatches; and run-ahead must actually have
//! executed instructions (the VMM's summary). `KVM_NISV_RUNAHEAD_SEED` picks
//! the seed (default: the time), `KVM_NISV_RUNAHEAD_COUNT` a larger count.

#![cfg(target_arch = "aarch64")]

mod guest_common;

use guest_common::run_guest;
use std::time::Duration;

const MIN_COUNT: u64 = 100_000;
const TIMEOUT: Duration = Duration::from_secs(840);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn numbers(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[test]
fn runahead_oracle_zero_mismatches() {
    let count = env_u64("KVM_NISV_RUNAHEAD_COUNT")
        .unwrap_or(MIN_COUNT)
        .max(MIN_COUNT);
    let seed = env_u64("KVM_NISV_RUNAHEAD_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let cmdline = format!("runahead.seed={seed} runahead.count={count}");
    // Run ahead on every NISV exit, with a 64-instruction budget (so budget
    // stops happen mid-sequence) and no time budget (a time stop could fall
    // anywhere, which the instruction budget already covers deterministically).
    let r = run_guest(
        "runahead-oracle",
        &[
            "--on-nisv",
            "emulate",
            "--nisv-run-ahead",
            "64",
            "--nisv-run-ahead-us",
            "1000000000",
            "--nisv-run-ahead-always",
            "--cmdline",
            &cmdline,
        ],
        TIMEOUT,
    );
    for l in r.lines().filter(|l| {
        l.starts_with("runahead-oracle:") || l.starts_with("MISMATCH") || l.starts_with("  ")
    }) {
        eprintln!("{l}");
    }
    for l in r.stderr.lines().filter(|l| {
        l.contains("NISV exits") || l.contains("run-ahead") || l.contains("register calls")
    }) {
        eprintln!("{l}");
    }
    let summary = r
        .lines()
        .find(|l| l.starts_with("runahead-oracle: ") && l.contains(" mismatches, seed "))
        .unwrap_or_else(|| panic!("no summary line (seed {seed})\n{}", r.dump()))
        .to_string();
    let [n, m, s] = numbers(&summary)[..] else {
        panic!("cannot parse `{summary}`")
    };
    assert_eq!(s, seed, "the guest did not take the seed: `{summary}`");
    assert_eq!(m, 0, "{m} mismatches (seed {seed})\n{}", r.dump());
    assert!(
        n >= count,
        "only {n} sequences, wanted {count}\n{}",
        r.dump()
    );
    assert_eq!(r.code(), Some(0), "exit status\n{}", r.dump());
    // The comparison means something only if run-ahead ran: the VMM prints
    // "run-ahead: E exits, I instructions".
    let ra = r
        .stderr
        .lines()
        .find(|l| l.contains("run-ahead: ") && l.contains(" instructions"))
        .unwrap_or_else(|| panic!("no run-ahead summary from the VMM\n{}", r.dump()));
    let nums = numbers(ra.split("run-ahead: ").nth(1).unwrap_or(""));
    let (exits, insns) = (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
    );
    assert!(
        exits >= count / 4 && insns >= count,
        "run-ahead ran too little ({exits} exits, {insns} instructions for {n} sequences)\n{}",
        r.dump()
    );
    eprintln!(
        "runahead-oracle: {n} sequences, 0 mismatches, seed {seed}, run-ahead {exits} exits / {insns} instructions, {:.1} s wall",
        r.elapsed.as_secs_f64()
    );
}
