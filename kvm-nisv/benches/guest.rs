// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Runs the bench guest (`guests/bench`) under `kvm-nisv-vmm` on real KVM,
//! twice in one go: with run-ahead off and on (`--nisv-run-ahead`), and passes
//! its report through, each line prefixed with `ra-off` or `ra-on`: the cost
//! per device access of plain, NISV and run-ahead loops as ratios to a plain
//! `KVM_EXIT_MMIO` exit the guest measured in the same run, and the NISV exits
//! per access. It also samples the VMM's memory (`/proc/<pid>/status` and
//! `smaps`) and prints its peak RSS beyond the guest RAM mapping.
//!
//! Needs an arm64 host with KVM and two paths from the environment:
//! `KVM_NISV_VMM` (the VMM binary) and `KVM_NISV_GUESTS` (a directory holding
//! `bench.bin`), which the emulated-host init sets (`scripts/bench guest`
//! boots it). `KVM_NISV_BENCH_ROUNDS` sets the guest's rounds;
//! `KVM_NISV_BENCH_RUNAHEAD=N:US` the run-ahead budget (default 1024
//! instructions, 100000 microseconds: the emulated host runs some 100 times
//! slower than hardware, see docs/performance.md). Without the paths it says
//! so and does nothing.
//!
//! It prints a libtest-style `test guest_bench ... ok|FAILED` line so the
//! harness's console parser counts it; libtest arguments are ignored.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

/// Guest RAM of the bench VM (`--mem`).
const GUEST_MEM: &str = "64M";
const GUEST_MEM_KB: u64 = 64 * 1024;

/// Peak memory of a VMM run, in KiB.
#[derive(Debug, Default)]
struct Mem {
    hwm: u64,
    ram_rss: u64,
    max_other: u64,
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Sample `/proc/<pid>`: VmHWM, VmRSS and the Rss of the guest RAM mapping
/// (the anonymous mapping of exactly the guest RAM size).
fn sample(pid: u32, m: &mut Mem) {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
        return;
    };
    let Ok(smaps) = std::fs::read_to_string(dir.join("smaps")) else {
        return;
    };
    let mut ram = 0;
    let mut in_ram = false;
    for l in smaps.lines() {
        if l.starts_with("Size:") {
            in_ram = kb_field(l, "Size:") == Some(GUEST_MEM_KB);
        } else if in_ram && l.starts_with("Rss:") {
            ram = kb_field(l, "Rss:").unwrap_or(0);
        }
    }
    let hwm = kb_field(&status, "VmHWM:").unwrap_or(0);
    let rss = kb_field(&status, "VmRSS:").unwrap_or(0);
    m.hwm = m.hwm.max(hwm);
    m.ram_rss = m.ram_rss.max(ram);
    m.max_other = m.max_other.max(rss.saturating_sub(ram));
}

/// Run the VMM once; the guest's and the VMM's lines prefixed with `tag`.
fn run_once(vmm: &Path, guest: &Path, tag: &str, extra: &[String], cmdline: &str) -> bool {
    println!("{tag} running {} with {}", vmm.display(), extra.join(" "));
    let child = Command::new(vmm)
        .args(["run", "--mem", GUEST_MEM, "--kernel"])
        .arg(guest)
        .args(extra)
        .args(["--cmdline", cmdline])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("{tag} cannot run the VMM: {e}");
            return false;
        }
    };
    let pid = child.id();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut mem = Mem::default();
    let status = loop {
        sample(pid, &mut mem);
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    for l in stdout.lines() {
        println!("{tag} {}", l.trim_end_matches('\r'));
    }
    for l in stderr.lines() {
        println!("{tag} vmm: {l}");
    }
    println!(
        "{tag} rss: VmHWM {} KiB, guest RAM resident {} KiB, beyond guest RAM {} KiB (VmHWM - RAM), {} KiB (largest sampled VmRSS - RAM)",
        mem.hwm,
        mem.ram_rss,
        mem.hwm.saturating_sub(mem.ram_rss),
        mem.max_other
    );
    let ok =
        status.is_some_and(|s| s.success()) && stdout.lines().any(|l| l.trim_end() == "bench: ok");
    println!("{tag} status {status:?}");
    ok
}

fn main() -> ExitCode {
    let (Some(vmm), Some(guests)) = (
        std::env::var_os("KVM_NISV_VMM"),
        std::env::var_os("KVM_NISV_GUESTS"),
    ) else {
        println!("guest bench skipped: KVM_NISV_VMM and KVM_NISV_GUESTS are not set");
        return ExitCode::SUCCESS;
    };
    if !cfg!(target_arch = "aarch64") || !Path::new("/dev/kvm").exists() {
        println!("guest bench skipped: needs an arm64 host with /dev/kvm");
        return ExitCode::SUCCESS;
    }
    let vmm = PathBuf::from(vmm);
    let guest = PathBuf::from(guests).join("bench.bin");
    let mut cmdline = String::from("console=ttyS0");
    if let Ok(n) = std::env::var("KVM_NISV_BENCH_ROUNDS")
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        cmdline.push_str(&format!(" rounds={n}"));
    }
    let budget = std::env::var("KVM_NISV_BENCH_RUNAHEAD").unwrap_or_default();
    let (insns, us) = budget
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u64>().ok()?)))
        .unwrap_or((1024, 100_000));
    let off = run_once(
        &vmm,
        &guest,
        "ra-off",
        &["--nisv-run-ahead".into(), "0".into()],
        &format!("{cmdline} bench.runahead=0"),
    );
    let on = run_once(
        &vmm,
        &guest,
        "ra-on",
        &[
            "--nisv-run-ahead".into(),
            insns.to_string(),
            "--nisv-run-ahead-us".into(),
            us.to_string(),
        ],
        &format!("{cmdline} bench.runahead=1"),
    );
    let ok = off && on;
    println!("test guest_bench ... {}", if ok { "ok" } else { "FAILED" });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
