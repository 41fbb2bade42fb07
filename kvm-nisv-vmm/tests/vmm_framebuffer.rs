// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The framebuffer device and `--screenshot` with a tiny flat guest (aarch64
//! with /dev/kvm only: the emulated arm64 host runs it). The Linux side of the
//! framebuffer is in `linux_guest.rs`.

#![cfg(target_arch = "aarch64")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn vmm() -> PathBuf {
    std::env::var_os("KVM_NISV_VMM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kvm-nisv-vmm")))
}

/// Draws, then spins (assembled with aarch64-linux-gnu-as):
const GUEST: [u32; 8] = [
    0xd2af_c001, // mov  x1, #0x7e000000         (the framebuffer)
    0xd29f_0002, // mov  x2, #0xf800             (red, r5g6b5)
    0xf2bf_0002, // movk x2, #0xf800, lsl #16
    0xf2df_0002, // movk x2, #0xf800, lsl #32
    0xf2ff_0002, // movk x2, #0xf800, lsl #48
    0xa900_0822, // stp  x2, x2, [x1]            pixels 0..8 of line 0 (no syndrome: NISV)
    0xf901_4022, // str  x2, [x1, #640]          pixels 0..4 of line 1 (MMIO)
    0x1400_0000, // b    .
];

/// The picture as (width, height, RGB bytes), if the file is a complete PNG.
fn read_png(p: &Path) -> Option<(u32, u32, Vec<u8>)> {
    let bytes = std::fs::read(p).ok()?;
    let mut r = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .ok()?;
    let mut buf = vec![0; r.output_buffer_size()?];
    let info = r.next_frame(&mut buf).ok()?;
    buf.truncate(info.buffer_size());
    Some((info.width, info.height, buf))
}

/// Whether process `pid` blocks SIGUSR1 (kvm-nisv-vmm does so first thing in
/// `main`; before that the signal would kill it).
fn blocks_sigusr1(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("SigBlk:"))?;
            u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|m| m & (1 << (libc::SIGUSR1 - 1)) != 0)
}

fn drawn(rgb: &[u8], w: usize) -> bool {
    let px = |x: usize, y: usize| &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
    (0..8).all(|x| px(x, 0) == [255, 0, 0])
        && (0..4).all(|x| px(x, 1) == [255, 0, 0])
        && px(8, 0) == [0, 0, 0]
        && px(4, 1) == [0, 0, 0]
        && px(0, 2) == [0, 0, 0]
}

#[test]
fn screenshot_on_sigusr1_and_at_exit() {
    let dir = std::env::temp_dir().join(format!("vmm-fb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = dir.join("guest.bin");
    let mut img = vec![0u8; 0x1000];
    for (i, w) in GUEST.iter().enumerate() {
        img[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    std::fs::write(&kernel, &img).unwrap();
    let shot = dir.join("shot.png");
    let child = Command::new(vmm())
        .args([
            "run",
            "--mem",
            "16M",
            "--framebuffer",
            "320x240",
            "--kernel",
        ])
        .arg(&kernel)
        .arg("--screenshot")
        .arg(&shot)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // SIGUSR1 until a screenshot shows the guest's drawing (the guest needs a
    // moment to run; every signal rewrites the file).
    let t = Instant::now();
    while !blocks_sigusr1(child.id()) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the VMM never blocked SIGUSR1"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut seen = false;
    while t.elapsed() < Duration::from_secs(60) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGUSR1) };
        std::thread::sleep(Duration::from_millis(300));
        if let Some((320, 240, rgb)) = read_png(&shot)
            && drawn(&rgb, 320)
        {
            seen = true;
            break;
        }
    }
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(seen, "no SIGUSR1 screenshot showed the drawing: {stderr}");
    assert_eq!(out.status.code(), Some(128 + 15), "{stderr}");
    // The exit wrote it once more, complete, with no temporary file left.
    let (w, h, rgb) = read_png(&shot).expect("a screenshot at exit");
    assert_eq!((w, h), (320, 240));
    assert!(drawn(&rgb, 320));
    assert!(!dir.join("shot.png.part").exists());
    // One NISV exit (the pair) and one MMIO exit (the single store) on the
    // framebuffer, in the exit table.
    let row = |kind: &str, class: &str| {
        stderr.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 9
                && w[1] == "exits"
                && w[2] == "boot"
                && w[3] == kind
                && w[4] == "framebuffer"
                && w[5] == class
                && w[6] == "1"
        })
    };
    assert!(row("nisv", "GprPair"), "{stderr}");
    assert!(row("mmio", "-"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
