// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Alignment of ordinary loads and stores to Device memory, rule by rule.
//!
//! The Arm ARM (DDI 0487, "Alignment of data accesses" and the pseudocode
//! `Mem[]`, `AArch64.S1HasAlignmentFault`): an access to any type of Device
//! memory that is not aligned to the size of the element it accesses takes an
//! Alignment fault before any memory effect. The element is what one
//! `Mem[address, size, accdesc]` of the instruction's pseudocode accesses: each
//! lane of LD1-LD4/ST1-ST4 (multiple and single structures) and LD1R-LD4R
//! (`Elem[...] = Mem[address+offs, ebytes, accdesc]`), each register of a pair
//! (`Mem[]`: "Check alignment on size of element accessed, not overall access
//! size": `alignment = if accdesc.ispair then size DIV 2 else size`), the whole
//! register of LDR/STR. "For these instructions, the definition of an
//! unaligned access is based on the size of the accessed elements, not the
//! overall size of the memory access. This affects SIMD and SVE element and
//! structure loads and stores, and also load/store pair instructions."
//!
//! QEMU 10.0's TCG faults element-aligned LD1/ST1 (multiple structures) that are
//! not 8-byte aligned on Device memory, and QEMU 7.2 faults nothing; these
//! tests pin the emulator to the architecture (docs/emulator.md, "Alignment";
//! docs/compatibility-notes.md).

#![allow(clippy::field_reassign_with_default)]

#[path = "stage1_pt/mod.rs"]
mod pt;

#[path = "emulate_common/mod.rs"]
mod common;

use common::Recording;
use kvm_nisv::emulate::{Emulator, Outcome};
use kvm_nisv::mem::{BusAccess, GuestRam, VecBus, VecRam};
use kvm_nisv::regs::SysReg;
use kvm_nisv::stage1::{FaultKind, SCTLR_M};

const CODE: u64 = 0x1000;
/// VA of a Normal RAM page (IPA 0x800_0000).
const RAM_VA: u64 = 0x10_0000;
/// VA of a Device-nGnRE page (the bus window at IPA 0x900_0000).
const DEV_VA: u64 = 0x10_1000;
const DEV_IPA: u64 = 0x900_0000;

/// MMU on, 4 KiB pages: RAM_VA Normal (AttrIndx 0, MAIR 0xff), DEV_VA
/// Device-nGnRE (AttrIndx 1, MAIR 0x04) backed by a bus window holding
/// 0, 1, 2, ...; `word` at CODE.
fn env(word: u32) -> (VecRam, Recording, VecBus) {
    let mut p = pt::Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
    p.map(CODE, CODE, 3, pt::AF | pt::AP_RO);
    p.map(RAM_VA, 0x800_0000, 3, pt::AF | pt::attr(0));
    p.map(DEV_VA, DEV_IPA, 3, pt::AF | pt::attr(1));
    let mut ram = p.ram;
    assert!(ram.add_region(0, 0x2000));
    assert!(ram.add_region(0x800_0000, 0x1000));
    ram.write(CODE, &word.to_le_bytes()).unwrap();
    let ram_bytes: Vec<u8> = (0..0x1000).map(|i| (i as u8) ^ 0x80).collect();
    ram.write(0x800_0000, &ram_bytes).unwrap();
    let mut r = Recording::default();
    r.rf.pc = CODE;
    r.rf.pstate = 0x3c5;
    r.rf.set_sys(SysReg::SctlrEl1, SCTLR_M);
    r.rf.set_sys(SysReg::TcrEl1, 25 | (5 << 32) | (1 << 23));
    r.rf.set_sys(SysReg::Ttbr0El1, p.root);
    r.rf.set_sys(SysReg::MairEl1, 0xff | (0x04 << 8));
    r.rf.set_sys(SysReg::IdAa64mmfr0El1, 5);
    let mut bus = VecBus::new();
    assert!(bus.add_window(DEV_IPA, (0..0x1000).map(|i| i as u8).collect()));
    (ram, r, bus)
}

/// Initial register values: x1 = address, x2/x3 store data, v0/v1 patterns.
fn setup(r: &mut Recording, addr: u64) {
    r.rf.x[1] = addr;
    r.rf.x[2] = 0x1122_3344_5566_7788;
    r.rf.x[3] = 0x99aa_bbcc_ddee_ff00;
    r.rf.v[0] = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100;
    r.rf.v[1] = 0x1f1e_1d1c_1b1a_1918_1716_1514_1312_1110;
}

/// Window bytes `off..off + 16` as a little-endian u128.
fn window128(off: u64) -> u128 {
    u128::from_le_bytes(core::array::from_fn(|i| (off as u8).wrapping_add(i as u8)))
}

/// (word, disassembly, element size in bytes, bytes accessed, store)
type Shape = (u32, &'static str, u64, u64, bool);

const LD1_4S: Shape = (0x4c40_7820, "ld1 {v0.4s}, [x1]", 4, 16, false);
const ST1_8H: Shape = (0x4c00_7420, "st1 {v0.8h}, [x1]", 2, 16, true);
const LD1_16B: Shape = (0x4c40_7020, "ld1 {v0.16b}, [x1]", 1, 16, false);
const ST1_2S: Shape = (0x0c00_7820, "st1 {v0.2s}, [x1]", 4, 8, true);
const LD1X2_4S: Shape = (0x4c40_a820, "ld1 {v0.4s, v1.4s}, [x1]", 4, 32, false);
const LD1_2D: Shape = (0x4c40_7c20, "ld1 {v0.2d}, [x1]", 8, 16, false);
const LD2_4S: Shape = (0x4c40_8820, "ld2 {v0.4s, v1.4s}, [x1]", 4, 32, false);
const LD1_S1: Shape = (0x0d40_9020, "ld1 {v0.s}[1], [x1]", 4, 4, false);
const LD1R_4S: Shape = (0x4d40_c820, "ld1r {v0.4s}, [x1]", 4, 4, false);
const LDP_W: Shape = (0x2940_0c22, "ldp w2, w3, [x1]", 4, 8, false);
const LDP_X: Shape = (0xa940_0c22, "ldp x2, x3, [x1]", 8, 16, false);
const STP_W: Shape = (0x2900_0c22, "stp w2, w3, [x1]", 4, 8, true);
const LDR_Q: Shape = (0x3dc0_0020, "ldr q0, [x1]", 16, 16, false);
const LDR_X_POST: Shape = (0xf840_0422, "ldr x2, [x1], #0", 8, 8, false);

/// An access aligned to its element size but not to 8 bytes (or to the whole
/// register) is not an unaligned access: it is emulated, one naturally aligned
/// bus access per element, with the architectural result. QEMU 10.0 takes an
/// Alignment fault for the LD1/ST1 ones among these (not permitted).
#[test]
fn element_aligned_accesses_to_device_memory_complete() {
    // (shape, offset in the device page, expected bus accesses of each element)
    let cases: [(Shape, u64); 12] = [
        (LD1_4S, 4),
        (ST1_8H, 2),
        (LD1_16B, 1),
        (ST1_2S, 4),
        (LD1X2_4S, 4),
        (LD1_2D, 8),
        (LD2_4S, 4),
        (LD1_S1, 4),
        (LD1R_4S, 4),
        (LDP_W, 4),
        (LDP_X, 8),
        (STP_W, 4),
    ];
    for ((word, name, esize, len, store), off) in cases {
        let (ram, mut r, mut bus) = env(word);
        setup(&mut r, DEV_VA + off);
        let out = Emulator::new()
            .emulate(&mut r, &ram, &mut bus, Some(DEV_IPA))
            .unwrap();
        assert!(
            matches!(out, Outcome::Emulated { .. }),
            "{name} at +{off}: {out:?}"
        );
        // One access per element, each of the element's size, in address order.
        let want: Vec<BusAccess> = (0..len / esize)
            .map(|i| {
                let a = DEV_IPA + off + i * esize;
                if store {
                    BusAccess::write(a, esize as usize)
                } else {
                    BusAccess::read(a, esize as usize)
                }
            })
            .collect();
        assert_eq!(bus.log(), want, "{name} at +{off}");
    }
}

/// The values, checked for a few of them against the window's bytes.
#[test]
fn element_aligned_device_accesses_load_and_store_the_right_bytes() {
    // ld1 {v0.4s} at +4: the 16 bytes from offset 4, in order.
    let (ram, mut r, mut bus) = env(LD1_4S.0);
    setup(&mut r, DEV_VA + 4);
    Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert_eq!(r.rf.v[0], window128(4));
    // ld1 {v0.16b} at +1.
    let (ram, mut r, mut bus) = env(LD1_16B.0);
    setup(&mut r, DEV_VA + 1);
    Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert_eq!(r.rf.v[0], window128(1));
    // ld1r {v0.4s} at +4: element 0 replicated.
    let (ram, mut r, mut bus) = env(LD1R_4S.0);
    setup(&mut r, DEV_VA + 4);
    Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    let e = u128::from(u32::from_le_bytes([4, 5, 6, 7]));
    assert_eq!(r.rf.v[0], e | e << 32 | e << 64 | e << 96);
    // st1 {v0.8h} at +2: v0's 16 bytes land at offsets 2..18.
    let (ram, mut r, mut bus) = env(ST1_8H.0);
    setup(&mut r, DEV_VA + 2);
    Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    let w = bus.window(DEV_IPA).unwrap();
    assert_eq!(&w[2..18], &r.rf.v[0].to_le_bytes()[..]);
    assert_eq!((w[1], w[18]), (1, 18), "bytes around the store untouched");
    // ldp w2, w3 at +4.
    let (ram, mut r, mut bus) = env(LDP_W.0);
    setup(&mut r, DEV_VA + 4);
    Emulator::new()
        .emulate(&mut r, &ram, &mut bus, None)
        .unwrap();
    assert_eq!(r.rf.x[2], u64::from(u32::from_le_bytes([4, 5, 6, 7])));
    assert_eq!(r.rf.x[3], u64::from(u32::from_le_bytes([8, 9, 10, 11])));
}

/// An element not aligned to its own size on Device memory: Alignment fault
/// (DFSC 0x21) at the address of the first such element, WnR for stores,
/// before any access and with no register written. This holds for `ldr q0`
/// at 8 mod 16 too: its one element is the whole 16-byte register (QEMU 10.0
/// checks it at 8 bytes and takes no fault on its own; the emulator must).
#[test]
fn misaligned_elements_on_device_memory_fault_before_any_access() {
    let cases: [(Shape, u64); 14] = [
        (LD1_4S, 2),
        (ST1_8H, 1),
        (ST1_2S, 6),
        (LD1X2_4S, 1),
        (LD1_2D, 4),
        (LD2_4S, 2),
        (LD1_S1, 2),
        (LD1R_4S, 1),
        (LDP_W, 2),
        (LDP_X, 4),
        (STP_W, 6),
        (LDR_Q, 8),
        (LDR_Q, 4),
        (LDR_X_POST, 4),
    ];
    for ((word, name, _, _, store), off) in cases {
        let (ram, mut r, mut bus) = env(word);
        setup(&mut r, DEV_VA + off);
        let before = r.rf.clone();
        let out = Emulator::new()
            .emulate(&mut r, &ram, &mut bus, Some(DEV_IPA))
            .unwrap();
        match out {
            Outcome::GuestFault(f) => {
                assert_eq!(f.fault.kind, FaultKind::Alignment, "{name} at +{off}");
                assert_eq!(f.va, DEV_VA + off, "{name} at +{off}: FAR");
                assert_eq!(f.write, store, "{name} at +{off}: WnR");
                assert_eq!(f.iss() & 0x3f, 0x21, "{name} at +{off}: DFSC");
            }
            o => panic!("{name} at +{off}: {o:?}"),
        }
        assert!(bus.log().is_empty(), "{name} at +{off}: {:?}", bus.log());
        assert_eq!(r.rf.x, before.x, "{name} at +{off}");
        assert_eq!(r.rf.v, before.v, "{name} at +{off}");
        assert_eq!(r.rf.pc, CODE, "{name} at +{off}");
    }
}

/// The same accesses on Normal memory never fault (SCTLR_EL1.A = 0): the
/// memory type is what makes them fault.
#[test]
fn the_same_misaligned_accesses_on_normal_memory_complete() {
    for (word, name, ..) in [LD1_4S, LD2_4S, LD1R_4S, LDP_X, LDR_Q, LDR_X_POST] {
        let (ram, mut r, mut bus) = env(word);
        setup(&mut r, RAM_VA + 0x101);
        let out = Emulator::new()
            .emulate(&mut r, &ram, &mut bus, None)
            .unwrap();
        assert!(matches!(out, Outcome::Emulated { .. }), "{name}: {out:?}");
    }
}

/// With the MMU off every data access is Device-nGnRnE: the same per-element
/// rule.
#[test]
fn mmu_off_device_ngnrne_follows_the_same_rule() {
    for (addr, faults) in [(0x1000_0004u64, false), (0x1000_0002, true)] {
        let mut ram = VecRam::new();
        assert!(ram.add_region(0, 0x4000));
        ram.write(CODE, &LD1_4S.0.to_le_bytes()).unwrap();
        let mut r = Recording::default();
        r.rf.pc = CODE;
        r.rf.pstate = 0x3c5;
        setup(&mut r, addr);
        let mut bus = VecBus::new();
        assert!(bus.add_window(0x1000_0000, (0..64).collect()));
        let out = Emulator::new()
            .emulate(&mut r, &ram, &mut bus, None)
            .unwrap();
        if faults {
            assert!(
                matches!(out, Outcome::GuestFault(f) if f.fault.kind == FaultKind::Alignment && f.va == addr),
                "{out:?}"
            );
        } else {
            assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
            assert_eq!(r.rf.v[0], window128(4));
        }
    }
}

/// A misaligned element whose first bytes are Normal memory and whose rest is
/// on a Device page: `Mem[]` reads the first byte with the element's
/// alignment, then "For subsequent bytes, if they cross to a new translation
/// page which assigns Device memory type, it is CONSTRAINED UNPREDICTABLE
/// whether an unaligned access will generate an Alignment Fault"
/// (`Unpredictable_DEVPAGE2`, Constraint_FAULT or Constraint_NONE). The
/// emulator takes the fault, at the first Device byte, and accesses nothing.
#[test]
fn misaligned_element_crossing_into_a_device_page_takes_the_permitted_fault() {
    let (ram, mut r, mut bus) = env(LD1_4S.0);
    setup(&mut r, DEV_VA - 2);
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, Some(DEV_IPA))
        .unwrap();
    assert!(
        matches!(out, Outcome::GuestFault(f) if f.fault.kind == FaultKind::Alignment && f.va == DEV_VA),
        "{out:?}"
    );
    assert!(bus.log().is_empty());
    // Element-aligned across the same boundary: RAM element, then Device ones.
    let (ram, mut r, mut bus) = env(LD1_4S.0);
    setup(&mut r, DEV_VA - 4);
    let out = Emulator::new()
        .emulate(&mut r, &ram, &mut bus, Some(DEV_IPA))
        .unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(
        bus.log(),
        vec![
            BusAccess::read(DEV_IPA, 4),
            BusAccess::read(DEV_IPA + 4, 4),
            BusAccess::read(DEV_IPA + 8, 4)
        ]
    );
    let mut first = [0u8; 4];
    ram.read(0x800_0ffc, &mut first).unwrap();
    assert_eq!(r.rf.v[0] as u32, u32::from_le_bytes(first));
}
