// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Linux in kvm-nisv-vmm, to a userspace that does real device I/O
//! (guests/linux/README.md; aarch64 with /dev/kvm only: the emulated arm64 host
//! runs them).
//!
//! The guest kernel is `$KVM_NISV_LINUX_IMAGE` (scripts/arm64-host puts the
//! booted host kernel's own Debian Image at /linux/Image) and the initramfs the
//! `initramfs.cpio` next to it (scripts/build-linux-guest: busybox, the init,
//! nisv-rs and nisv-c). The tests assert on what the guest printed (`@nisv`
//! lines), on the VMM's exit status (the guest's result through the test
//! device's EXIT_STATUS register and PSCI SYSTEM_OFF), on the VMM's exit table
//! (exits per guest phase, device and instruction class) and on the
//! screenshot's pixels.
//!
//! `KVM_NISV_LINUX_STREAM=1` copies the guest console and the VMM's messages
//! to stdout as they come (scripts/demo). The screenshot is also printed as
//! base64 between `@@kvm-nisv file` markers, which the host-side report tool
//! writes to `target/arm64-host/<kernel>/screenshot.png`.

#![cfg(target_arch = "aarch64")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn vmm() -> PathBuf {
    std::env::var_os("KVM_NISV_VMM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kvm-nisv-vmm")))
}

/// The guest kernel and its initramfs. Panics when they are missing: these
/// tests must never pass without booting Linux.
fn linux() -> (PathBuf, PathBuf) {
    let image = PathBuf::from(
        std::env::var_os("KVM_NISV_LINUX_IMAGE")
            .expect("KVM_NISV_LINUX_IMAGE is not set (scripts/arm64-host provides it)"),
    );
    let initrd = image.with_file_name("initramfs.cpio");
    assert!(image.is_file(), "{} is missing", image.display());
    assert!(
        initrd.is_file(),
        "{} is missing (scripts/build-linux-guest)",
        initrd.display()
    );
    (image, initrd)
}

fn stream() -> bool {
    std::env::var("KVM_NISV_LINUX_STREAM").is_ok_and(|v| v == "1")
}

/// Write straight to the process's stdout (not captured by libtest).
fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(line.as_bytes());
    let _ = o.write_all(b"\n");
    let _ = o.flush();
}

/// One exit-table row of the VMM (exit_stats.rs).
#[derive(Debug, Clone, PartialEq)]
struct Row {
    phase: String,
    kind: String,
    device: String,
    class: String,
    count: u64,
    total_ms: f64,
}

#[derive(Debug)]
struct Boot {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    seconds: f64,
}

impl Boot {
    /// `@nisv` lines of the guest, without the prefix.
    fn nisv(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix("@nisv "))
            .collect()
    }

    fn has(&self, prefix: &str) -> Option<&str> {
        self.nisv().into_iter().find(|l| l.starts_with(prefix))
    }

    /// The VMM's exit table (the `exits` rows of exit_stats.rs).
    fn rows(&self) -> Vec<Row> {
        let mut v = Vec::new();
        for l in self.stderr.lines() {
            let Some(rest) = l.strip_prefix("kvm-nisv-vmm: exits ") else {
                continue;
            };
            let w: Vec<&str> = rest.split_whitespace().collect();
            if w.len() != 7 || w[0] == "phase" {
                continue;
            }
            v.push(Row {
                phase: w[0].into(),
                kind: w[1].into(),
                device: w[2].into(),
                class: w[3].into(),
                count: w[4].parse().unwrap_or(0),
                total_ms: w[5].parse().unwrap_or(0.0),
            });
        }
        v
    }

    /// NISV exits of `phase` on `device`, per class.
    fn nisv_classes(&self, phase: &str, device: &str) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for r in self.rows() {
            if r.phase == phase && r.kind == "nisv" && r.device == device {
                *m.entry(r.class).or_insert(0) += r.count;
            }
        }
        m
    }

    fn exits(&self, phase: &str, kind: &str, device: &str) -> u64 {
        self.rows()
            .iter()
            .filter(|r| r.phase == phase && r.kind == kind && r.device == device)
            .map(|r| r.count)
            .sum()
    }

    fn dump(&self) -> String {
        format!(
            "exit {:?} after {:.1} s\n--- guest ---\n{}\n--- vmm ---\n{}",
            self.code, self.seconds, self.stdout, self.stderr
        )
    }
}

/// Boot the guest with `cpus` vCPUs running the init steps `run`.
fn boot(name: &str, cpus: u8, run: &str, extra: &[&str], timeout: Duration) -> Boot {
    let (image, initrd) = linux();
    let cmdline = format!(
        "console=ttyS0 earlycon=uart8250,mmio,0x9000000 panic=-1 quiet fbcon=map:1 NISV_RUN={run}"
    );
    let mut cmd = Command::new(vmm());
    cmd.arg("run")
        .arg("--kernel")
        .arg(&image)
        .arg("--initrd")
        .arg(&initrd)
        .args(["--mem", "256M", "--cpus", &cpus.to_string()])
        .args(["--cmdline", &cmdline])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stream() {
        // On a line of its own (libtest's "test NAME ... " has no newline yet).
        out(&format!(
            "\n@@demo boot {name}: {cpus} vCPU(s), NISV_RUN={run}"
        ));
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("spawn kvm-nisv-vmm");
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let readers: Vec<_> = [
        (
            false,
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        ),
        (true, Box::new(child.stderr.take().unwrap())),
    ]
    .into_iter()
    .map(|(is_err, r)| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if tx.send((is_err, line)).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let mut killed = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((is_err, line)) => {
                let line = line.trim_end_matches('\r').to_string();
                if stream() {
                    out(&format!(
                        "{} {line}",
                        if is_err { "vmm|" } else { "guest|" }
                    ));
                }
                let buf = if is_err { &mut stderr } else { &mut stdout };
                buf.push_str(&line);
                buf.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !killed && t0.elapsed() > timeout {
                    let _ = child.kill();
                    killed = true;
                }
            }
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().expect("wait for kvm-nisv-vmm");
    let b = Boot {
        code: if killed { None } else { status.code() },
        stdout,
        stderr,
        seconds: t0.elapsed().as_secs_f64(),
    };
    eprintln!("{name}: {}", b.dump());
    // The guest's results and the VMM's exit table go to the console log of
    // every run (passing or not): they are the measurement.
    if !stream() {
        for l in b
            .stdout
            .lines()
            .filter(|l| l.starts_with("@nisv ") && !l.contains(" dmesg "))
        {
            out(&format!("linux_guest: {name}: {l}"));
        }
        for l in b.stderr.lines().filter(|l| l.starts_with("kvm-nisv-vmm:")) {
            out(&format!("linux_guest: {name}: {l}"));
        }
    }
    out(&format!(
        "linux_guest: {name}: exit {:?} after {:.1} s",
        b.code, b.seconds
    ));
    b
}

/// Checks every test makes on a boot: it got to the init, the kernel found
/// what the device tree describes, and the init ran to the end with no failure.
fn check_common(b: &Boot, cpus: u8) {
    let d = b.dump();
    let start = b
        .has("init start")
        .unwrap_or_else(|| panic!("no init: {d}"));
    assert!(start.contains(&format!("cpus={cpus}")), "{start}\n{d}");
    let dmesg: Vec<&str> = b
        .nisv()
        .into_iter()
        .filter_map(|l| l.strip_prefix("dmesg "))
        .collect();
    let seen = |pat: &str| dmesg.iter().any(|l| l.contains(pat));
    assert!(seen("psci: PSCIv"), "PSCI: {d}");
    assert!(seen("GICv3"), "GICv3: {d}");
    assert!(seen("earlycon: uart8250"), "earlycon on the ns16550a: {d}");
    assert!(
        dmesg
            .iter()
            .any(|l| l.contains("console [ttyS0]") && l.contains("enabled")),
        "console on ttyS0: {d}"
    );
    assert!(
        seen(&format!("SMP: Total of {cpus} processor")),
        "all vCPUs up: {d}"
    );
    assert!(b.has("init done fails=0").is_some(), "init result: {d}");
    assert_eq!(
        b.code,
        Some(0),
        "the guest's status through EXIT_STATUS: {d}"
    );
    assert!(
        !b.stderr.contains("SYSTEM_RESET"),
        "powered off, not reset: {d}"
    );
    assert!(
        b.stderr
            .lines()
            .any(|l| l.contains("VMM peak RSS") && l.contains("VMM's own")),
        "footprint line: {d}"
    );
}

/// Every `@nisv <prog> <what> <step>` line of the device workload passed.
fn check_devio(b: &Boot, prog: &str, what: &str) {
    let d = b.dump();
    for step in ["fill", "memcpy", "memset", "structs", "loops", "readback"] {
        let p = format!("{prog} {what} {step} ");
        let l = b.has(&p).unwrap_or_else(|| panic!("no {p}line: {d}"));
        assert!(l.starts_with(&format!("{p}ok ")), "{l}\n{d}");
    }
}

// ---------------------------------------------------------------- the PNG --

const BARS: [u16; 8] = [
    0xffff, 0xffe0, 0x07ff, 0x07e0, 0xf81f, 0xf800, 0x001f, 0x0000,
];
const TEXT_BG: u16 = 0x0010;
const TEXT_FG: u16 = 0xffe0;

fn rgb(c: u16) -> [u8; 3] {
    let (r, g, b) = ((c >> 11) as u8, ((c >> 5) & 0x3f) as u8, (c & 0x1f) as u8);
    [r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2]
}

/// The pattern of docs/guest-interface.md, "Framebuffer test pattern".
fn expected(x: usize, y: usize, w: usize, h: usize) -> u16 {
    if y < h / 2 {
        BARS[x * 8 / w]
    } else {
        let r = (x * 32 / w) as u16;
        let g = ((y - h / 2) * 64 / (h / 4)) as u16;
        r << 11 | g << 5 | (31 - r)
    }
}

/// Check the screenshot: pattern exact, text area only background and text
/// colour, text lines not background (and the first letter, `K`, exact).
fn check_png(path: &std::path::Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dec = png::Decoder::new(std::io::Cursor::new(&bytes));
    let mut r = dec.read_info().expect("a PNG");
    let mut buf = vec![0; r.output_buffer_size().expect("size")];
    let info = r.next_frame(&mut buf).expect("a frame");
    assert_eq!((info.width, info.height), (320, 240));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let (w, h) = (320usize, 240usize);
    let px = |x: usize, y: usize| -> [u8; 3] {
        let o = (y * w + x) * 3;
        [buf[o], buf[o + 1], buf[o + 2]]
    };
    let text_top = h * 3 / 4;
    for y in 0..text_top {
        for x in 0..w {
            assert_eq!(
                px(x, y),
                rgb(expected(x, y, w, h)),
                "pattern pixel ({x}, {y})"
            );
        }
    }
    let (bg, fg) = (rgb(TEXT_BG), rgb(TEXT_FG));
    let mut fg_rows = Vec::new();
    for y in text_top..h {
        let mut n = 0;
        for x in 0..w {
            let p = px(x, y);
            assert!(p == bg || p == fg, "text area pixel ({x}, {y}) = {p:?}");
            n += usize::from(p == fg);
        }
        if n > 0 {
            fg_rows.push(y);
        }
    }
    // Two lines of 5x7 glyphs at scale 2: rows text_top+8..+22 and +28..+42.
    let line1: Vec<usize> = (text_top + 8..text_top + 22).collect();
    let line2: Vec<usize> = (text_top + 28..text_top + 42).collect();
    for y in line1.iter().chain(&line2) {
        assert!(fg_rows.contains(y), "text row {y} is all background");
    }
    assert!(
        fg_rows
            .iter()
            .all(|y| line1.contains(y) || line2.contains(y)),
        "text outside its lines: {fg_rows:?}"
    );
    // The first glyph of line 1 is K (5x7, scale 2, at x = 4).
    const K: [u8; 7] = [
        0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001,
    ];
    for (row, bits) in K.iter().enumerate() {
        for col in 0..5 {
            let on = bits >> (4 - col) & 1 == 1;
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let (x, y) = (4 + 2 * col + dx, text_top + 8 + 2 * row + dy);
                assert_eq!(px(x, y), if on { fg } else { bg }, "K at ({x}, {y})");
            }
        }
    }
    bytes
}

/// Print `bytes` as base64 between `@@kvm-nisv file NAME` and `@@kvm-nisv
/// file-end NAME` lines (every line a marker line, so the console parser
/// ignores them); the host-side report tool writes the file out.
fn export(name: &str, bytes: &[u8]) {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for c in bytes.chunks(3) {
        let v = u32::from(c[0]) << 16
            | u32::from(*c.get(1).unwrap_or(&0)) << 8
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                text.push(char::from(A[(v >> (18 - 6 * i) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    let mut o = String::from("\n");
    o.push_str(&format!("@@kvm-nisv file {name} bytes={}\n", bytes.len()));
    for chunk in text.as_bytes().chunks(76) {
        o.push_str("@@kvm-nisv data ");
        o.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        o.push('\n');
    }
    o.push_str(&format!("@@kvm-nisv file-end {name}\n"));
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(o.as_bytes());
    let _ = so.flush();
}

// ------------------------------------------------------------------ tests --

/// One vCPU: both programs through /dev/mem (and UIO when the kernel has it),
/// the libc probes, and the framebuffer in every way, with a screenshot.
#[test]
fn linux_1_vcpu_device_io_and_framebuffer() {
    let shot = std::env::temp_dir().join(format!("linux-guest-{}.png", std::process::id()));
    let b = boot(
        "1 vCPU",
        1,
        "devio,probe,fb",
        &[
            "--framebuffer",
            "320x240",
            "--screenshot",
            shot.to_str().unwrap(),
        ],
        Duration::from_secs(600),
    );
    let d = b.dump();
    check_common(&b, 1);
    check_devio(&b, "rs", "devmem");
    check_devio(&b, "c", "devmem");
    // Each program's phase reached the VMM as NISV exits on the data window,
    // and the guest's own view (NISV_COUNT deltas) agrees with the VMM's table.
    for phase in ["rs-devm", "c-devm"] {
        let classes = b.nisv_classes(phase, "testdev-data");
        let total: u64 = classes.values().sum();
        assert!(total > 0, "{phase}: no NISV exits\n{d}");
        let undecoded = classes.get("-").copied().unwrap_or(0);
        assert_eq!(undecoded, 0, "{phase}: undecoded instructions\n{d}");
    }
    let guest_sum = |prog: &str| -> u64 {
        b.nisv()
            .iter()
            .filter(|l| l.starts_with(&format!("{prog} devmem ")))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("nisv=")))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    };
    for (prog, phase) in [("rs", "rs-devm"), ("c", "c-devm")] {
        let vmm_total: u64 = b.nisv_classes(phase, "testdev-data").values().sum();
        assert_eq!(
            guest_sum(prog),
            vmm_total,
            "{prog}: guest vs VMM count\n{d}"
        );
    }
    // UIO: used when the kernel has uio_pdrv_genirq, else the init says why.
    if let Some(l) = b.has("init uio unavailable") {
        assert!(l.contains("uio_pdrv_genirq"), "{l}");
    } else {
        check_devio(&b, "rs", "uio");
        check_devio(&b, "c", "uio");
    }
    // The probes: a libc call that is fine on RAM but not on Device memory
    // takes SIGBUS (an alignment fault), as on hardware.
    for p in ["unaligned-memcpy", "zero-memset-4k"] {
        let l = b
            .has(&format!("c probe {p} "))
            .unwrap_or_else(|| panic!("no probe {p}: {d}"));
        assert!(l.contains("signal=Bus error"), "{l}\n{d}");
    }
    // The framebuffer: every way of drawing worked and reached the VMM.
    let info = b.has("rs fb info").unwrap_or_else(|| panic!("no fb: {d}"));
    assert!(
        info.contains("width=320 height=240 bpp=16 stride=640"),
        "{info}"
    );
    for step in ["fbwrite", "fbread", "fbuser", "fbdraw"] {
        let l = b
            .has(&format!("rs fb {step} "))
            .unwrap_or_else(|| panic!("no {step}: {d}"));
        assert!(l.starts_with(&format!("rs fb {step} ok")), "{l}\n{d}");
        let n = b.exits(step, "mmio", "framebuffer") + b.exits(step, "nisv", "framebuffer");
        assert!(n > 0, "{step}: no framebuffer exits\n{d}");
    }
    assert!(
        b.exits("fbuser", "nisv", "framebuffer") > 0,
        "memcpy into an mmap of /dev/fb0 makes NISV exits\n{d}"
    );
    assert!(
        b.stderr.contains("screenshot written to"),
        "screenshot at exit: {d}"
    );
    let png = check_png(&shot);
    export("screenshot.png", &png);
    let _ = std::fs::remove_file(&shot);
}

/// Two vCPUs: both programs run the workload on both CPUs at once, on
/// disjoint halves of the window, and update the shared counters with LSE
/// atomics and under an exclusives-based lock: the totals must be exact.
#[test]
fn linux_2_vcpus_smp_workload_and_counters() {
    let iters = 300u64;
    let b = boot("2 vCPUs", 2, "smp", &[], Duration::from_secs(600));
    let d = b.dump();
    check_common(&b, 2);
    for prog in ["rs", "c"] {
        for cpu in ["cpu0", "cpu1"] {
            check_devio(&b, prog, &format!("smp {cpu}"));
        }
        let l = b
            .has(&format!("{prog} smp counters"))
            .unwrap_or_else(|| panic!("no counters: {d}"));
        let want = 2 * iters;
        assert_eq!(
            l,
            format!("{prog} smp counters ok lse={want} locked={want} expected={want} threads=2"),
            "{d}"
        );
        let phase = format!("{prog}-smp");
        let classes = b.nisv_classes(&phase, "testdev-data");
        // One LDADD per increment; the lock takes at least one fused
        // LDAXR+STXR per acquisition (more when it was contended).
        assert!(
            classes.get("Atomic").copied().unwrap_or(0) >= want,
            "{phase}: {classes:?}\n{d}"
        );
        assert!(
            classes.get("Exclusive").copied().unwrap_or(0) >= want,
            "{phase}: {classes:?}\n{d}"
        );
    }
}
