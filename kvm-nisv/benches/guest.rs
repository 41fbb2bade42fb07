// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Runs the bench guest (`guests/bench`) under `kvm-nisv-vmm` on real KVM and
//! passes its report through: the cost of a `KVM_EXIT_ARM_NISV` exit plus
//! kvm-nisv's emulation against an ordinary `KVM_EXIT_MMIO` exit, as ratios
//! the guest measured in one run with CNTVCT_EL0.
//!
//! Needs an arm64 host with KVM and two paths from the environment:
//! `KVM_NISV_VMM` (the VMM binary) and `KVM_NISV_GUESTS` (a directory holding
//! `bench.bin`), which the emulated-host init sets (`scripts/bench guest`
//! boots it). `KVM_NISV_BENCH_ITERS` and `KVM_NISV_BENCH_ROUNDS` set the guest's
//! executions per kind and rounds (default: the guest's). Without them it says so and does nothing.
//!
//! It prints a libtest-style `test guest_bench ... ok|FAILED` line so the
//! harness's console parser counts it; libtest arguments are ignored.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

fn main() -> ExitCode {
    let (Some(vmm), Some(guests)) = (
        std::env::var_os("KVM_NISV_VMM"),
        std::env::var_os("KVM_NISV_GUESTS"),
    ) else {
        println!("guest bench skipped: KVM_NISV_VMM and KVM_NISV_GUESTS are not set");
        return ExitCode::SUCCESS;
    };
    if !cfg!(target_arch = "aarch64") || !std::path::Path::new("/dev/kvm").exists() {
        println!("guest bench skipped: needs an arm64 host with /dev/kvm");
        return ExitCode::SUCCESS;
    }
    let guest = PathBuf::from(guests).join("bench.bin");
    let mut cmdline = String::from("console=ttyS0");
    for (var, key) in [
        ("KVM_NISV_BENCH_ITERS", "iters"),
        ("KVM_NISV_BENCH_ROUNDS", "rounds"),
    ] {
        if let Ok(n) = std::env::var(var)
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            cmdline.push_str(&format!(" {key}={n}"));
        }
    }
    println!("running {} with {}", vmm.to_string_lossy(), guest.display());
    let out = Command::new(&vmm)
        .args(["run", "--kernel"])
        .arg(&guest)
        .args(["--cmdline", &cmdline])
        .stdin(Stdio::null())
        .output();
    let ok = match out {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            for line in stdout.lines() {
                println!("{line}");
            }
            for line in stderr.lines() {
                println!("vmm: {line}");
            }
            println!("guest bench: VMM exit {}", out.status);
            out.status.success() && stdout.lines().any(|l| l.trim_end() == "bench: ok")
        }
        Err(e) => {
            println!("guest bench: cannot run the VMM: {e}");
            false
        }
    };
    println!("test guest_bench ... {}", if ok { "ok" } else { "FAILED" });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
