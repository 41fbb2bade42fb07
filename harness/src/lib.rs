// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The emulated arm64 KVM host harness: shared pieces of the init (which runs
//! the tests inside the guest kernel) and of the host-side report tool.
//!
//! The console protocol between them is a few marker lines, each on its own
//! line, all starting with [`MARK`]:
//!
//! ```text
//! @@kvm-nisv start kernel=6.12.117+deb12-arm64 uptime=4.21 kvm=yes executables=5
//! @@kvm-nisv begin kvm-nisv/kvm_cap
//! test cap_values ... ok              (libtest's own lines, --test-threads=1)
//! @@kvm-nisv end kvm-nisv/kvm_cap exit=0 seconds=0.35
//! @@kvm-nisv done executables=5 seconds=12.50
//! ```
//!
//! `exit=` is the exit code, `signal-N` or `timeout`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// Prefix of every marker line the init prints.
pub const MARK: &str = "@@kvm-nisv";

/// The outcome of one test on one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// libtest printed `ok`.
    Ok,
    /// libtest printed `FAILED`, or the executable died while running it.
    Failed,
    /// libtest printed `ignored`.
    Ignored,
    /// Not reported on this kernel although another kernel reported it.
    Missing,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Ok => "ok",
            Status::Failed => "FAILED",
            Status::Ignored => "ignored",
            Status::Missing => "missing",
        })
    }
}

/// Everything parsed from one kernel's console log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    /// `uname -r` as the init reported it (`None`: the init never started).
    pub kernel: Option<String>,
    /// Seconds from kernel start to the init (from `/proc/uptime`).
    pub boot_seconds: Option<f64>,
    /// Whether `/dev/kvm` existed.
    pub kvm: Option<bool>,
    /// The `done` marker was seen (the init ran to the end).
    pub done: bool,
    /// Seconds the init spent running tests (from the `done` marker).
    pub run_seconds: Option<f64>,
    /// Results keyed by `executable::test`.
    pub results: BTreeMap<String, Status>,
    /// Per executable: exit description and seconds.
    pub executables: Vec<(String, String, f64)>,
}

impl Run {
    /// Number of results with this status.
    pub fn count(&self, s: Status) -> usize {
        self.results.values().filter(|&&v| v == s).count()
    }
}

fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Split a libtest result word (`ok`, `FAILED`, `ignored`, `ignored, reason`).
fn result_word(s: &str) -> Option<Status> {
    let s = s.trim();
    if s == "ok" {
        Some(Status::Ok)
    } else if s == "FAILED" {
        Some(Status::Failed)
    } else if s == "ignored" || s.starts_with("ignored,") {
        Some(Status::Ignored)
    } else {
        None
    }
}

/// One console line (or the part before a marker) inside executable `e`.
fn test_line(
    line: &str,
    e: &str,
    run: &mut Run,
    pending: &mut Option<String>,
    exe_failed: &mut bool,
) {
    if let Some(rest) = line.strip_prefix("test ") {
        if rest.starts_with("result:") {
            return;
        }
        if let Some((name, result)) = rest.split_once(" ...") {
            let name = name.trim().to_string();
            match result_word(result) {
                Some(s) => {
                    *exe_failed |= s == Status::Failed;
                    run.results.insert(format!("{e}::{name}"), s);
                    *pending = None;
                }
                None => *pending = Some(name),
            }
            return;
        }
    }
    if let Some(s) = result_word(line)
        && let Some(t) = pending.take()
    {
        *exe_failed |= s == Status::Failed;
        run.results.insert(format!("{e}::{t}"), s);
    }
}

/// Where a line of the kernel's log (printk's `[    9.797715] ` timestamp)
/// starts in `line`, if it has one.
fn kmsg_at(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    // The end of the run of ASCII digits from `i`, and its length.
    let digits = |i: usize| {
        let n = b
            .get(i..)
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
        (i + n, n)
    };
    line.match_indices('[')
        .map(|(start, _)| start)
        .find(|&start| {
            let spaces = b[start + 1..].iter().take_while(|&&c| c == b' ').count();
            let (i, whole) = digits(start + 1 + spaces);
            if whole == 0 || b.get(i) != Some(&b'.') {
                return false;
            }
            let (j, frac) = digits(i + 1);
            frac == 6 && b.get(j) == Some(&b']')
        })
}

/// The console's lines, with the kernel's messages taken out of the protocol
/// lines they cut in two.
///
/// The init's output goes through the console tty; the kernel prints its
/// messages straight to the same UART, so a message can land in the middle of
/// a line the init or libtest is writing:
///
/// ```text
/// test probe_without_the_capability ... [    9.797715] kvm [75]: Data abort ...
/// ok
/// @@kvm-nisv st[    5.701234] rcu: INFO: rcu_preempt detected stalls ...
/// [    5.701240] ...
/// art kernel=6.12.118+deb13-arm64 uptime=5.72 kvm=yes executables=31
/// ```
///
/// When the part before a timestamp is the start of a marker or of a libtest
/// `test ` line, the line continues after the message: the kernel's lines are
/// dropped and the two parts joined. Any other line is left as it is (tests
/// print kernel logs of their own, the Linux guest's for one).
fn protocol_lines(log: &str) -> Vec<Cow<'_, str>> {
    let mut out = Vec::new();
    // The first part(s) of a protocol line a kernel message cut.
    let mut carry: Option<String> = None;
    for raw in log.lines() {
        let raw = raw.trim_end_matches('\r');
        match (kmsg_at(raw), carry.as_mut()) {
            // More of the kernel's lines (p = 0), or another part of the cut
            // line before the next message.
            (Some(p), Some(c)) => c.push_str(&raw[..p]),
            (Some(p), None)
                if p > 0
                    && (raw[..p].contains(MARK) || raw[..p].trim_start().starts_with("test ")) =>
            {
                carry = Some(raw[..p].to_string());
            }
            // The rest of the cut line.
            (None, Some(c)) => {
                c.push_str(raw);
                out.extend(carry.take().map(Cow::Owned));
            }
            (_, None) => out.push(Cow::Borrowed(raw)),
        }
    }
    out.extend(carry.map(Cow::Owned));
    out
}

/// Parse one kernel's console log (`\r` already stripped or not).
///
/// Kernel messages that cut a marker or a libtest line in two are taken out
/// first (see `protocol_lines`).
///
/// libtest's `test NAME ... RESULT` lines are attributed to the executable
/// between the surrounding `begin`/`end` markers. If a test writes to the
/// inherited stdout (a child process, `--nocapture`), the result word may come
/// on a later line; a bare `ok`/`FAILED`/`ignored` line completes the pending
/// test. A test that started but never reported, in an executable that ended,
/// counts as failed; so does an executable that exited non-zero without any
/// failed test (a crash, a timeout, or a harness error such as a bad filter).
pub fn parse_console(log: &str) -> Run {
    let mut run = Run::default();
    let mut exe: Option<String> = None;
    let mut pending: Option<String> = None;
    let mut exe_failed = false;
    for raw in protocol_lines(log) {
        let raw: &str = &raw;
        let (line, marker) = match raw.find(MARK) {
            Some(pos) => (&raw[..pos], Some(&raw[pos + MARK.len()..])),
            None => (raw, None),
        };
        if let Some(e) = exe.as_deref() {
            test_line(line, e, &mut run, &mut pending, &mut exe_failed);
        }
        if let Some(rest) = marker {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.first().copied() {
                Some("start") => {
                    run.kernel = field(&words, "kernel").map(str::to_string);
                    run.boot_seconds = field(&words, "uptime").and_then(|v| v.parse().ok());
                    run.kvm = field(&words, "kvm").map(|v| v == "yes");
                }
                Some("begin") => {
                    exe = words.get(1).map(|s| s.to_string());
                    pending = None;
                    exe_failed = false;
                }
                Some("end") => {
                    let name = words.get(1).map_or_else(String::new, |s| s.to_string());
                    let exit = field(&words, "exit").unwrap_or("?").to_string();
                    let secs = field(&words, "seconds")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0.0);
                    if let Some(t) = pending.take() {
                        run.results.insert(format!("{name}::{t}"), Status::Failed);
                        exe_failed = true;
                    }
                    if exit != "0" && !exe_failed {
                        run.results
                            .insert(format!("{name}::<exit {exit}>"), Status::Failed);
                    }
                    run.executables.push((name, exit, secs));
                    exe = None;
                }
                Some("done") => {
                    run.done = true;
                    run.run_seconds = field(&words, "seconds").and_then(|v| v.parse().ok());
                }
                _ => {}
            }
        }
    }
    // An executable that began but never ended: the kernel died or timed out.
    if let Some(e) = exe {
        let t = pending.unwrap_or_else(|| "<never ended>".to_string());
        run.results.insert(format!("{e}::{t}"), Status::Failed);
    }
    run
}

/// The name under which a test executable is run and reported.
///
/// `package_id` is cargo's (`path+file:///w/kvm-nisv#0.1.0`,
/// `path+file:///w/dir#name@0.1.0` or the older `name 0.1.0 (path+...)`),
/// `kind` the target kind (`lib`, `bin`, `test`, `example`...), `target` the
/// target name. Libraries: `pkg/lib`; integration tests: `pkg/target`;
/// others: `pkg/kind/target`.
pub fn exe_display_name(package_id: &str, kind: &str, target: &str) -> String {
    let pkg = if let Some((path, frag)) = package_id.rsplit_once('#') {
        match frag.split_once('@') {
            Some((name, _)) => name.to_string(),
            None => path.rsplit('/').next().unwrap_or(path).to_string(),
        }
    } else {
        package_id
            .split_whitespace()
            .next()
            .unwrap_or(package_id)
            .to_string()
    };
    match kind {
        "lib" | "rlib" | "proc-macro" | "cdylib" | "staticlib" | "dylib" => format!("{pkg}/lib"),
        "test" => format!("{pkg}/{target}"),
        k => format!("{pkg}/{k}/{target}"),
    }
}

/// One executable from cargo's JSON messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// [`exe_display_name`].
    pub name: String,
    /// Path of the built executable.
    pub path: String,
    /// Built with the test harness (`profile.test`).
    pub test: bool,
    /// The target name (for binaries: the binary name).
    pub target: String,
}

/// Executables in `cargo ... --message-format=json` output.
pub fn parse_cargo_json(text: &str) -> Vec<Artifact> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(path) = v["executable"].as_str() else {
            continue;
        };
        let pkg = v["package_id"].as_str().unwrap_or("?");
        let kind = v["target"]["kind"][0].as_str().unwrap_or("?");
        let target = v["target"]["name"].as_str().unwrap_or("?").to_string();
        out.push(Artifact {
            name: exe_display_name(pkg, kind, &target),
            path: path.to_string(),
            test: v["profile"]["test"].as_bool().unwrap_or(false),
            target,
        });
    }
    out
}

/// A file name for an executable display name (`/` is not allowed).
pub fn file_name(display: &str) -> String {
    display.replace('/', "+")
}

/// The inverse of [`file_name`].
pub fn display_from_file(file: &str) -> String {
    file.replace('+', "/")
}

/// Files a test printed on the console (name, bytes):
///
/// ```text
/// @@kvm-nisv file screenshot.png bytes=1234
/// @@kvm-nisv data iVBORw0KGgo...            (base64, any number of lines)
/// @@kvm-nisv file-end screenshot.png
/// ```
///
/// A block whose decoded size differs from `bytes=`, whose base64 is broken or
/// that never ends is dropped; a name with a path separator or `..` too.
pub fn extract_files(log: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, usize, String)> = None;
    for raw in log.lines() {
        let Some(pos) = raw.find(MARK) else {
            continue;
        };
        let words: Vec<&str> = raw[pos + MARK.len()..].split_whitespace().collect();
        match (words.first().copied(), words.get(1).copied()) {
            (Some("file"), Some(name)) => {
                let bytes = field(&words, "bytes").and_then(|v| v.parse().ok());
                let safe = !name.contains('/') && !name.contains("..") && !name.is_empty();
                cur = match bytes {
                    Some(n) if safe => Some((name.to_string(), n, String::new())),
                    _ => None,
                };
            }
            (Some("data"), Some(chunk)) => {
                if let Some((_, _, text)) = cur.as_mut() {
                    text.push_str(chunk);
                }
            }
            (Some("file-end"), Some(name)) => {
                if let Some((n, size, text)) = cur.take()
                    && n == name
                    && let Some(data) = base64_decode(&text)
                    && data.len() == size
                {
                    out.push((n, data));
                }
            }
            _ => {}
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding); `None` on any other character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for q in b.chunks(4) {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || q[..4 - pad].contains(&b'=') {
            return None;
        }
        let mut v = 0u32;
        for &c in &q[..4 - pad] {
            v = v << 6 | val(c)?;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]\r
@@kvm-nisv start kernel=6.1.0-56-arm64 uptime=5.10 kvm=yes executables=3\r
@@kvm-nisv begin kvm-nisv/kvm_cap\r

running 3 tests
test cap_values ... ok
test enable_twice ... FAILED
test slow_one ... ignored, needs a real host
test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out
@@kvm-nisv end kvm-nisv/kvm_cap exit=101 seconds=0.50
@@kvm-nisv begin kvm-nisv-vmm/guest_classes
test classes_mmu_off ... UART: hello
[   20.1] some kernel message
ok
test crashes ... @@kvm-nisv end kvm-nisv-vmm/guest_classes exit=signal-11 seconds=1.00
@@kvm-nisv begin kvm-nisv/lib
@@kvm-nisv end kvm-nisv/lib exit=timeout seconds=900.00
@@kvm-nisv done executables=3 seconds=901.75
";

    #[test]
    fn parses_results_markers_and_crashes() {
        let r = parse_console(LOG);
        assert_eq!(r.kernel.as_deref(), Some("6.1.0-56-arm64"));
        assert_eq!(r.boot_seconds, Some(5.10));
        assert_eq!(r.kvm, Some(true));
        assert!(r.done);
        assert_eq!(r.run_seconds, Some(901.75));
        let get = |k: &str| r.results.get(k).copied();
        assert_eq!(get("kvm-nisv/kvm_cap::cap_values"), Some(Status::Ok));
        assert_eq!(get("kvm-nisv/kvm_cap::enable_twice"), Some(Status::Failed));
        assert_eq!(get("kvm-nisv/kvm_cap::slow_one"), Some(Status::Ignored));
        // exit 101 with a FAILED test: no extra synthetic entry.
        assert_eq!(get("kvm-nisv/kvm_cap::<exit 101>"), None);
        // The result word came on a later line after the child's output.
        assert_eq!(
            get("kvm-nisv-vmm/guest_classes::classes_mmu_off"),
            Some(Status::Ok)
        );
        // Started, never finished: the executable crashed.
        assert_eq!(
            get("kvm-nisv-vmm/guest_classes::crashes"),
            Some(Status::Failed)
        );
        assert_eq!(get("kvm-nisv/lib::<exit timeout>"), Some(Status::Failed));
        assert_eq!(r.count(Status::Ok), 2);
        assert_eq!(r.count(Status::Failed), 3);
        assert_eq!(r.count(Status::Ignored), 1);
        assert_eq!(r.executables.len(), 3);
        assert_eq!(r.executables[1].1, "signal-11");
    }

    #[test]
    fn kernel_messages_inside_protocol_lines() {
        let log = "\
@@kvm-nisv st[    5.701234] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[    5.701240] \t1-...!: (0 ticks this GP) idle=8a4c
art kernel=6.12.118+deb13-arm64 uptime=5.72 kvm=yes executables=2
@@kvm-nisv begin kvm-nisv/abi_probe
test probe_without_the_capability ... [    9.797715] kvm [75]: Data abort outside memslots with no valid syndrome info
ok
test probe_with[   10.000001] kvm [75]: Data abort outside memslots with no valid syndrome info
out_the_cap ... ok
@@kvm-nisv end kvm-nisv/abi_probe exit=0 seconds=1.01
@@kvm-nisv begin kvm-nisv-vmm/linux_guest
@nisv dmesg [    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]
[    0.000000] Linux version 6.12 (the guest's own console)
test boots ... ok
@@kvm-nisv end kvm-nisv-vmm/linux_guest exit=0 seconds=2.00
@@kvm-nisv done executables=2 sec[  366.826235] reboot: Power down
onds=361.03
";
        let r = parse_console(log);
        assert_eq!(r.kernel.as_deref(), Some("6.12.118+deb13-arm64"));
        assert_eq!(r.kvm, Some(true));
        assert!(r.done);
        assert_eq!(r.run_seconds, Some(361.03));
        let names: Vec<_> = r.results.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "kvm-nisv-vmm/linux_guest::boots",
                "kvm-nisv/abi_probe::probe_without_the_cap",
                "kvm-nisv/abi_probe::probe_without_the_capability",
            ]
        );
        assert_eq!(r.count(Status::Ok), 3);
        assert_eq!(r.executables.len(), 2);
        // A line that merely holds a timestamp is left alone.
        let lines = protocol_lines(log);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("@nisv dmesg [    0.000000] Booting"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("[    0.000000] Linux version"))
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("rcu") || l.contains("Data abort"))
        );
    }

    #[test]
    fn kmsg_timestamps() {
        assert_eq!(kmsg_at("[    0.000000] Booting"), Some(0));
        assert_eq!(kmsg_at("test x ... [  366.826235] reboot"), Some(11));
        assert_eq!(kmsg_at("[12345.123456]"), Some(0));
        // Not printk's format: no digits, wrong precision, no bracket.
        assert_eq!(kmsg_at("[   20.1] short"), None);
        assert_eq!(kmsg_at("[ .123456]"), None);
        assert_eq!(kmsg_at("[0x000f0510] [ 1.1234567]"), None);
        assert_eq!(kmsg_at("[    9.797715"), None);
        assert_eq!(kmsg_at("[[ 1.000000]"), Some(1));
        assert_eq!(kmsg_at(""), None);
    }

    #[test]
    fn an_unfinished_interrupted_line_at_the_end_is_kept() {
        let r = parse_console(
            "@@kvm-nisv start kernel=k uptime=1 kvm=yes executables=0\n\
             @@kvm-nisv done executables=0 seconds=1.50[  366.826235] reboot: Power down\n",
        );
        assert!(r.done);
        assert_eq!(r.run_seconds, Some(1.5));
    }

    #[test]
    fn kernel_that_never_reached_init_or_died() {
        let r = parse_console("[    0.0] Booting Linux\nKernel panic - not syncing\n");
        assert_eq!(r.kernel, None);
        assert!(!r.done);
        assert!(r.results.is_empty());

        let r = parse_console(
            "@@kvm-nisv start kernel=x uptime=1 kvm=no executables=1\n\
             @@kvm-nisv begin a/lib\ntest t1 ... ok\ntest t2 ... ",
        );
        assert_eq!(r.kvm, Some(false));
        assert!(!r.done);
        assert_eq!(r.results.get("a/lib::t1"), Some(&Status::Ok));
        assert_eq!(r.results.get("a/lib::t2"), Some(&Status::Failed));
    }

    #[test]
    fn names_from_cargo_package_ids() {
        assert_eq!(
            exe_display_name("path+file:///work/main/kvm-nisv#0.1.0", "lib", "kvm_nisv"),
            "kvm-nisv/lib"
        );
        assert_eq!(
            exe_display_name(
                "path+file:///w/dir#kvm-nisv-vmm@0.1.0",
                "test",
                "guest_abort"
            ),
            "kvm-nisv-vmm/guest_abort"
        );
        assert_eq!(
            exe_display_name(
                "kvm-nisv-vmm 0.1.0 (path+file:///w/kvm-nisv-vmm)",
                "bin",
                "kvm-nisv-vmm"
            ),
            "kvm-nisv-vmm/bin/kvm-nisv-vmm"
        );
        assert_eq!(file_name("a/bin/b"), "a+bin+b");
        assert_eq!(display_from_file("a+bin+b"), "a/bin/b");
    }

    #[test]
    fn cargo_json_artifacts() {
        let json = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/kvm-nisv#0.1.0","target":{"kind":["test"],"name":"kvm_cap"},"profile":{"test":true},"executable":"/t/deps/kvm_cap-0123"}
{"reason":"compiler-artifact","package_id":"path+file:///w/kvm-nisv#0.1.0","target":{"kind":["lib"],"name":"kvm_nisv"},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","package_id":"path+file:///w/kvm-nisv-vmm#0.1.0","target":{"kind":["bin"],"name":"kvm-nisv-vmm"},"profile":{"test":false},"executable":"/t/kvm-nisv-vmm"}
{"reason":"build-finished","success":true}
not json"#;
        let a = parse_cargo_json(json);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].name, "kvm-nisv/kvm_cap");
        assert!(a[0].test);
        assert_eq!(a[1].name, "kvm-nisv-vmm/bin/kvm-nisv-vmm");
        assert!(!a[1].test);
        assert_eq!(a[1].path, "/t/kvm-nisv-vmm");
    }

    #[test]
    fn files_are_extracted_from_the_console() {
        let log = "junk\n\
            @@kvm-nisv file a.bin bytes=5\n\
            [6.12] @@kvm-nisv data aGVs\n\
            @@kvm-nisv data bG8=\n\
            @@kvm-nisv file-end a.bin\n\
            @@kvm-nisv file bad.bin bytes=9\n\
            @@kvm-nisv data aGVsbG8=\n\
            @@kvm-nisv file-end bad.bin\n\
            @@kvm-nisv file ../x bytes=1\n\
            @@kvm-nisv data QQ==\n\
            @@kvm-nisv file-end ../x\n\
            @@kvm-nisv file c bytes=1\n\
            @@kvm-nisv data Q!==\n\
            @@kvm-nisv file-end c\n\
            @@kvm-nisv file open bytes=1\n\
            @@kvm-nisv data QQ==\n";
        assert_eq!(
            extract_files(log),
            vec![("a.bin".to_string(), b"hello".to_vec())]
        );
        assert_eq!(base64_decode(""), Some(vec![]));
        assert_eq!(base64_decode("QUJD"), Some(b"ABC".to_vec()));
        assert_eq!(base64_decode("QUI="), Some(b"AB".to_vec()));
        assert_eq!(base64_decode("QUI"), None);
        assert_eq!(base64_decode("Q==="), None);
        assert_eq!(base64_decode("Q=I="), None);
        // The console parser ignores the blocks.
        let r = parse_console(log);
        assert!(r.results.is_empty());
    }
}
