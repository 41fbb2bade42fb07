// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The exclusive monitor across exits: an emulated load-exclusive followed
//! directly by a store-exclusive runs both in one exit (the vCPU's own local
//! monitor was never armed, so the CPU would fail the store without trapping);
//! anything else is left to the CPU. docs/emulator.md, "Exclusive monitor".

#[path = "emulate_common/mod.rs"]
mod common;

use common::Recording;
use kvm_nisv::decode::Class;
use kvm_nisv::emulate::{Emulator, Outcome};
use kvm_nisv::mem::{BusAccess, VecBus};
use kvm_nisv::mem::{GuestRam, VecRam};

const CODE: u64 = 0x1000;
const DEV: u64 = 0x2_0000;

/// RAM with `words` at 0x1000, MMU off, EL1h, x1 = DEV.
fn setup(words: &[u32]) -> (VecRam, Recording) {
    let mut ram = VecRam::new();
    assert!(ram.add_region(0, 0x4000));
    for (i, w) in words.iter().enumerate() {
        ram.write(CODE + 4 * i as u64, &w.to_le_bytes()).unwrap();
    }
    let mut r = Recording::default();
    r.rf.pc = CODE;
    r.rf.pstate = 0x3c5;
    r.rf.x[0] = 0x1122_3344_5566_7788;
    r.rf.x[1] = DEV;
    r.rf.x[3] = 0x5555;
    r.rf.x[5] = 0x99aa_bbcc_ddee_ff00;
    (ram, r)
}

fn device() -> VecBus {
    let mut bus = VecBus::new();
    assert!(bus.add_window(DEV, (0u8..0x40).collect()));
    bus
}

#[test]
fn ldxr_then_stxr_is_one_exit_and_succeeds() {
    // ldxr x2, [x1]; stxr w3, x0, [x1]
    let (ram, mut r) = setup(&[0xc85f_7c22, 0xc803_7c20]);
    let mut bus = device();
    let mut emu = Emulator::new();
    let out = emu.emulate(&mut r, &ram, &mut bus, Some(DEV)).unwrap();
    assert!(
        matches!(out, Outcome::Emulated { ref insn } if insn.class == Class::Exclusive),
        "{out:?}"
    );
    assert_eq!(r.rf.x[2], u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]));
    assert_eq!(r.rf.x[3], 0, "store-exclusive status");
    assert_eq!(r.rf.pc, CODE + 8);
    assert_eq!(
        bus.window(DEV).unwrap()[..8],
        0x1122_3344_5566_7788u64.to_le_bytes()
    );
    assert_eq!(
        bus.log(),
        vec![BusAccess::read(DEV, 8), BusAccess::write(DEV, 8)]
    );
    assert_eq!(emu.counters().emulated.get(&Class::Exclusive), Some(&2));
    // The monitor is disarmed: a second store-exclusive alone fails.
    r.rf.pc = CODE + 4;
    emu.emulate(&mut r, &ram, &mut bus, None).unwrap();
    assert_eq!(r.rf.x[3], 1);
}

#[test]
fn ldxp_then_stxp_is_one_exit_and_succeeds() {
    // ldxp x2, x4, [x1]; stlxp w3, x0, x5, [x1]
    let (ram, mut r) = setup(&[0xc87f_1022, 0xc823_9420]);
    let mut bus = device();
    let mut emu = Emulator::new();
    emu.emulate(&mut r, &ram, &mut bus, Some(DEV)).unwrap();
    assert_eq!(r.rf.x[3], 0);
    assert_eq!(
        r.rf.x[4],
        u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15])
    );
    assert_eq!(r.rf.pc, CODE + 8);
    assert_eq!(
        bus.window(DEV).unwrap()[8..16],
        0x99aa_bbcc_ddee_ff00u64.to_le_bytes()
    );
}

#[test]
fn stxr_to_another_address_fails_in_the_same_exit() {
    // ldxr x2, [x1]; stxr w3, x0, [x6] with x6 != x1: status 1, nothing stored.
    let (ram, mut r) = setup(&[0xc85f_7c22, 0xc803_7cc0]);
    r.rf.x[6] = DEV + 8;
    let mut bus = device();
    let mut emu = Emulator::new();
    emu.emulate(&mut r, &ram, &mut bus, None).unwrap();
    assert_eq!(r.rf.x[3], 1);
    assert_eq!(r.rf.pc, CODE + 8);
    assert_eq!(bus.log(), vec![BusAccess::read(DEV, 8)]);
}

#[test]
fn anything_else_after_ldxr_is_left_to_the_cpu() {
    // ldxr x2, [x1]; add x0, x2, #1; stxr w3, x0, [x1]: only the load now.
    let (ram, mut r) = setup(&[0xc85f_7c22, 0x9100_0440, 0xc803_7c20]);
    let mut bus = device();
    let mut emu = Emulator::new();
    emu.emulate(&mut r, &ram, &mut bus, None).unwrap();
    assert_eq!(r.rf.pc, CODE + 4);
    assert_eq!(bus.log(), vec![BusAccess::read(DEV, 8)]);
    // On a CPU that checks the abort before its local monitor, the
    // store-exclusive traps too and the armed monitor lets it pass.
    r.rf.pc = CODE + 8;
    r.rf.x[0] = 7;
    emu.emulate(&mut r, &ram, &mut bus, None).unwrap();
    assert_eq!(r.rf.x[3], 0);
    assert_eq!(bus.window(DEV).unwrap()[..8], 7u64.to_le_bytes());
    // A plain store after the load-exclusive is not fused either:
    // ldxr x2, [x1]; str x0, [x1]
    let (ram, mut r) = setup(&[0xc85f_7c22, 0xf900_0020]);
    let mut bus = device();
    emu.emulate(&mut r, &ram, &mut bus, None).unwrap();
    assert_eq!(r.rf.pc, CODE + 4);
    assert_eq!(bus.log(), vec![BusAccess::read(DEV, 8)]);
}

#[test]
fn a_fused_store_that_would_fault_is_left_to_the_cpu() {
    // ldxr x2, [x1]; stxr w3, x0, [x4] with x4 8 bytes past the device: the
    // store has nothing behind it. Nothing of it is applied; the load-exclusive
    // is returned alone with PC at the store and the monitor still armed.
    let (ram, mut r) = setup(&[0xc85f_7c22, 0xc803_7c80]);
    r.rf.x[4] = DEV + 0x40;
    let mut bus = device();
    let mut emu = Emulator::new();
    let out = emu.emulate(&mut r, &ram, &mut bus, Some(DEV)).unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(r.rf.pc, CODE + 4, "PC at the store-exclusive");
    assert_eq!(r.rf.x[3], 0x5555, "no status written");
    assert_eq!(bus.log(), [BusAccess::read(DEV, 8)], "only the load");
    assert_eq!(emu.counters().emulated.get(&Class::Exclusive), Some(&1));
    assert_eq!(
        emu.counters().no_device,
        0,
        "the discarded attempt is not counted"
    );
    // The CPU then traps on the store (a NISV exit): it gets its abort, with
    // the state unchanged.
    let out = emu
        .emulate(&mut r, &ram, &mut bus, Some(DEV + 0x40))
        .unwrap();
    assert!(
        matches!(out, Outcome::NoDevice { va, .. } if va == DEV + 0x40),
        "{out:?}"
    );
    assert_eq!(r.rf.pc, CODE + 4);
}

#[test]
fn never_fused_under_single_step() {
    // PSTATE.SS = 1: the load-exclusive is stepped over alone (SS cleared).
    let (ram, mut r) = setup(&[0xc85f_7c22, 0xc803_7c20]);
    r.rf.pstate = 0x3c5 | (1 << 21);
    let mut bus = device();
    let mut emu = Emulator::new();
    let out = emu.emulate(&mut r, &ram, &mut bus, Some(DEV)).unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(r.rf.pc, CODE + 4);
    assert_eq!(r.rf.pstate, 0x3c5, "SS cleared as kvm_skip_instr does");
    assert_eq!(bus.log(), [BusAccess::read(DEV, 8)]);
}

#[test]
fn not_fused_when_the_store_would_take_an_sp_alignment_fault() {
    // ldxr x2, [sp]; stxr w3, x0, [sp] at EL1h with SP_EL1 = DEV + 8 (16-byte
    // misaligned) and SCTLR_EL1.SA = 1: the store is the CPU's.
    let (ram, mut r) = setup(&[0xc85f_7fe2, 0xc803_7fe0]);
    r.rf.sp_el1 = DEV + 8;
    r.rf.set_sys(kvm_nisv::regs::SysReg::SctlrEl1, 1 << 3);
    let mut bus = device();
    let mut emu = Emulator::new();
    emu.emulate(&mut r, &ram, &mut bus, Some(DEV)).unwrap();
    assert_eq!(r.rf.pc, CODE + 4, "not fused");
    // With SA = 0 it is.
    let (ram, mut r) = setup(&[0xc85f_7fe2, 0xc803_7fe0]);
    r.rf.sp_el1 = DEV + 8;
    let mut bus = device();
    emu.clear_monitor();
    emu.emulate(&mut r, &ram, &mut bus, Some(DEV)).unwrap();
    assert_eq!((r.rf.pc, r.rf.x[3]), (CODE + 8, 0), "fused, status 0");
}
