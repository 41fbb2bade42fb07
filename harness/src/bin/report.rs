// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Host half of the harness.
//!
//! ```text
//! kvm-nisv-report payload --tests T.json [--bins B.json]... --out DIR
//! kvm-nisv-report bins B.json...
//! kvm-nisv-report report [--summary FILE] KERNEL=CONSOLE.log...
//! ```
//!
//! `payload` copies the test executables of `cargo test --no-run
//! --message-format=json` to `DIR/tests/<name>` and the `kvm-nisv-vmm` binary
//! of `cargo build --bins` to `DIR/bin/`. `report` parses each console log,
//! prints the test × kernel table and per-kernel figures, writes the summary
//! (`kernel passed failed` lines) and exits 1 if anything failed, a kernel did
//! not boot or finish, or a kernel ran zero tests.

use std::collections::BTreeSet;
use std::process::ExitCode;

use kvm_nisv_harness::{Run, Status, extract_files, file_name, parse_cargo_json, parse_console};

fn usage() -> ExitCode {
    eprintln!(
        "usage: kvm-nisv-report payload --tests T.json --bins B.json --out DIR\n       \
         kvm-nisv-report report [--summary FILE] KERNEL=CONSOLE.log..."
    );
    ExitCode::from(2)
}

fn opt(args: &[String], name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

/// Every value of a repeated option.
fn opt_all(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

/// Non-test binaries in cargo JSON files.
fn bins(files: &[String]) -> Result<Vec<kvm_nisv_harness::Artifact>, String> {
    let mut out = Vec::new();
    for b in files {
        let text = std::fs::read_to_string(b).map_err(|e| format!("{b}: {e}"))?;
        out.extend(
            parse_cargo_json(&text)
                .into_iter()
                .filter(|a| !a.test && a.name.contains("/bin/")),
        );
    }
    Ok(out)
}

fn payload(args: &[String]) -> Result<(), String> {
    let out = opt(args, "--out").ok_or("--out missing")?;
    let out = std::path::Path::new(&out);
    let mut n = 0;
    if let Some(t) = opt(args, "--tests") {
        let text = std::fs::read_to_string(&t).map_err(|e| format!("{t}: {e}"))?;
        let mut seen = BTreeSet::new();
        for a in parse_cargo_json(&text).into_iter().filter(|a| a.test) {
            // Examples are built by `cargo test --no-run` but are not tests.
            if a.name.contains("/example/") || !seen.insert(a.name.clone()) {
                continue;
            }
            let dst = out.join("tests").join(file_name(&a.name));
            std::fs::copy(&a.path, &dst).map_err(|e| format!("{} -> {dst:?}: {e}", a.path))?;
            n += 1;
        }
    }
    for a in bins(&opt_all(args, "--bins"))? {
        let dst = out.join("bin").join(&a.target);
        std::fs::copy(&a.path, &dst).map_err(|e| format!("{} -> {dst:?}: {e}", a.path))?;
    }
    if n == 0 {
        return Err("cargo produced no test executables".to_string());
    }
    Ok(())
}

fn report(args: &[String]) -> ExitCode {
    let summary = opt(args, "--summary");
    let mut runs: Vec<(String, Run)> = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a == "--summary" {
            skip = true;
            continue;
        }
        let Some((label, path)) = a.split_once('=') else {
            eprintln!("report: expected KERNEL=LOG, got {a}");
            return ExitCode::from(2);
        };
        let text = std::fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        // Files the tests printed (the Linux guest's screenshot) go to
        // <dir of the log>/<kernel>/<name>.
        for (name, data) in extract_files(&text) {
            let dir = std::path::Path::new(path)
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(label.replace(' ', "_"));
            let file = dir.join(&name);
            match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &data)) {
                Ok(()) => eprintln!("report: {label}: wrote {}", file.display()),
                Err(e) => eprintln!("report: cannot write {}: {e}", file.display()),
            }
        }
        runs.push((label.to_string(), parse_console(&text)));
    }
    if runs.is_empty() {
        return usage();
    }
    let all: BTreeSet<&String> = runs.iter().flat_map(|(_, r)| r.results.keys()).collect();
    let w0 = all.iter().map(|k| k.len()).max().unwrap_or(4).max(4);
    let widths: Vec<usize> = runs.iter().map(|(l, _)| l.len().max(7)).collect();

    println!();
    print!("{:w0$}", "test");
    for ((l, _), w) in runs.iter().zip(&widths) {
        print!("  {l:w$}");
    }
    println!();
    print!("{}", "-".repeat(w0));
    for w in &widths {
        print!("  {}", "-".repeat(*w));
    }
    println!();
    let mut failed = false;
    for k in &all {
        print!("{k:w0$}");
        for ((_, r), w) in runs.iter().zip(&widths) {
            let s = r.results.get(*k).copied().unwrap_or(Status::Missing);
            failed |= matches!(s, Status::Failed | Status::Missing);
            print!("  {s:w$}");
        }
        println!();
    }
    println!();
    let mut lines = String::new();
    for (label, r) in &runs {
        let (ok, bad, ign) = (
            r.count(Status::Ok),
            r.count(Status::Failed),
            r.count(Status::Ignored),
        );
        let missing = all.len() - r.results.len();
        let mut problems = Vec::new();
        if r.kernel.is_none() {
            problems.push("kernel did not reach the init".to_string());
        } else if !r.done {
            problems.push("init did not finish (crash or timeout)".to_string());
        }
        if r.kvm == Some(false) {
            problems.push("no /dev/kvm".to_string());
        }
        if r.results.is_empty() {
            problems.push("zero tests ran".to_string());
        }
        failed |= !problems.is_empty();
        let fmt_s = |v: Option<f64>| v.map_or_else(|| "?".to_string(), |s| format!("{s:.1}"));
        println!(
            "{label}: {ok} passed, {bad} failed, {ign} ignored, {missing} missing; \
             boot {} s, tests {} s{}",
            fmt_s(r.boot_seconds),
            fmt_s(r.run_seconds),
            if problems.is_empty() {
                String::new()
            } else {
                format!("; PROBLEM: {}", problems.join(", "))
            }
        );
        for (exe, exit, secs) in &r.executables {
            println!("    {exe:40} exit={exit:8} {secs:.1} s");
        }
        // A kernel that failed to boot or finish counts one failure so that
        // adding up the summary never reports success for it.
        let bad_total = bad + missing + usize::from(!problems.is_empty() && bad + missing == 0);
        lines.push_str(&format!("{} {ok} {bad_total}\n", label.replace(' ', "_")));
    }
    if let Some(path) = summary
        && let Err(e) = std::fs::write(&path, &lines)
    {
        eprintln!("report: cannot write {path}: {e}");
        return ExitCode::from(2);
    }
    println!(
        "{}",
        if failed {
            "arm64-host: FAILED"
        } else {
            "arm64-host: all passed"
        }
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("payload") => match payload(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("payload: {e}");
                ExitCode::FAILURE
            }
        },
        Some("report") => report(&args[1..]),
        // `bins FILE...`: print the non-test binaries cargo built.
        Some("bins") => match bins(&args[1..]) {
            Ok(v) => {
                v.iter().for_each(|a| println!("{}", a.target));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bins: {e}");
                ExitCode::FAILURE
            }
        },
        _ => usage(),
    }
}
