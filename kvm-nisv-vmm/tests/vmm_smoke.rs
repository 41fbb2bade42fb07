// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! End-to-end checks of the `kvm-nisv-vmm` binary with tiny hand-assembled flat
//! guests (aarch64 with /dev/kvm only: the emulated arm64 host runs them).
//!
//! Each guest is a few instruction words (assembled with llvm-mc, one comment
//! per instruction), loaded at 0x8000_0000 with the MMU off. Exception vectors,
//! where needed, are at +0x800 (VBAR_EL1), so the "current EL, SPx,
//! synchronous" handler is at +0xa00. Guests end with PSCI SYSTEM_OFF and the
//! status in x4 (docs/guest-interface.md).
//!
//! The binary is `$KVM_NISV_VMM` (set by the harness), else the one cargo built.

#![cfg(target_arch = "aarch64")]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const OFF: [u32; 4] = [
    0xd280_0100, // mov  x0, #8
    0xf2b0_8000, // movk x0, #0x8400, lsl #16      (PSCI SYSTEM_OFF)
    0xd400_0002, // hvc  #0
    0x1400_0000, // b    .
];
const SET_VBAR: [u32; 4] = [
    0xd2b0_0009, // mov  x9, #0x80000000
    0x9120_0129, // add  x9, x9, #0x800
    0xd518_c009, // msr  vbar_el1, x9
    0xd503_3fdf, // isb
];
/// Handler: exit with ESR_EL1.EC as the status.
const HANDLER_EC: [u32; 6] = [
    0xd538_5204, // mrs  x4, esr_el1
    // ubfx, not lsr: Linux 6.1 writes ESR_EL1 sign-extended (bits 63:32 set) for the
    // aborts it injects (inject_abt64(): `ESR_ELx_EC_IABT_CUR << ESR_ELx_EC_SHIFT` is a
    // negative int), so the bits above EC are not zero there.
    0xd35a_7c84, // ubfx x4, x4, #26, #6
    OFF[0],
    OFF[1],
    OFF[2],
    OFF[3],
];
/// Handler: return to the faulting instruction (a guest that retries forever).
const HANDLER_RETRY: [u32; 1] = [0xd69f_03e0]; // eret
const HOLE_X1: u32 = 0xd2a1_e001; // mov x1, #0x0f000000 (no RAM, no device)
const NO_EXCEPTION: u32 = 0xd280_0004; // mov x4, #0

fn vmm() -> PathBuf {
    std::env::var_os("KVM_NISV_VMM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kvm-nisv-vmm")))
}

fn image(code: &[u32], handler: &[u32]) -> Vec<u8> {
    let mut v = vec![0u8; 0x1000];
    for (i, w) in code.iter().enumerate() {
        v[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    for (i, w) in handler.iter().enumerate() {
        v[0xa00 + 4 * i..0xa00 + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    v
}

fn write_guest(name: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("vmm-smoke-{}-{name}.bin", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn run(name: &str, bytes: &[u8], extra: &[&str]) -> Output {
    let p = write_guest(name, bytes);
    let mut cmd = Command::new(vmm());
    cmd.arg("run")
        .arg("--kernel")
        .arg(&p)
        .args(["--mem", "16M"])
        .args(extra);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("spawn kvm-nisv-vmm");
    let _ = std::fs::remove_file(&p);
    eprintln!(
        "{name}: status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exit_status_comes_from_x4() {
    let code = [&[0xd280_0544u32][..] /* mov x4, #42 */, &OFF].concat();
    assert_eq!(run("x4", &image(&code, &[]), &[]).status.code(), Some(42));
}

#[test]
fn uart_output_goes_to_stdout() {
    let code = [
        &[
            0xd2a1_2001u32, // mov  x1, #0x09000000
            0x5280_09e2,    // mov  w2, #'O'
            0x3900_0022,    // strb w2, [x1]
            0x5280_0962,    // mov  w2, #'K'
            0x3900_0022,    // strb w2, [x1]
            0x5280_0142,    // mov  w2, #'\n'
            0x3900_0022,    // strb w2, [x1]
            NO_EXCEPTION,
        ][..],
        &OFF,
    ]
    .concat();
    let o = run("uart", &image(&code, &[]), &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(o.stdout, b"OK\n");
}

#[test]
fn test_device_commands_over_mmio() {
    let code = [
        &[
            0xd2a1_4001u32, // mov  x1, #0x0a000000      (control registers)
            0xd280_0b42,    // mov  x2, #0x5a
            0xf900_0022,    // str  x2, [x1]             ADDR = 0x5a (fill byte)
            0xd280_0202,    // mov  x2, #0x10
            0xf900_0422,    // str  x2, [x1, #8]         OFFSET = 0x10
            0xd280_0082,    // mov  x2, #4
            0xf900_0822,    // str  x2, [x1, #16]        LEN = 4
            0xd280_0062,    // mov  x2, #3
            0xf900_0c22,    // str  x2, [x1, #24]        CMD = fill
            0xf940_0c25,    // ldr  x5, [x1, #24]        STATUS
            0xd2af_fe03,    // mov  x3, #0x7ff00000      (data window)
            0x3940_4864,    // ldrb w4, [x3, #18]
            0x8b05_0084,    // add  x4, x4, x5
        ][..],
        &OFF,
    ]
    .concat();
    assert_eq!(
        run("testdev", &image(&code, &[]), &[]).status.code(),
        Some(0x5a)
    );
}

/// `str x0, [x1], #8` (post-index: no syndrome, a NISV exit) at an address with
/// nothing behind it.
fn nisv_hole(handler: &[u32]) -> Vec<u8> {
    let code = [
        &SET_VBAR[..],
        &[
            HOLE_X1,
            0xf800_8420, /* str x0, [x1], #8 */
            NO_EXCEPTION,
        ],
        &OFF,
    ]
    .concat();
    image(&code, handler)
}

#[test]
fn nisv_to_nothing_injects_a_synchronous_external_abort() {
    for policy in ["emulate", "inject"] {
        let o = run(
            &format!("hole-{policy}"),
            &nisv_hole(&HANDLER_EC),
            &["--on-nisv", policy],
        );
        assert_eq!(
            o.status.code(),
            Some(0x25),
            "policy {policy}: EC = data abort, same EL"
        );
    }
}

#[test]
fn nisv_stop_reports_outside_any_ram_or_device() {
    let o = run("hole-stop", &nisv_hole(&HANDLER_EC), &["--on-nisv", "stop"]);
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert!(e.contains("access outside any RAM or device"), "{e}");
    assert!(e.contains("fault IPA   : 0xf000000"), "{e}");
    assert!(e.contains("0xf8008420"), "names the instruction: {e}");
}

#[test]
fn nisv_stop_reports_the_device_window() {
    let code = [
        &[
            0xd2af_fe01u32, /* mov x1, #0x7ff00000 */
            0xf800_8420,    /* str x0, [x1], #8 */
        ][..],
        &OFF,
    ]
    .concat();
    let o = run(
        "window-stop",
        &image(&code, &[]),
        &["--on-nisv", "stop", "--trace-nisv"],
    );
    assert_eq!(o.status.code(), Some(3));
    let e = stderr(&o);
    assert!(e.contains("inside the testdev-data window"), "{e}");
    assert!(e.contains("NISV exits: 1"), "summary printed: {e}");
}

#[test]
fn plain_mmio_to_nothing_injects_too() {
    let code = [
        &SET_VBAR[..],
        &[HOLE_X1, 0xf900_0020 /* str x0, [x1] */, NO_EXCEPTION],
        &OFF,
    ]
    .concat();
    assert_eq!(
        run("mmio-hole", &image(&code, &HANDLER_EC), &[])
            .status
            .code(),
        Some(0x25)
    );
}

#[test]
fn a_guest_retrying_forever_is_stopped() {
    let o = run(
        "retry",
        &nisv_hole(&HANDLER_RETRY),
        &["--on-nisv", "inject"],
    );
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("retry loop"), "{}", stderr(&o));
}

#[test]
fn nisv_store_to_the_gic_distributor_reaches_the_vgic() {
    // A post-index store to GICD_ISENABLER1 (NISV, forwarded to KVM_SET_DEVICE_ATTR),
    // then a plain load of the same register (handled in the kernel).
    let code = [
        &[
            0xd2a1_0001u32, // mov  x1, #0x08000000
            0x9104_1021,    // add  x1, x1, #0x104        GICD_ISENABLER1
            0x1280_0000,    // mov  w0, #-1
            0xb800_4420,    // str  w0, [x1], #4          (NISV)
            0xb85f_c024,    // ldur w4, [x1, #-4]
            0x9240_1c84,    // and  x4, x4, #0xff
            0xd103_fc84,    // sub  x4, x4, #0xff         0 when the bits stuck
        ][..],
        &OFF,
    ]
    .concat();
    let o = run("gicd", &image(&code, &[]), &["--trace-nisv"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn sigterm_ends_the_vm_cleanly() {
    let p = write_guest("spin", &image(&[0x1400_0000 /* b . */], &[]));
    let mut child = Command::new(vmm())
        .args(["run", "--mem", "16M", "--kernel"])
        .arg(&p)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the VMM did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&p);
    assert_eq!(status.code(), Some(128 + 15));
}
