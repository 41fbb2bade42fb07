// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

// The emulator benchmark proper; included by benches/emulate.rs except on musl,
// where criterion is not built.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kvm_nisv::decode::{Class, decode};
use kvm_nisv::emulate::{Emulator, Outcome};
use kvm_nisv::mem::{BusAccess, GuestRam, MmioBus, VecBus, VecRam};
use kvm_nisv::regs::{Reg, RegError, RegisterFile, SysReg, VcpuRegs};
use kvm_nisv::stage1::SCTLR_M;

/// Where the instruction lives (identity-mapped when the MMU is on).
const CODE: u64 = 0x1000;
/// Translation tables are allocated from here (RAM).
const TABLES: u64 = 0x8000;
/// RAM: `[0, RAM_LEN)`.
const RAM_LEN: usize = 0x1_0000;
/// The device: two pages at `DEV`, one more at `DEV2` (not contiguous, for the
/// page-straddling pair).
const DEV: u64 = 0x1000_0000;
const DEV2: u64 = 0x1000_4000;
/// With the MMU on, the device pages are at these VAs: `DEV_VA` and
/// `DEV_VA + 0x1000` map to `DEV`, `DEV_VA + 0x2000` to `DEV2`.
const DEV_VA: u64 = 0x4000_0000;
/// A Normal-memory mapping of `DEV` (for DC ZVA, which faults on Device memory).
const DEV_VA_NORMAL: u64 = 0x4000_3000;

/// PSTATE: EL1h, DAIF masked.
const PSTATE_EL1H: u64 = 0x3c5;
/// TCR_EL1: T0SZ = 25 (39-bit VA, 4 KiB granule, start level 1), EPD1,
/// IPS = 48 bits.
const TCR: u64 = 25 | (1 << 23) | (5 << 32);
/// MAIR_EL1: Attr0 Normal write-back, Attr1 Device-nGnRnE.
const MAIR: u64 = 0x00ff;
/// Leaf descriptor bits (Arm ARM D8.3): AF, AttrIndx.
const AF: u64 = 1 << 10;
const ATTR_NORMAL: u64 = 0 << 2;
const ATTR_DEVICE: u64 = 1 << 2;

/// The devices: byte windows at fixed addresses (the access log is cleared
/// on every iteration, so it does not grow).
fn bus() -> VecBus {
    let mut bus = VecBus::new();
    assert!(bus.add_window(DEV, (0..0x2000u32).map(|i| i as u8).collect()));
    assert!(bus.add_window(DEV2, (0..0x1000u32).map(|i| (i as u8) ^ 0x5a).collect()));
    bus
}

/// The counting wrapper: how many `VcpuRegs` calls (ONE_REG ioctls on KVM).
#[derive(Debug, Default)]
struct Counting {
    rf: RegisterFile,
    get: u32,
    get_v: u32,
    set: u32,
    set_v: u32,
}

impl VcpuRegs for Counting {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        self.get += 1;
        self.rf.get(reg)
    }
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        self.set += 1;
        self.rf.set(reg, value)
    }
    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        self.get_v += 1;
        self.rf.get_v(n)
    }
    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        self.set_v += 1;
        self.rf.set_v(n, value)
    }
}

/// A minimal VMSAv8-64 table builder (4 KiB granule, 39-bit VA, start level 1;
/// Arm ARM D8.2/D8.3), writing into the RAM.
struct Tables {
    root: u64,
    next: u64,
}

impl Tables {
    fn new(ram: &VecRam) -> Self {
        let mut t = Tables {
            root: 0,
            next: TABLES,
        };
        t.root = t.alloc(ram);
        t
    }

    fn alloc(&mut self, ram: &VecRam) -> u64 {
        let a = self.next;
        self.next += 0x1000;
        ram.write(a, &[0; 0x1000]).expect("table area is RAM");
        a
    }

    fn rd(ram: &VecRam, at: u64) -> u64 {
        let mut b = [0; 8];
        ram.read(at, &mut b).expect("table is RAM");
        u64::from_le_bytes(b)
    }

    /// Map the 4 KiB page at `va` to `pa` with `attrs` (AF and AttrIndx).
    fn map(&mut self, ram: &VecRam, va: u64, pa: u64, attrs: u64) {
        let mut table = self.root;
        for lsb in [30u32, 21] {
            let slot = table + ((va >> lsb) & 0x1ff) * 8;
            let d = Self::rd(ram, slot);
            table = if d & 3 == 3 {
                d & 0x0000_ffff_ffff_f000
            } else {
                let n = self.alloc(ram);
                ram.write(slot, &(n | 3).to_le_bytes()).expect("RAM");
                n
            };
        }
        let slot = table + ((va >> 12) & 0x1ff) * 8;
        ram.write(slot, &(pa | 3 | attrs).to_le_bytes())
            .expect("RAM");
    }
}

/// One benchmarked instruction in one translation regime.
struct Case {
    name: &'static str,
    word: u32,
    class: Class,
    mmu: bool,
    /// X1 (the base register of every case).
    base: u64,
}

struct Env {
    ram: VecRam,
    regs: RegisterFile,
    bus: VecBus,
}

fn env(case: &Case) -> Env {
    let mut ram = VecRam::new();
    assert!(ram.add_region(0, RAM_LEN));
    ram.write(CODE, &case.word.to_le_bytes()).expect("RAM");
    let mut regs = RegisterFile::new();
    regs.pc = CODE;
    regs.pstate = PSTATE_EL1H;
    for (i, x) in regs.x.iter_mut().enumerate() {
        *x = 0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 1);
    }
    for (i, v) in regs.v.iter_mut().enumerate() {
        *v = 0x0202_0202_0202_0202_0202_0202_0202_0202u128.wrapping_mul(i as u128 + 1);
    }
    regs.x[1] = case.base;
    regs.set_sys(SysReg::DczidEl0, 4); // 64-byte DC ZVA blocks.
    regs.set_sys(SysReg::IdAa64mmfr0El1, 5); // PARange: 48 bits.
    if case.mmu {
        let mut t = Tables::new(&ram);
        t.map(&ram, CODE, CODE, AF | ATTR_NORMAL);
        t.map(&ram, DEV_VA, DEV, AF | ATTR_DEVICE);
        t.map(&ram, DEV_VA + 0x1000, DEV + 0x1000, AF | ATTR_DEVICE);
        t.map(&ram, DEV_VA + 0x2000, DEV2, AF | ATTR_DEVICE);
        t.map(&ram, DEV_VA_NORMAL, DEV, AF | ATTR_NORMAL);
        regs.set_sys(SysReg::SctlrEl1, SCTLR_M);
        regs.set_sys(SysReg::TcrEl1, TCR);
        regs.set_sys(SysReg::Ttbr0El1, t.root);
        regs.set_sys(SysReg::MairEl1, MAIR);
    }
    Env {
        ram,
        regs,
        bus: bus(),
    }
}

/// Undo what one emulation changes that would change the next one: the PC
/// and the base register's writeback.
#[inline]
fn reset(regs: &mut RegisterFile, base: u64) {
    regs.pc = CODE;
    regs.x[1] = base;
}

fn cases() -> Vec<Case> {
    // (name, word, class, MMU-off case too, X1 with the MMU on). All target
    // the device; with the MMU off (Device memory) or through the Device
    // mapping unless said otherwise.
    let on = DEV_VA + 0x100;
    let table: [(&str, u32, Class, bool, u64); 12] = [
        ("str-post", 0xf800_8420, Class::GprSingle, true, on), // str x0, [x1], #8
        ("ldp", 0xa940_0c22, Class::GprPair, true, on),        // ldp x2, x3, [x1]
        ("ld4-16b", 0x4c40_0020, Class::SimdMultiple, true, on), // ld4 {v0.16b-v3.16b}, [x1]
        ("ld1-4x16b", 0x4c40_2020, Class::SimdMultiple, true, on), // ld1 {v0.16b-v3.16b}, [x1]
        ("ldadd", 0xf820_0022, Class::Atomic, true, on),       // ldadd x0, x2, [x1]
        ("ldr-q", 0x3dc0_0023, Class::FpSingle, true, on),     // ldr q3, [x1]
        ("ldp-q", 0xad40_0420, Class::FpPair, true, on),       // ldp q0, q1, [x1]
        ("ld1-lane", 0x0d40_9020, Class::SimdSingle, true, on), // ld1 {v0.s}[1], [x1]
        ("ldxr", 0xc85f_7c22, Class::Exclusive, true, on),     // ldxr x2, [x1]
        ("cas", 0xc8a0_7c22, Class::CompareAndSwap, true, on), // cas x0, x2, [x1]
        // dc zva, x1: on Device memory (MMU off included) it is an alignment
        // fault (Arm ARM D7.4.9 "DC ZVA"), so only through the Normal mapping.
        (
            "dc-zva",
            0xd50b_7421,
            Class::DcZva,
            false,
            DEV_VA_NORMAL + 0x100,
        ),
        // stp x2, x3, [x1] with x1 8 bytes before the end of a page: the
        // second register goes to another page (another device IPA).
        (
            "stp-straddle",
            0xa900_0c22,
            Class::GprPair,
            false,
            DEV_VA + 0x1ff8,
        ),
    ];
    let mut v = Vec::new();
    for (name, word, class, mmu_off, base) in table {
        if mmu_off {
            v.push(Case {
                name,
                word,
                class,
                mmu: false,
                base: DEV + 0x100,
            });
        }
        v.push(Case {
            name,
            word,
            class,
            mmu: true,
            base,
        });
    }
    v
}

fn id(case: &Case) -> String {
    format!("{} mmu-{}", case.name, if case.mmu { "on" } else { "off" })
}

/// Run the case once, checking that it is emulated as intended; returns the
/// bus accesses it made and the fault IPA to pass (its first access).
fn record(case: &Case) -> (Vec<BusAccess>, u64) {
    let insn = decode(case.word).expect("benchmark word decodes");
    assert_eq!(insn.class, case.class, "{insn}");
    let mut e = env(case);
    let out = Emulator::new()
        .emulate(&mut e.regs, &e.ram, &mut e.bus, None)
        .expect("emulation succeeds");
    assert!(
        matches!(out, Outcome::Emulated { .. }),
        "{}: {out:?}",
        id(case)
    );
    let log = e.bus.log().to_vec();
    assert!(!log.is_empty(), "{}: no bus access", id(case));
    assert_eq!(e.regs.pc, CODE + 4);
    let fault_ipa = log[0].ipa;
    (log, fault_ipa)
}

/// Print the register calls of the first emulation (nothing cached in the
/// emulator) and of the second (steady state: ID registers cached).
fn count(case: &Case, fault_ipa: u64, bus_accesses: usize) {
    let e = env(case);
    let mut regs = Counting {
        rf: e.regs,
        ..Default::default()
    };
    let mut bus = e.bus;
    let mut emu = Emulator::new();
    let mut calls = |regs: &mut Counting| {
        regs.get = 0;
        regs.get_v = 0;
        regs.set = 0;
        regs.set_v = 0;
        reset(&mut regs.rf, case.base);
        let out = emu.emulate(regs, &e.ram, &mut bus, Some(fault_ipa));
        assert!(matches!(out, Ok(Outcome::Emulated { .. })), "{out:?}");
        (regs.get, regs.get_v, regs.set, regs.set_v)
    };
    let first = calls(&mut regs);
    let (get, get_v, set, set_v) = calls(&mut regs);
    println!(
        "regcount\t{}\t{:?}\tbus={bus_accesses}\tget={get}\tget_v={get_v}\tset={set}\tset_v={set_v}\tfirst_get={}\tfirst_get_v={}",
        id(case),
        case.class,
        first.0,
        first.1
    );
}

fn bench_emulate(c: &mut Criterion) {
    let mut g = c.benchmark_group("emulate");
    for case in cases() {
        let (log, fault_ipa) = record(&case);
        count(&case, fault_ipa, log.len());
        let name = id(&case);
        let Env {
            ram,
            mut regs,
            mut bus,
        } = env(&case);
        let mut emu = Emulator::new();
        g.bench_function(BenchmarkId::new("emulate", &name), |b| {
            b.iter(|| {
                reset(&mut regs, case.base);
                bus.clear_log();
                black_box(emu.emulate(&mut regs, &ram, &mut bus, Some(black_box(fault_ipa))))
            })
        });
        let mut buf = [0u8; 8];
        g.bench_function(BenchmarkId::new("bus", &name), |b| {
            b.iter(|| {
                bus.clear_log();
                for &BusAccess {
                    ipa, len, write, ..
                } in &log
                {
                    let data = &mut buf[..len];
                    let r = if write {
                        bus.write(black_box(ipa), data)
                    } else {
                        bus.read(black_box(ipa), data)
                    };
                    black_box(r).expect("recorded access");
                }
            })
        });
    }
    g.finish();
}

/// Short measurements: `scripts/bench` keeps the whole run within a few
/// minutes on a shared two-core machine; ratios need no more.
fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(900))
        .sample_size(20)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = bench_emulate
}
criterion_main!(benches);
