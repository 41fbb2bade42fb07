// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The init of the emulated arm64 KVM host (and the native runner).
//!
//! As PID 1 in the initramfs it mounts devtmpfs/proc/sysfs/tmpfs, points the
//! console at stdio, runs every executable in `/tests` (sorted by name) with
//! `--test-threads=1` and the arguments from `KVM_NISV_TEST_ARGS`, each under
//! a timeout (`KVM_NISV_TEST_TIMEOUT` seconds, default 900), printing the
//! marker lines described in the library docs, and powers the machine off.
//!
//! Run as `kvm-nisv-init --payload DIR` on an arm64 host with `/dev/kvm` it
//! does the same with `DIR/tests` and exits with status 0 (all executables
//! exited 0) or 1, without touching mounts or power.

use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use kvm_nisv_harness::{MARK, display_from_file};

fn say(msg: &str) {
    // One write per marker line, on a fresh line even if a test left a partial
    // line ("test x ... ") behind when it crashed.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("\n{MARK} {msg}\n").as_bytes());
    let _ = out.flush();
}

fn mount(src: &str, dst: &str, fstype: &str) {
    let _ = std::fs::create_dir_all(dst);
    let (Ok(s), Ok(d), Ok(t)) = (CString::new(src), CString::new(dst), CString::new(fstype)) else {
        return;
    };
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the
    // call; a null data pointer is allowed by mount(2).
    let rc = unsafe { libc::mount(s.as_ptr(), d.as_ptr(), t.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        eprintln!(
            "init: mount {fstype} on {dst}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Make fds 0, 1 and 2 the console (the kernel only opens /dev/console for
/// init if the initramfs has that node; ours gets it from devtmpfs).
fn console_stdio() {
    let Ok(path) = CString::new("/dev/console") else {
        return;
    };
    // SAFETY: valid NUL-terminated path; the returned fd is checked.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if fd < 0 {
        return;
    }
    for target in 0..3 {
        // SAFETY: dup2 on an fd we own onto the standard fds.
        unsafe { libc::dup2(fd, target) };
    }
    if fd > 2 {
        // SAFETY: fd was opened above and is no longer needed.
        unsafe { libc::close(fd) };
    }
}

fn power_off() -> ! {
    // The console is a tty: write(2) returns once the bytes are in its buffer,
    // and the UART sends them from interrupts. Powering off before it has
    // would cut the last lines (the `done` marker) off the log; wait for them.
    // Fds 0-2 are all the console (console_stdio), so one fd is enough.
    let _ = std::io::stdout().flush();
    // SAFETY: tcdrain(3) only waits on the fd; on a non-tty it fails with
    // ENOTTY, which is ignored.
    unsafe { libc::tcdrain(1) };
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    // SAFETY: reboot(2) with POWER_OFF; as PID 1 with CAP_SYS_BOOT this does
    // not return on success.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    eprintln!("init: reboot failed: {}", std::io::Error::last_os_error());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn uname_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Run one test executable; returns the `exit=` value.
fn run_one(exe: &Path, args: &[String], timeout: Duration) -> String {
    let mut cmd = Command::new(exe);
    cmd.arg("--test-threads=1").args(args).current_dir("/tmp");
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            println!("init: cannot start {}: {e}", exe.display());
            return "spawn-error".to_string();
        }
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                return match (status.code(), status.signal()) {
                    (Some(c), _) => c.to_string(),
                    (None, Some(s)) => format!("signal-{s}"),
                    _ => "unknown".to_string(),
                };
            }
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return "timeout".to_string();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                println!("init: wait {}: {e}", exe.display());
                return "wait-error".to_string();
            }
        }
    }
}

fn run_all(payload: &Path) -> bool {
    let t0 = Instant::now();
    let tests_dir = payload.join("tests");
    let mut exes: Vec<PathBuf> = std::fs::read_dir(&tests_dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    exes.sort();
    let args: Vec<String> = std::env::var("KVM_NISV_TEST_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let timeout = Duration::from_secs(env_secs("KVM_NISV_TEST_TIMEOUT", 900));
    let kvm = if Path::new("/dev/kvm").exists() {
        "yes"
    } else {
        "no"
    };
    say(&format!(
        "start kernel={} uptime={} kvm={kvm} executables={} args={:?}",
        uname_release(),
        uptime(),
        exes.len(),
        args.join(" ")
    ));
    // KVM_NISV_TEST_EXES: comma-separated substrings; run only executables
    // whose display name contains one of them.
    let only: Vec<String> = std::env::var("KVM_NISV_TEST_EXES")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut all_ok = true;
    for exe in &exes {
        let name = display_from_file(
            &exe.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            println!("init: skipping {name} (KVM_NISV_TEST_EXES)");
            continue;
        }
        say(&format!("begin {name}"));
        let t = Instant::now();
        let exit = run_one(exe, &args, timeout);
        all_ok &= exit == "0";
        say(&format!(
            "end {name} exit={exit} seconds={:.2}",
            t.elapsed().as_secs_f64()
        ));
    }
    say(&format!(
        "done executables={} seconds={:.2}",
        exes.len(),
        t0.elapsed().as_secs_f64()
    ));
    all_ok
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--payload") {
        let Some(dir) = argv.get(i + 1) else {
            eprintln!("usage: kvm-nisv-init --payload DIR");
            return ExitCode::from(2);
        };
        if std::env::var_os("KVM_NISV_HARNESS").is_none() {
            // SAFETY: single-threaded at this point (no test started yet).
            unsafe { std::env::set_var("KVM_NISV_HARNESS", "native") };
        }
        return if run_all(Path::new(dir)) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if std::process::id() != 1 {
        eprintln!("kvm-nisv-init: not PID 1; use --payload DIR to run natively");
        return ExitCode::from(2);
    }
    mount("devtmpfs", "/dev", "devtmpfs");
    console_stdio();
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    mount("tmpfs", "/tmp", "tmpfs");
    // SAFETY: set_var is only unsound with concurrent environment access;
    // the init is single-threaded here (no test has been started yet).
    unsafe {
        std::env::set_var("PATH", "/bin");
        std::env::set_var("HOME", "/tmp");
        std::env::set_var("KVM_NISV_HARNESS", "qemu");
        if Path::new("/bin/kvm-nisv-vmm").exists() {
            std::env::set_var("KVM_NISV_VMM", "/bin/kvm-nisv-vmm");
        }
        std::env::set_var("KVM_NISV_GUESTS", "/guests");
        if Path::new("/linux/Image").exists() {
            std::env::set_var("KVM_NISV_LINUX_IMAGE", "/linux/Image");
        }
        // Under TCG every instruction is emulated (10-50x slower than the
        // host): scale the decoder's seeded random differential test (10
        // million words on the host, tests/decode_diff.rs) down unless the
        // caller chose a count.
        if std::env::var_os("KVM_NISV_DECODE_COUNT").is_none() {
            std::env::set_var("KVM_NISV_DECODE_COUNT", "20000");
        }
        // Likewise proptest's standard knob (the property tests run their
        // full case counts on the host).
        if std::env::var_os("PROPTEST_CASES").is_none() {
            std::env::set_var("PROPTEST_CASES", "64");
        }
        // Backtraces make failures in the console log self-explaining.
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            std::env::set_var("RUST_BACKTRACE", "1");
        }
    }
    run_all(Path::new("/"));
    power_off()
}
