// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `oracle` guest: at least 100,000 generated load/store instructions, each
//! run on RAM and on the emulated test device, with zero mismatches
//! (docs/oracle.md). `KVM_NISV_ORACLE_SEED` picks the seed (default: the time),
//! `KVM_NISV_ORACLE_COUNT` a larger count.

#![cfg(target_arch = "aarch64")]

mod guest_common;

use guest_common::run_guest;
use std::time::Duration;

const MIN_COUNT: u64 = 100_000;
const TIMEOUT: Duration = Duration::from_secs(840);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn guest_oracle_zero_mismatches() {
    let count = env_u64("KVM_NISV_ORACLE_COUNT")
        .unwrap_or(MIN_COUNT)
        .max(MIN_COUNT);
    let seed = env_u64("KVM_NISV_ORACLE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let cmdline = format!("oracle.seed={seed} oracle.count={count}");
    let r = run_guest(
        "oracle",
        &["--on-nisv", "emulate", "--cmdline", &cmdline],
        TIMEOUT,
    );
    // Progress, timing and any mismatch report, for the log.
    for l in r
        .lines()
        .filter(|l| l.starts_with("oracle:") || l.starts_with("MISMATCH") || l.starts_with("  "))
    {
        eprintln!("{l}");
    }
    let summary = r
        .lines()
        .find(|l| {
            l.starts_with("oracle: ")
                && l.contains(" instructions, ")
                && l.contains(" mismatches, seed ")
        })
        .unwrap_or_else(|| panic!("no summary line (seed {seed})\n{}", r.dump()))
        .to_string();
    let nums: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let [n, m, s] = nums[..] else {
        panic!("cannot parse `{summary}`")
    };
    assert_eq!(
        s, seed,
        "the guest did not take the seed from the command line: `{summary}`"
    );
    assert_eq!(m, 0, "{m} mismatches (seed {seed})\n{}", r.dump());
    assert!(
        n >= count,
        "only {n} instructions compared, wanted {count}\n{}",
        r.dump()
    );
    assert_eq!(r.code(), Some(0), "oracle exit status\n{}", r.dump());
    eprintln!(
        "oracle: {n} instructions, 0 mismatches, seed {seed}, {:.1} s wall",
        r.elapsed.as_secs_f64()
    );
}
