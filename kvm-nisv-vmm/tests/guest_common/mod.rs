// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Shared helpers of the guest integration tests: find the VMM and the guests
//! (KVM_NISV_VMM, KVM_NISV_GUESTS, set by scripts/arm64-host), run the VMM with a
//! timeout and capture its output.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The VMM binary from `KVM_NISV_VMM`. Panics (the test fails) when it is unset
/// or missing: these tests must never pass without running anything.
pub fn vmm() -> PathBuf {
    let p = std::env::var_os("KVM_NISV_VMM").unwrap_or_else(|| {
        panic!("KVM_NISV_VMM is not set: run these tests through scripts/arm64-host (it sets KVM_NISV_VMM and KVM_NISV_GUESTS)")
    });
    let p = PathBuf::from(p);
    assert!(p.is_file(), "KVM_NISV_VMM={} does not exist", p.display());
    p
}

/// The flat binary of guest `name` in `KVM_NISV_GUESTS`. Panics when the
/// variable is unset or the file is missing.
pub fn guest(name: &str) -> PathBuf {
    let d = std::env::var_os("KVM_NISV_GUESTS").unwrap_or_else(|| {
        panic!("KVM_NISV_GUESTS is not set: run these tests through scripts/arm64-host (scripts/build-guests writes the guests)")
    });
    let p = PathBuf::from(d).join(format!("{name}.bin"));
    assert!(
        p.is_file(),
        "guest {} does not exist (scripts/build-guests builds it)",
        p.display()
    );
    p
}

/// What a VMM run produced.
#[derive(Debug)]
pub struct Run {
    /// The exit status, `None` when the run timed out and was killed.
    pub status: Option<ExitStatus>,
    /// The guest's UART output.
    pub stdout: String,
    /// The VMM's own messages.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl Run {
    /// The exit code (`None` on a timeout or a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Both outputs, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "status {:?} after {:.1} s\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.elapsed.as_secs_f64(),
            tail(&self.stdout, 12_000),
            tail(&self.stderr, 12_000)
        )
    }

    /// The UART lines, without carriage returns.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.lines().map(|l| l.trim_end_matches('\r'))
    }
}

fn tail(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = s.len() - n;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

/// Runs `kvm-nisv-vmm run --kernel <guest> <extra...>`, killing it after `timeout`.
pub fn run_guest(name: &str, extra: &[&str], timeout: Duration) -> Run {
    let vmm = vmm();
    let kernel = guest(name);
    let mut cmd = Command::new(&vmm);
    cmd.arg("run").arg("--kernel").arg(&kernel).args(extra);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "running {} run --kernel {} {}",
        vmm.display(),
        kernel.display(),
        extra.join(" ")
    );
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", vmm.display()));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if t0.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("waiting for the VMM: {e}"),
        }
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    let r = Run {
        status,
        stdout,
        stderr,
        elapsed: t0.elapsed(),
    };
    eprintln!(
        "{name}: status {:?} after {:.1} s",
        r.status,
        r.elapsed.as_secs_f64()
    );
    r
}
