// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Gathering (issue 10, item 3): stage-1 walks per instruction and MMIO bus
//! accesses per memory type, counted from the outside.
//!
//! Walks are counted by a `GuestRam` wrapper over the page tables: every walk
//! reads exactly one descriptor of the root table, so reads of the root table
//! page are walks; writes to the table area are hardware descriptor updates.
//! Bus accesses are counted from `VecBus`'s log. `table` prints the counts
//! per class and memory type (docs/emulator.md, "Gathering"):
//! `cargo test -p kvm-nisv --test emulate_gather -- --nocapture table`.

#[path = "stage1_pt/mod.rs"]
mod pt;

#[path = "emulate_common/mod.rs"]
mod common;

use std::cell::Cell;

use common::WideBus;
use kvm_nisv::decode::{self, Class};
use kvm_nisv::emulate::{EmulateError, Emulator, Outcome};
use kvm_nisv::mem::{BusAccess, GuestRam, MemError, VecBus, VecRam};
use kvm_nisv::regs::{RegisterFile, SysReg};
use kvm_nisv::stage1::{FaultKind, SCTLR_EE, SCTLR_M};

const CODE: u64 = 0x1000;
/// VA of the two device pages (IPA `DEV_IPA`, contiguous).
const DEV_VA: u64 = 0x10_0000;
const DEV_IPA: u64 = 0x900_0000;
/// VA of the two RAM pages (IPA `RAM_IPA`).
const RAM_VA: u64 = 0x20_0000;
const RAM_IPA: u64 = 0x800_0000;
const PAGE: u64 = 0x1000;

/// MAIR_EL1: Attr0 Normal WB (0xff), Attr1 Device-nGnRE (0x04), Attr2
/// Device-GRE (0x0c), Attr3 Device-nGRE (0x08), Attr4 Device-nGnRnE (0x00).
const MAIR: u64 = 0xff | (0x04 << 8) | (0x0c << 16) | (0x08 << 24);

/// Where the page tables are (`pt::Pt::new`'s area).
const TABLES: u64 = 0x4000_0000;
const TABLES_LEN: u64 = 0x10_0000;

/// Guest RAM that counts stage-1 walks (reads of the root table's page) and
/// descriptor writes (hardware AF/dirty updates).
struct CountingRam {
    ram: VecRam,
    root: u64,
    walks: Cell<u64>,
    desc_writes: Cell<u64>,
}

impl GuestRam for CountingRam {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        if (self.root..self.root + PAGE).contains(&ipa) {
            self.walks.set(self.walks.get() + 1);
        }
        self.ram.read(ipa, buf)
    }
    fn write(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        if (TABLES..TABLES + TABLES_LEN).contains(&ipa) {
            self.desc_writes.set(self.desc_writes.get() + 1);
        }
        self.ram.write(ipa, buf)
    }
    fn is_ram(&self, ipa: u64, len: usize) -> bool {
        self.ram.is_ram(ipa, len)
    }
}

/// Where the data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mem {
    /// MMU off: the device window at VA = IPA, Device-nGnRnE.
    MmuOff,
    /// MMU on, the device window mapped with MAIR index `attr`.
    Dev(u64),
    /// MMU on, RAM mapped Normal.
    Ram,
}

impl Mem {
    fn name(self) -> &'static str {
        match self {
            Mem::MmuOff => "MMU off (nGnRnE)",
            Mem::Dev(0) => "Normal",
            Mem::Dev(1) => "Device-nGnRE",
            Mem::Dev(2) => "Device-GRE",
            Mem::Dev(3) => "Device-nGRE",
            Mem::Dev(_) => "?",
            Mem::Ram => "RAM (Normal)",
        }
    }
    /// VA of the first data page.
    fn va(self) -> u64 {
        match self {
            Mem::MmuOff => DEV_IPA,
            Mem::Dev(_) => DEV_VA,
            Mem::Ram => RAM_VA,
        }
    }
}

struct Env {
    ram: CountingRam,
    bus: VecBus,
    regs: RegisterFile,
}

fn env(mem: Mem) -> Env {
    env_with(mem, pt::AF, 2)
}

/// The environment with `leaf` ORed into the data pages' descriptors, and
/// only the first `mapped` data pages mapped.
fn env_with(mem: Mem, leaf: u64, mapped: u64) -> Env {
    let mut p = pt::Pt::new(12, 25, 1, TABLES, TABLES_LEN);
    p.map(CODE, CODE, 3, pt::AF | pt::AP_RO);
    for i in 0..mapped {
        let attr = match mem {
            Mem::Dev(a) => a,
            _ => 1,
        };
        p.map(
            DEV_VA + i * PAGE,
            DEV_IPA + i * PAGE,
            3,
            leaf | pt::attr(attr),
        );
        p.map(RAM_VA + i * PAGE, RAM_IPA + i * PAGE, 3, leaf);
    }
    let root = p.root;
    let mut ram = p.ram;
    assert!(ram.add_region(0, 0x2000));
    assert!(ram.add_region(RAM_IPA, 2 * PAGE as usize));
    ram.write(RAM_IPA, &pattern(2 * PAGE as usize)).unwrap();
    let mut bus = VecBus::new();
    assert!(bus.add_window(DEV_IPA, pattern(2 * PAGE as usize)));
    let mut regs = RegisterFile::default();
    regs.pc = CODE;
    regs.pstate = 0x3c5;
    for (i, x) in regs.x.iter_mut().enumerate() {
        *x = 0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 0x10);
    }
    for (i, v) in regs.v.iter_mut().enumerate() {
        *v = 0x0101_0101_0101_0101_0101_0101_0101_0101u128.wrapping_mul(i as u128 + 0x40);
    }
    if mem != Mem::MmuOff {
        regs.set_sys(SysReg::SctlrEl1, SCTLR_M);
    }
    regs.set_sys(SysReg::TcrEl1, 25 | (5 << 32) | (1 << 23));
    regs.set_sys(SysReg::Ttbr0El1, root);
    regs.set_sys(SysReg::MairEl1, MAIR);
    regs.set_sys(SysReg::IdAa64mmfr0El1, 5);
    regs.set_sys(SysReg::DczidEl0, 4);
    Env {
        ram: CountingRam {
            ram,
            root,
            walks: Cell::new(0),
            desc_writes: Cell::new(0),
        },
        bus,
        regs,
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// One instruction of the table: its word (hand-encoded from the Arm ARM,
/// C4.1.x; the decoder's disassembly is checked against `text`), the base
/// register and the bytes it accesses.
struct Case {
    word: u32,
    text: &'static str,
    class: Class,
    base: u8,
    bytes: u64,
}

const CASES: &[Case] = &[
    Case {
        word: 0xf900_0020,
        text: "str x0, [x1]",
        class: Class::GprSingle,
        base: 1,
        bytes: 8,
    },
    Case {
        word: 0xa940_0c22,
        text: "ldp x2, x3, [x1]",
        class: Class::GprPair,
        base: 1,
        bytes: 16,
    },
    Case {
        word: 0x2900_0c22,
        text: "stp w2, w3, [x1]",
        class: Class::GprPair,
        base: 1,
        bytes: 8,
    },
    Case {
        word: 0x3dc0_0020,
        text: "ldr q0, [x1]",
        class: Class::FpSingle,
        base: 1,
        bytes: 16,
    },
    Case {
        word: 0xad40_0420,
        text: "ldp q0, q1, [x1]",
        class: Class::FpPair,
        base: 1,
        bytes: 32,
    },
    Case {
        word: 0x4c40_2020,
        text: "ld1 {v0.16b-v3.16b}, [x1]",
        class: Class::SimdMultiple,
        base: 1,
        bytes: 64,
    },
    Case {
        word: 0x4c00_2020,
        text: "st1 {v0.16b-v3.16b}, [x1]",
        class: Class::SimdMultiple,
        base: 1,
        bytes: 64,
    },
    Case {
        word: 0x4c40_0820,
        text: "ld4 {v0.4s-v3.4s}, [x1]",
        class: Class::SimdMultiple,
        base: 1,
        bytes: 64,
    },
    Case {
        word: 0x0d60_b020,
        text: "ld4 {v0.s-v3.s}[1], [x1]",
        class: Class::SimdSingle,
        base: 1,
        bytes: 16,
    },
    Case {
        word: 0x4d60_e820,
        text: "ld4r {v0.4s-v3.4s}, [x1]",
        class: Class::SimdSingle,
        base: 1,
        bytes: 16,
    },
    Case {
        word: 0x887f_0c22,
        text: "ldxp w2, w3, [x1]",
        class: Class::Exclusive,
        base: 1,
        bytes: 8,
    },
    Case {
        word: 0xc87f_0c22,
        text: "ldxp x2, x3, [x1]",
        class: Class::Exclusive,
        base: 1,
        bytes: 16,
    },
    Case {
        word: 0xf820_0022,
        text: "ldadd x0, x2, [x1]",
        class: Class::Atomic,
        base: 1,
        bytes: 8,
    },
    Case {
        word: 0x4820_7c82,
        text: "casp x0, x1, x2, x3, [x4]",
        class: Class::CompareAndSwap,
        base: 4,
        bytes: 16,
    },
    Case {
        word: 0x0820_7c82,
        text: "casp w0, w1, w2, w3, [x4]",
        class: Class::CompareAndSwap,
        base: 4,
        bytes: 8,
    },
    Case {
        word: 0xd50b_7421,
        text: "dc zva, x1",
        class: Class::DcZva,
        base: 1,
        bytes: 64,
    },
];

/// The outcome of one run: walks, bus accesses.
struct Run {
    outcome: Outcome,
    walks: u64,
    log: Vec<BusAccess>,
}

fn run(case: &Case, mem: Mem, addr: u64, max: usize) -> Run {
    let mut e = env(mem);
    e.ram.ram.write(CODE, &case.word.to_le_bytes()).unwrap();
    e.regs.x[usize::from(case.base)] = addr;
    if case.class == Class::CompareAndSwap {
        // Make the compare succeed: Rs, Rs+1 (x0, x1) = the memory's values.
        let half = usize::try_from(case.bytes / 2).unwrap();
        let ipa = match mem {
            Mem::MmuOff => addr,
            Mem::Dev(_) => addr - DEV_VA + DEV_IPA,
            Mem::Ram => addr - RAM_VA + RAM_IPA,
        };
        for i in 0..2 {
            let mut b = [0u8; 8];
            let a = ipa + (i * half) as u64;
            let bytes = &mut b[..half];
            if e.ram.is_ram(a, half) {
                e.ram.ram.read(a, bytes).unwrap();
            } else if let Some(w) = e.bus.window(DEV_IPA) {
                let off = usize::try_from(a - DEV_IPA).unwrap();
                if let Some(src) = w.get(off..off + half) {
                    bytes.copy_from_slice(src);
                }
            }
            e.regs.x[i] = u64::from_le_bytes(b);
        }
    }
    let insn = decode::decode(case.word).unwrap();
    assert_eq!(insn.to_string(), case.text, "encoding of {}", case.text);
    assert_eq!(insn.class, case.class, "{}", case.text);
    if case.class != Class::DcZva {
        assert_eq!(insn.elements.total_bytes(), case.bytes, "{}", case.text);
    }
    // The decoded instruction, not fetched: every walk counted is a data walk.
    let mut bus = WideBus {
        bus: &mut e.bus,
        max,
    };
    let outcome = Emulator::new()
        .emulate_insn(&mut e.regs, &e.ram, &mut bus, &insn, None)
        .unwrap();
    Run {
        outcome,
        walks: e.ram.walks.get(),
        log: e.bus.log().to_vec(),
    }
}

/// `8x8` style summary of a bus log: count x size, in runs of equal sizes.
fn summary(log: &[BusAccess]) -> String {
    if log.is_empty() {
        return "-".into();
    }
    let mut out: Vec<(usize, usize, bool)> = Vec::new();
    for a in log {
        match out.last_mut() {
            Some((n, len, w)) if *len == a.len && *w == a.write => *n += 1,
            _ => out.push((1, a.len, a.write)),
        }
    }
    out.iter()
        .map(|(n, len, w)| format!("{}{n}x{len}", if *w { "W " } else { "R " }))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The pages `[addr, addr + bytes)` touches.
fn pages(addr: u64, bytes: u64) -> u64 {
    (addr + bytes - 1) / PAGE - addr / PAGE + 1
}

/// The table of walks and bus accesses per class and memory type (printed;
/// `cargo test -p kvm-nisv --test emulate_gather -- --nocapture table`), and
/// one walk per page touched for every emulated case.
#[test]
fn table() {
    let mems = [
        Mem::MmuOff,
        Mem::Dev(1),
        Mem::Dev(3),
        Mem::Dev(2),
        Mem::Dev(0),
        Mem::Ram,
    ];
    println!(
        "| instruction | memory | walks (in a page) | walks (crossing) | bus accesses | bus accesses, max_access_size 64 |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for case in CASES {
        for mem in mems {
            let inside = run(case, mem, mem.va() + 0x40, 8);
            let wide = run(case, mem, mem.va() + 0x40, 64);
            // Crossing: half of the bytes on each side of the page boundary.
            let cross_at = mem.va() + PAGE - case.bytes / 2;
            let cross = run(case, mem, cross_at, 8);
            for (r, at) in [(&inside, mem.va() + 0x40), (&cross, cross_at)] {
                if matches!(r.outcome, Outcome::Emulated { .. }) && mem != Mem::MmuOff {
                    let at = if case.class == Class::DcZva {
                        at & !63
                    } else {
                        at
                    };
                    assert_eq!(r.walks, pages(at, case.bytes), "{} at {at:#x}", case.text);
                }
                if mem == Mem::MmuOff {
                    assert_eq!(r.walks, 0);
                }
            }
            let ok = |r: &Run| match &r.outcome {
                Outcome::Emulated { .. } => String::new(),
                Outcome::GuestFault(f) => format!(" ({:?})", f.fault.kind),
                o => format!(" ({o:?})"),
            };
            println!(
                "| `{}` | {} | {}{} | {}{} | {} | {} |",
                case.text,
                mem.name(),
                inside.walks,
                ok(&inside),
                cross.walks,
                ok(&cross),
                summary(&inside.log),
                summary(&wide.log)
            );
        }
    }
}

/// Run a decoded instruction word on `e` with a bus taking `max` bytes.
fn emulate(
    e: &mut Env,
    word: u32,
    max: usize,
    fault_ipa: Option<u64>,
) -> Result<Outcome, EmulateError> {
    e.ram.ram.write(CODE, &word.to_le_bytes()).unwrap();
    e.regs.pc = CODE;
    e.ram.walks.set(0);
    e.bus.clear_log();
    let mut bus = WideBus {
        bus: &mut e.bus,
        max,
    };
    // Through fetch + decode, like the VMM: the fetch is one walk of its own.
    Emulator::new().emulate(&mut e.regs, &e.ram, &mut bus, fault_ipa)
}

/// ld1 {v0.16b-v3.16b}, [x1].
const LD1_4X16B: u32 = 0x4c40_2020;

#[test]
fn ld1_four_registers_walks_once_per_page() {
    for mem in [Mem::Ram, Mem::Dev(0), Mem::Dev(1)] {
        for (addr, data_walks) in [(mem.va() + 0x100, 1), (mem.va() + PAGE - 0x20, 2)] {
            let mut e = env(mem);
            e.regs.x[1] = addr;
            let out = emulate(&mut e, LD1_4X16B, 8, None).unwrap();
            assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
            // One walk for the fetch, then one per data page.
            assert_eq!(e.ram.walks.get(), 1 + data_walks, "{mem:?} {addr:#x}");
            // The data is the memory's, byte after byte over v0..v3.
            let off = (addr - mem.va()) as usize;
            let want = &pattern(2 * PAGE as usize)[off..off + 64];
            let got: Vec<u8> = (0..4).flat_map(|i| e.regs.v[i].to_le_bytes()).collect();
            assert_eq!(got, want, "{mem:?} {addr:#x}");
        }
    }
}

#[test]
fn hardware_updates_are_made_once_per_page() {
    // AF = 0 in the data pages' leaves and TCR_EL1.HA = 1: the walker asks
    // for AF to be set; 64 elements over two pages make two descriptor writes.
    let mut e = env_with(Mem::Ram, 0, 2);
    let tcr = 25 | (5 << 32) | (1 << 23) | (1 << 39);
    e.regs.set_sys(SysReg::TcrEl1, tcr);
    e.regs.x[1] = RAM_VA + PAGE - 0x20;
    let out = emulate(&mut e, LD1_4X16B, 8, None).unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(e.ram.walks.get(), 3);
    assert_eq!(e.ram.desc_writes.get(), 2);
    // Both leaves now have AF: a second run walks as much and writes nothing.
    e.regs.x[1] = RAM_VA + PAGE - 0x20;
    e.ram.desc_writes.set(0);
    let out = emulate(&mut e, LD1_4X16B, 8, None).unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!((e.ram.walks.get(), e.ram.desc_writes.get()), (3, 0));
}

#[test]
fn faults_and_the_fault_ipa_check_see_every_page() {
    // Crossing into the second device page: the fault IPA may be in either.
    for fault_ipa in [DEV_IPA + PAGE - 8, DEV_IPA + PAGE + 8] {
        let mut e = env(Mem::Dev(0));
        e.regs.x[1] = DEV_VA + PAGE - 0x20;
        let out = emulate(&mut e, LD1_4X16B, 8, Some(fault_ipa)).unwrap();
        assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    }
    let mut e = env(Mem::Dev(0));
    e.regs.x[1] = DEV_VA + PAGE - 0x20;
    let r = emulate(&mut e, LD1_4X16B, 8, Some(DEV_IPA + 2 * PAGE));
    assert!(
        matches!(r, Err(EmulateError::FaultIpaMismatch { .. })),
        "{r:?}"
    );
    assert!(e.bus.log().is_empty());
    // The second page is unmapped: the first element in it faults (FAR at the
    // page boundary), nothing is accessed, the first page is walked once.
    let mut e = env_with(Mem::Dev(0), pt::AF, 1);
    e.regs.x[1] = DEV_VA + PAGE - 0x20;
    match emulate(&mut e, LD1_4X16B, 8, None).unwrap() {
        Outcome::GuestFault(f) => {
            assert_eq!(
                (f.va, f.fault.kind),
                (DEV_VA + PAGE, FaultKind::Translation)
            );
        }
        o => panic!("{o:?}"),
    }
    // Fetch, the first page, then each of the 32 elements in the unmapped
    // page walks (and faults) again: a failed walk is not reused.
    assert_eq!(e.ram.walks.get(), 1 + 1 + 32);
    assert!(e.bus.log().is_empty());
}

#[test]
fn gathering_follows_the_memory_type() {
    let all: Vec<BusAccess> = (0..64)
        .map(|i| BusAccess::read(DEV_IPA + 0x40 + i, 1))
        .collect();
    for (mem, max, want) in [
        (Mem::Dev(0), 64, vec![BusAccess::read(DEV_IPA + 0x40, 64)]),
        (Mem::Dev(2), 64, vec![BusAccess::read(DEV_IPA + 0x40, 64)]),
        (
            Mem::Dev(0),
            16,
            (0..4)
                .map(|i| BusAccess::read(DEV_IPA + 0x40 + 16 * i, 16))
                .collect(),
        ),
        (Mem::Dev(3), 64, all.clone()),
        (Mem::Dev(1), 64, all.clone()),
    ] {
        let mut e = env(mem);
        e.regs.x[1] = DEV_VA + 0x40;
        let out = emulate(&mut e, LD1_4X16B, max, None).unwrap();
        assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
        assert_eq!(e.bus.log(), want, "{mem:?} max {max}");
    }
    // MMU off: Device-nGnRnE, one access per byte element.
    let mut e = env(Mem::MmuOff);
    e.regs.x[1] = DEV_IPA + 0x40;
    assert!(matches!(
        emulate(&mut e, LD1_4X16B, 64, None).unwrap(),
        Outcome::Emulated { .. }
    ));
    assert_eq!(e.bus.log(), all);
    // Not 64-byte aligned: naturally aligned pieces of the run.
    let mut e = env(Mem::Dev(0));
    e.regs.x[1] = DEV_VA + 0x10;
    assert!(matches!(
        emulate(&mut e, LD1_4X16B, 64, None).unwrap(),
        Outcome::Emulated { .. }
    ));
    assert_eq!(
        e.bus.log(),
        [
            BusAccess::read(DEV_IPA + 0x10, 16),
            BusAccess::read(DEV_IPA + 0x20, 32),
            BusAccess::read(DEV_IPA + 0x40, 16)
        ]
    );
    // Across the page boundary (contiguous IPAs): no access crosses it.
    let mut e = env(Mem::Dev(0));
    e.regs.x[1] = DEV_VA + PAGE - 0x20;
    assert!(matches!(
        emulate(&mut e, LD1_4X16B, 4096, None).unwrap(),
        Outcome::Emulated { .. }
    ));
    assert_eq!(
        e.bus.log(),
        [
            BusAccess::read(DEV_IPA + PAGE - 0x20, 32),
            BusAccess::read(DEV_IPA + PAGE, 32)
        ]
    );
}

#[test]
fn gathering_stops_at_a_device_boundary() {
    // Two adjacent devices inside one Normal page: a gathered access never
    // spans both (`MmioBus::contains` of the merged range is false).
    let mut e = env(Mem::Dev(0));
    e.bus = VecBus::new();
    assert!(e.bus.add_window(DEV_IPA, vec![0xaa; 0x20]));
    assert!(e.bus.add_window(DEV_IPA + 0x20, vec![0xbb; 0x20]));
    e.regs.x[1] = DEV_VA;
    let out = emulate(&mut e, LD1_4X16B, 64, None).unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(
        e.bus.log(),
        [
            BusAccess::read(DEV_IPA, 32),
            BusAccess::read(DEV_IPA + 0x20, 32)
        ]
    );
    for (i, b) in [0xaa, 0xaa, 0xbb, 0xbb].into_iter().enumerate() {
        assert_eq!(e.regs.v[i], u128::from_le_bytes([b; 16]), "v{i}");
    }
}

#[test]
fn gathered_big_endian_elements_keep_their_byte_order() {
    // ldp w2, w3, [x1] on Normal memory, big-endian: one 8-byte access, each
    // 4-byte element byte-reversed on its own.
    let mut e = env(Mem::Dev(0));
    e.regs.set_sys(SysReg::SctlrEl1, SCTLR_M | SCTLR_EE);
    e.bus.window_mut(DEV_IPA).unwrap()[0x40..0x48].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    e.regs.x[1] = DEV_VA + 0x40;
    // Tables are big-endian with EE: rebuild them so.
    let mut p = pt::Pt::new(12, 25, 1, TABLES, TABLES_LEN);
    p.be = true;
    p.map(CODE, CODE, 3, pt::AF | pt::AP_RO);
    p.map(DEV_VA, DEV_IPA, 3, pt::AF);
    let mut ram = p.ram;
    assert!(ram.add_region(0, 0x2000));
    e.ram.ram = ram;
    e.ram.root = p.root;
    e.regs.set_sys(SysReg::Ttbr0El1, p.root);
    let out = emulate(&mut e, 0x2940_0c22, 8, None).unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(e.bus.log(), [BusAccess::read(DEV_IPA + 0x40, 8)]);
    assert_eq!((e.regs.x[2], e.regs.x[3]), (0x0102_0304, 0x0506_0708));
    // st4 {v0.4s-v3.4s}, [x1] big-endian, one 64-byte access: element i of
    // register r at byte 16 * i + 4 * r, each word most significant byte first.
    for (r, v) in e.regs.v.iter_mut().enumerate().take(4) {
        *v = (0..4u128).fold(0, |acc, i| acc | ((0x1000 * r as u128 + i) << (32 * i)));
    }
    e.regs.x[1] = DEV_VA + 0x40;
    let out = emulate(&mut e, 0x4c00_0820, 64, None).unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(e.bus.log(), [BusAccess::write(DEV_IPA + 0x40, 64)]);
    let w = &e.bus.window(DEV_IPA).unwrap()[0x40..0x80];
    for i in 0..4 {
        for r in 0..4 {
            let at = 16 * i + 4 * r;
            let want = (0x1000 * r as u32 + i as u32).to_be_bytes();
            assert_eq!(w[at..at + 4], want, "element {i} of v{r}");
        }
    }
}

#[test]
fn max_access_size_is_clamped_and_rounded() {
    // dc zva, x1 with a 2 KiB block (DCZID_EL0.BS = 9) on a Normal mapping of
    // the device: zeroed with accesses of the bus's size.
    for (max, size) in [
        (1 << 20, 2048),
        (4096, 2048),
        (100, 64),
        (24, 16),
        (8, 8),
        (0, 8),
    ] {
        let mut e = env(Mem::Dev(0));
        e.regs.set_sys(SysReg::DczidEl0, 9);
        e.regs.x[1] = DEV_VA + 0x123;
        let out = emulate(&mut e, 0xd50b_7421, max, None).unwrap();
        assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
        let want: Vec<BusAccess> = (0..2048 / size)
            .map(|i| BusAccess::write(DEV_IPA + (i * size) as u64, size))
            .collect();
        assert_eq!(e.bus.log(), want, "max {max}");
        assert!(
            e.bus.window(DEV_IPA).unwrap()[..2048]
                .iter()
                .all(|&b| b == 0)
        );
    }
}

#[test]
fn single_copy_atomic_pairs_are_one_access_on_non_gathering_device() {
    // MMU off: every access is Device-nGnRnE.
    // ldxp w2, w3, [x1]: one 8-byte read (Arm ARM B2.2.1: LDXP of two 32-bit
    // quantities is single-copy atomic).
    let mut e = env(Mem::MmuOff);
    e.regs.x[1] = DEV_IPA + 0x40;
    assert!(matches!(
        emulate(&mut e, 0x887f_0c22, 8, None).unwrap(),
        Outcome::Emulated { .. }
    ));
    assert_eq!(e.bus.log()[0], BusAccess::read(DEV_IPA + 0x40, 8));
    // ldxp x2, x3, [x1]: two 8-byte reads, whatever the bus takes.
    let mut e = env(Mem::MmuOff);
    e.regs.x[1] = DEV_IPA + 0x40;
    assert!(matches!(
        emulate(&mut e, 0xc87f_0c22, 64, None).unwrap(),
        Outcome::Emulated { .. }
    ));
    assert_eq!(
        e.bus.log()[..2],
        [
            BusAccess::read(DEV_IPA + 0x40, 8),
            BusAccess::read(DEV_IPA + 0x48, 8)
        ]
    );
    // casp x0, x1, x2, x3, [x4] (compare fails: reads only): one 16-byte read
    // when the bus takes 16 bytes, else two 8-byte reads.
    for (max, want) in [
        (16, vec![BusAccess::read(DEV_IPA + 0x40, 16)]),
        (
            8,
            vec![
                BusAccess::read(DEV_IPA + 0x40, 8),
                BusAccess::read(DEV_IPA + 0x48, 8),
            ],
        ),
    ] {
        let mut e = env(Mem::Dev(1));
        e.regs.x[4] = DEV_VA + 0x40;
        assert!(matches!(
            emulate(&mut e, 0x4820_7c82, max, None).unwrap(),
            Outcome::Emulated { .. }
        ));
        assert_eq!(e.bus.log(), want, "max {max}");
    }
    // stp w2, w3, [x1] on Device-nGnRE stays two 4-byte writes.
    let mut e = env(Mem::Dev(1));
    e.regs.x[1] = DEV_VA + 0x40;
    assert!(matches!(
        emulate(&mut e, 0x2900_0c22, 64, None).unwrap(),
        Outcome::Emulated { .. }
    ));
    assert_eq!(
        e.bus.log(),
        [
            BusAccess::write(DEV_IPA + 0x40, 4),
            BusAccess::write(DEV_IPA + 0x44, 4)
        ]
    );
}

/// A bus that counts `MmioBus::contains` questions.
struct AskedBus<'a> {
    bus: &'a mut VecBus,
    asked: Cell<u64>,
}

impl kvm_nisv::mem::MmioBus for AskedBus<'_> {
    fn read(&mut self, ipa: u64, data: &mut [u8]) -> Result<(), kvm_nisv::mem::BusError> {
        self.bus.read(ipa, data)
    }
    fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), kvm_nisv::mem::BusError> {
        self.bus.write(ipa, data)
    }
    fn contains(&self, ipa: u64, len: usize) -> bool {
        self.asked.set(self.asked.get() + 1);
        self.bus.contains(ipa, len)
    }
    fn max_access_size(&self, _ipa: u64) -> usize {
        64
    }
}

/// `ld1 {v0.16b-v3.16b}` through a Normal mapping of a device page, with the
/// bus counting its `contains` questions: returns (questions, bus log, v0..v3).
fn ld1_asking(e: &mut Env, addr: u64) -> (u64, Vec<BusAccess>, Vec<u8>) {
    e.ram.ram.write(CODE, &LD1_4X16B.to_le_bytes()).unwrap();
    e.regs.pc = CODE;
    e.regs.x[1] = addr;
    e.bus.clear_log();
    let mut bus = AskedBus {
        bus: &mut e.bus,
        asked: Cell::new(0),
    };
    let out = Emulator::new().emulate(&mut e.regs, &e.ram, &mut bus, None);
    assert!(matches!(out, Ok(Outcome::Emulated { .. })), "{out:?}");
    let asked = bus.asked.get();
    let v = (0..4).flat_map(|i| e.regs.v[i].to_le_bytes()).collect();
    (asked, e.bus.log().to_vec(), v)
}

#[test]
fn the_bus_is_asked_once_per_span_not_once_per_element() {
    // 64 one-byte elements on one device, in one page: the planner asks
    // whether the whole span is one device's once, and merging the 64
    // pieces into one gathered read needs no further question.
    let mut e = env(Mem::Dev(0));
    let (asked, log, v) = ld1_asking(&mut e, DEV_VA + 0x100);
    assert_eq!(log, [BusAccess::read(DEV_IPA + 0x100, 64)]);
    assert_eq!(v, pattern(2 * PAGE as usize)[0x100..0x140]);
    assert!(asked <= 2, "{asked} contains() calls for one span");
    // Across a page boundary: one question per page, two reads.
    let (asked, log, v) = ld1_asking(&mut e, DEV_VA + PAGE - 0x20);
    assert_eq!(
        log,
        [
            BusAccess::read(DEV_IPA + PAGE - 0x20, 32),
            BusAccess::read(DEV_IPA + PAGE, 32)
        ]
    );
    let p = PAGE as usize;
    assert_eq!(v, pattern(2 * p)[p - 0x20..p + 0x20]);
    assert!(asked <= 4, "{asked} contains() calls for two spans");
}

#[test]
fn a_span_mixing_ram_and_a_device_inside_one_page_is_split_per_byte() {
    // A memslot ending in the middle of a page, a device right after it, the
    // page mapped Normal: `ld1` over the boundary reads 32 bytes from RAM and
    // 32 from the device (one gathered read); `st1` writes them back the
    // same way. The whole-span question fails and every piece is asked on its
    // own, as before the span check.
    const MIX_VA: u64 = 0x30_0000;
    const MIX_IPA: u64 = 0x700_0000;
    let mut e = env(Mem::Dev(0));
    let mut p = pt::Pt::new(12, 25, 1, TABLES, TABLES_LEN);
    p.map(CODE, CODE, 3, pt::AF | pt::AP_RO);
    p.map(MIX_VA, MIX_IPA, 3, pt::AF | pt::attr(0));
    let mut ram = p.ram;
    assert!(ram.add_region(0, 0x2000));
    assert!(ram.add_region(MIX_IPA, 0x800));
    ram.write(MIX_IPA + 0x7e0, &[0x11; 0x20]).unwrap();
    e.ram.ram = ram;
    e.ram.root = p.root;
    e.regs.set_sys(SysReg::Ttbr0El1, p.root);
    e.bus = VecBus::new();
    assert!(e.bus.add_window(MIX_IPA + 0x800, vec![0x22; 0x800]));
    let (_, log, v) = ld1_asking(&mut e, MIX_VA + 0x7e0);
    assert_eq!(log, [BusAccess::read(MIX_IPA + 0x800, 32)]);
    let want: Vec<u8> = [[0x11u8; 32], [0x22u8; 32]].concat();
    assert_eq!(v, want);
    // st1 {v0.16b-v3.16b}, [x1] of a new pattern over the same boundary.
    for (i, r) in e.regs.v.iter_mut().enumerate().take(4) {
        *r = u128::from_le_bytes(core::array::from_fn(|b| (16 * i + b) as u8));
    }
    e.regs.x[1] = MIX_VA + 0x7e0;
    e.bus.clear_log();
    let out = emulate(&mut e, 0x4c00_2020, 64, None).unwrap();
    assert!(matches!(out, Outcome::Emulated { .. }), "{out:?}");
    assert_eq!(e.bus.log(), [BusAccess::write(MIX_IPA + 0x800, 32)]);
    let mut got = [0u8; 32];
    e.ram.ram.read(MIX_IPA + 0x7e0, &mut got).unwrap();
    assert_eq!(got, core::array::from_fn::<u8, 32, _>(|b| b as u8));
    let dev = &e.bus.window(MIX_IPA + 0x800).unwrap()[..32];
    assert_eq!(dev, core::array::from_fn::<u8, 32, _>(|b| (32 + b) as u8));
}
