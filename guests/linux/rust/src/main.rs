// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `nisv-rs`: the Rust program of the Linux guest (guests/linux/README.md).
//!
//! ```text
//! nisv-rs devio --map devmem|uio   the device I/O workload on the test device's window
//! nisv-rs smp [--iters N]          the same on every CPU at once, plus shared counters
//! nisv-rs fb [--fbcon] [TEXT]      draw on /dev/fb0 in every way (fb.rs)
//! nisv-rs phase NAME               tell the VMM what the guest does now
//! nisv-rs exit N                   drain the console, then set the VMM's exit status
//! ```
//!
//! Results are lines `@nisv rs <what> <step> ok|FAIL ...` on stdout; the exit
//! status is 0 when every step passed.

mod fb;
mod font;
mod smp;
mod testdev;
mod workload;

use std::process::ExitCode;

use testdev::{Addrs, Ctrl, Mapping};
use workload::{REGION_LEN, Rng, Work};

fn usage() -> ExitCode {
    eprintln!(
        "usage: nisv-rs devio --map devmem|uio | smp [--iters N] | fb [--fbcon] [TEXT] | phase NAME | exit N"
    );
    ExitCode::from(2)
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("nisv-rs: {e}");
    ExitCode::FAILURE
}

fn device() -> Result<(Addrs, Ctrl), String> {
    let a = testdev::find().map_err(|e| format!("test device: {e}"))?;
    let c = Ctrl::open(&a).map_err(|e| format!("test device registers: {e}"))?;
    Ok((a, c))
}

/// Map the data window through `/dev/mem` (at its physical address) or the
/// first UIO device (map 0 is at offset 0 of /dev/uio0).
fn map_window(how: &str, a: &Addrs) -> Result<Mapping, String> {
    match how {
        "devmem" => {
            Mapping::open("/dev/mem", a.data, a.data_len as usize).map_err(|e| e.to_string())
        }
        "uio" => {
            let len = testdev::uio_map_size(0).map_err(|e| format!("UIO map 0: {e}"))?;
            Mapping::open("/dev/uio0", 0, len).map_err(|e| e.to_string())
        }
        _ => Err(format!("unknown mapping {how} (devmem or uio)")),
    }
}

fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn devio(args: &[String]) -> ExitCode {
    let how = opt(args, "--map").unwrap_or("devmem");
    let (a, ctrl) = match device() {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let map = match map_window(how, &a) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    if map.len() < REGION_LEN {
        return fail("the window is too small");
    }
    ctrl.set_phase(if how == "uio" { "rs-uio" } else { "rs-devm" });
    // SAFETY: the first REGION_LEN bytes of the mapping, used only through this slice.
    let dev = unsafe { std::slice::from_raw_parts_mut(map.ptr(), REGION_LEN) };
    let mut w = Work {
        dev,
        window_offset: 0,
        ram: vec![0; REGION_LEN],
        ctrl: &ctrl,
        rng: Rng::new(0x5eed),
    };
    let steps = w.run();
    ctrl.set_phase("idle");
    let mut ok = true;
    for r in &steps {
        ok &= r.ok;
        println!(
            "@nisv rs {how} {} {} bytes={} nisv={}{}{}",
            r.name,
            if r.ok { "ok" } else { "FAIL" },
            r.bytes,
            r.nisv,
            if r.detail.is_empty() { "" } else { " " },
            r.detail
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn smp_cmd(args: &[String]) -> ExitCode {
    let iters = opt(args, "--iters")
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (a, ctrl) = match device() {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let map = match map_window(opt(args, "--map").unwrap_or("devmem"), &a) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let threads = smp::cpus().min(2);
    ctrl.set_phase("rs-smp");
    let ok = smp::run(&map, &ctrl, threads, iters, "rs");
    ctrl.set_phase("idle");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fb_cmd(args: &[String]) -> ExitCode {
    let (_, ctrl) = match device() {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let fbcon = args.iter().any(|a| a == "--fbcon");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut lines = vec!["KVM-NISV FRAMEBUFFER".to_string()];
    match args.iter().find(|a| !a.starts_with("--")) {
        Some(t) => lines.push(t.clone()),
        None => lines.push(format!("LINUX {}", release.trim())),
    }
    let r = fb::run(&ctrl, &lines, fbcon);
    ctrl.set_phase("idle");
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => fail(e),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    match args.first().map(String::as_str) {
        Some("devio") => devio(rest),
        Some("smp") => smp_cmd(rest),
        Some("fb") => fb_cmd(rest),
        Some("phase") => match (device(), rest.first()) {
            (Ok((_, c)), Some(name)) => {
                c.set_phase(name);
                ExitCode::SUCCESS
            }
            (Err(e), _) => fail(e),
            _ => usage(),
        },
        Some("exit") => match (device(), rest.first().and_then(|v| v.parse::<u64>().ok())) {
            (Ok((_, c)), Some(n)) => {
                // Let the serial console transmit what is queued before the
                // power-off that follows.
                // SAFETY: tcdrain on our stdout; an error (not a tty) is harmless.
                unsafe { libc::tcdrain(1) };
                c.set_exit_status(n);
                ExitCode::SUCCESS
            }
            (Err(e), _) => fail(e),
            _ => usage(),
        },
        _ => usage(),
    }
}
