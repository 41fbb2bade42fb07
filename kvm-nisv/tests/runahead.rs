// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Run-ahead emulation (`kvm_nisv::runahead`): device loops in one exit, every
//! stop rule, the register traffic it costs, RAM atomicity hooks, the trigger
//! policy, and a differential test against stepping the same programs one
//! instruction per exit.

#[path = "stage1_pt/mod.rs"]
mod pt;

#[path = "emulate_common/mod.rs"]
mod common;

use common::Rng;
use kvm_nisv::a64;
use kvm_nisv::emulate::{Emulator, Outcome};
use kvm_nisv::mem::VecBus;
use kvm_nisv::mem::{GuestRam, MemError, VecRam};
use kvm_nisv::regcache::{CountingRegs, RegCall};
use kvm_nisv::regs::{Reg, RegisterFile, SysReg, VcpuRegs};
use kvm_nisv::runahead::{
    RunAhead, RunAheadConfig, RunAheadControl, RunAheadOutcome, RunAheadTrigger, StopReason,
    Unlimited,
};
use kvm_nisv::stage1::SCTLR_M;
use std::cell::Cell;

const CODE: u64 = 0x1000;
const DEV: u64 = 0x1000_0000;
const RAMBUF: u64 = 0x8000;

const STR_W8_X10_POST4: u32 = 0xb800_4548;
const SUBS_X9_1: u32 = 0xf100_0529;
const BNE_MINUS8: u32 = 0x54ff_ffc1;
const NOP: u32 = 0xd503_201f;
const STR_X0_X5: u32 = 0xf900_00a0;
const LDXR_X1_X2: u32 = 0xc85f_7c41;
const STXR_W3_X4_X2: u32 = 0xc803_7c44;
const DMB_ISH: u32 = 0xd503_3bbf;
const DSB_SY: u32 = 0xd503_3f9f;
const LDR_X0_SP: u32 = 0xf940_03e0;
const LDR_X1_X2_POST8: u32 = 0xf840_8441;
const STR_X1_X3_POST8: u32 = 0xf800_8461;

/// Flat (MMU off) machine: code at 0x1000, a RAM buffer, a 64 KiB device.
fn machine(code: &[u32]) -> (VecRam, RegisterFile, VecBus) {
    let mut ram = VecRam::new();
    assert!(ram.add_region(0, 0x1_0000));
    for (i, w) in code.iter().enumerate() {
        ram.write(CODE + 4 * i as u64, &w.to_le_bytes()).unwrap();
    }
    let mut rf = RegisterFile::default();
    rf.pc = CODE;
    rf.pstate = 0x3c5;
    rf.set_sys(SysReg::IdAa64mmfr0El1, 5);
    let mut bus = VecBus::new();
    assert!(bus.add_window(DEV, vec![0; 0x1_0000]));
    (ram, rf, bus)
}

fn run(
    ra: &mut RunAhead,
    regs: &mut impl VcpuRegs,
    ram: &impl GuestRam,
    bus: &mut VecBus,
    ctl: &mut impl RunAheadControl,
) -> RunAheadOutcome {
    let mut emu = Emulator::new();
    ra.emulate(&mut emu, regs, ram, bus, None, ctl).unwrap()
}

fn nzcv(rf: &RegisterFile) -> u64 {
    rf.pstate >> 28
}

#[test]
fn a_device_loop_runs_in_one_exit_with_minimal_register_traffic() {
    let (ram, mut rf, mut bus) = machine(&[STR_W8_X10_POST4, SUBS_X9_1, BNE_MINUS8, NOP]);
    rf.x[8] = 0x1122_3344;
    rf.x[9] = 5;
    rf.x[10] = DEV;
    let mut regs = CountingRegs::new(rf);
    let mut ra = RunAhead::new(RunAheadConfig::default());
    let out = run(&mut ra, &mut regs, &ram, &mut bus, &mut Unlimited);
    assert!(matches!(out.outcome, Outcome::Emulated { .. }));
    assert_eq!(out.stop, StopReason::Unmodelled { word: NOP });
    // After the first store: subs, b.ne, then four times str, subs, b.ne.
    assert_eq!((out.ran, out.accesses), (2 + 3 * 4, 4));
    let rf = &regs.inner;
    assert_eq!(rf.pc, CODE + 12);
    assert_eq!((rf.x[9], rf.x[10]), (0, DEV + 20));
    assert_eq!(nzcv(rf), 0b0110, "Z and C from the last subs");
    assert_eq!(bus.log().len(), 5);
    assert!(bus.log().iter().all(|a| a.len == 4 && a.write));
    assert_eq!(
        &bus.window(DEV).unwrap()[16..20],
        &0x1122_3344u32.to_le_bytes()
    );
    // Each register read once: PSTATE, PC, SCTLR, X10, X8, MDSCR, X9; written
    // back once: X9, X10, PSTATE (NZCV), PC last.
    assert_eq!(regs.read_twice(), None);
    let calls: Vec<RegCall> = regs.log.iter().collect();
    assert_eq!(
        calls,
        vec![
            RegCall::Get(Reg::Pstate),
            RegCall::Get(Reg::Pc),
            RegCall::Get(Reg::Sys(SysReg::SctlrEl1)),
            RegCall::Get(Reg::X(10)),
            RegCall::Get(Reg::X(8)),
            RegCall::Get(Reg::Sys(SysReg::MdscrEl1)),
            RegCall::Get(Reg::X(9)),
            RegCall::Set(Reg::X(9)),
            RegCall::Set(Reg::X(10)),
            RegCall::Set(Reg::Pstate),
            RegCall::Set(Reg::Pc),
        ]
    );
    assert_eq!(ra.stats().instructions, 14);
    assert_eq!(ra.stats().stops_for(StopReason::Unmodelled { word: 0 }), 1);
}

#[test]
fn a_lone_access_costs_exactly_what_the_emulator_alone_costs() {
    let prog = [STR_W8_X10_POST4, NOP];
    let (ram, mut rf, mut bus) = machine(&prog);
    rf.x[10] = DEV;
    // Plain emulator.
    let mut plain = CountingRegs::new(rf.clone());
    Emulator::new()
        .emulate(&mut plain, &ram, &mut bus.clone(), None)
        .unwrap();
    // Run-ahead.
    let mut regs = CountingRegs::new(rf);
    let out = run(
        &mut RunAhead::new(RunAheadConfig::default()),
        &mut regs,
        &ram,
        &mut bus,
        &mut Unlimited,
    );
    assert_eq!(out.ran, 0);
    assert_eq!(out.stop, StopReason::Unmodelled { word: NOP });
    assert_eq!(regs.traffic(), plain.traffic());
    assert_eq!(regs.traffic().total(), 7, "5 reads + 2 writes");
    assert_eq!(regs.count(RegCall::Get(Reg::Sys(SysReg::MdscrEl1))), 0);
    assert_eq!(regs.inner, plain.inner);
}

#[test]
fn budgets_and_stop_requests() {
    let prog = [STR_W8_X10_POST4, SUBS_X9_1, BNE_MINUS8, NOP];
    let setup = || {
        let (ram, mut rf, bus) = machine(&prog);
        rf.x[9] = 100;
        rf.x[10] = DEV;
        (ram, rf, bus)
    };
    // Instruction budget: stops after exactly 4 more (subs, b.ne, str, subs).
    let (ram, mut rf, mut bus) = setup();
    let cfg = RunAheadConfig {
        max_insns: 4,
        max_micros: 1_000_000,
    };
    let out = run(
        &mut RunAhead::new(cfg),
        &mut rf,
        &ram,
        &mut bus,
        &mut Unlimited,
    );
    assert_eq!((out.ran, out.stop), (4, StopReason::Budget));
    assert_eq!((rf.pc, rf.x[9], rf.x[10]), (CODE + 8, 98, DEV + 8));

    // Time budget with a clock that advances 10 us per reading.
    struct Clock(Cell<u64>);
    impl RunAheadControl for Clock {
        fn stop_requested(&mut self) -> bool {
            false
        }
        fn now_micros(&mut self) -> Option<u64> {
            let t = self.0.get();
            self.0.set(t + 10);
            Some(t)
        }
    }
    let (ram, mut rf, mut bus) = setup();
    let cfg = RunAheadConfig {
        max_insns: 1000,
        max_micros: 35,
    };
    let out = run(
        &mut RunAhead::new(cfg),
        &mut rf,
        &ram,
        &mut bus,
        &mut Clock(Cell::new(0)),
    );
    // Start at 0; checks read 10, 20, 30 (run), 40 (stop).
    assert_eq!((out.ran, out.stop), (3, StopReason::Time));

    // A stop request after two instructions.
    struct Kick(u32);
    impl RunAheadControl for Kick {
        fn stop_requested(&mut self) -> bool {
            self.0 = self.0.saturating_sub(1);
            self.0 == 0
        }
    }
    let (ram, mut rf, mut bus) = setup();
    let out = run(
        &mut RunAhead::new(RunAheadConfig::default()),
        &mut rf,
        &ram,
        &mut bus,
        &mut Kick(3),
    );
    assert_eq!((out.ran, out.stop), (2, StopReason::Requested));
    assert_eq!(rf.pc, CODE);

    // Disabled.
    let (ram, mut rf, mut bus) = setup();
    let cfg = RunAheadConfig {
        max_insns: 0,
        max_micros: 100,
    };
    let out = run(
        &mut RunAhead::new(cfg),
        &mut rf,
        &ram,
        &mut bus,
        &mut Unlimited,
    );
    assert_eq!(
        (out.ran, out.stop, rf.pc),
        (0, StopReason::Disabled, CODE + 4)
    );
}

#[test]
fn debugging_turns_it_off() {
    let prog = [STR_W8_X10_POST4, SUBS_X9_1, BNE_MINUS8, NOP];
    for (mdscr, pstate_ss, reads_mdscr) in [
        (1u64 << 15, false, true), // MDE: breakpoints/watchpoints may fire
        (1, false, true),          // MDSCR_EL1.SS
        (0, true, false),          // PSTATE.SS: decided without MDSCR_EL1
    ] {
        let (ram, mut rf, mut bus) = machine(&prog);
        rf.x[9] = 3;
        rf.x[10] = DEV;
        rf.set_sys(SysReg::MdscrEl1, mdscr);
        if pstate_ss {
            rf.pstate |= 1 << 21;
        }
        let mut regs = CountingRegs::new(rf);
        let out = run(
            &mut RunAhead::new(RunAheadConfig::default()),
            &mut regs,
            &ram,
            &mut bus,
            &mut Unlimited,
        );
        assert_eq!((out.ran, out.stop), (0, StopReason::Debug));
        assert_eq!(regs.inner.pc, CODE + 4);
        assert_eq!(
            regs.count(RegCall::Get(Reg::Sys(SysReg::MdscrEl1))),
            usize::from(reads_mdscr)
        );
        // The emulated store cleared PSTATE.SS, as KVM does when it skips an
        // instruction.
        assert_eq!(regs.inner.pstate & (1 << 21), 0);
    }
}

#[test]
fn exclusives_atomics_to_ram_stop_and_to_devices_run() {
    // str w8, [x10], #4; ldxr x1, [x2]; stxr w3, x4, [x2]; nop
    let prog = [STR_W8_X10_POST4, LDXR_X1_X2, STXR_W3_X4_X2, NOP];
    let (ram, mut rf, mut bus) = machine(&prog);
    rf.x[10] = DEV;
    rf.x[2] = RAMBUF;
    let out = run(
        &mut RunAhead::new(RunAheadConfig::default()),
        &mut rf,
        &ram,
        &mut bus,
        &mut Unlimited,
    );
    assert_eq!((out.ran, out.stop), (0, StopReason::RamAtomicity));
    assert_eq!(rf.pc, CODE + 4);

    let (ram, mut rf, mut bus) = machine(&prog);
    rf.x[10] = DEV;
    rf.x[2] = DEV + 0x100;
    rf.x[3] = 7;
    rf.x[4] = 0xabcd;
    bus.window_mut(DEV).unwrap()[0x100] = 0x5a;
    let out = run(
        &mut RunAhead::new(RunAheadConfig::default()),
        &mut rf,
        &ram,
        &mut bus,
        &mut Unlimited,
    );
    assert_eq!(out.stop, StopReason::Unmodelled { word: NOP });
    assert_eq!((out.ran, out.accesses), (2, 2));
    assert_eq!((rf.x[1], rf.x[3]), (0x5a, 0), "loaded, and the STXR passed");
    assert_eq!(
        &bus.window(DEV).unwrap()[0x100..0x108],
        &0xabcdu64.to_le_bytes()
    );
}

#[test]
fn a_faulting_access_is_left_to_the_cpu() {
    // str w8, [x10], #4; subs x9, x9, #1; str x0, [x5] (x5: nothing there).
    let prog = [STR_W8_X10_POST4, SUBS_X9_1, STR_X0_X5, NOP];
    let (ram, mut rf, mut bus) = machine(&prog);
    rf.x[10] = DEV;
    rf.x[9] = 1;
    rf.x[5] = 0x4000_0000;
    let out = run(
        &mut RunAhead::new(RunAheadConfig::default()),
        &mut rf,
        &ram,
        &mut bus,
        &mut Unlimited,
    );
    assert_eq!((out.ran, out.stop), (1, StopReason::Access));
    assert_eq!((rf.pc, rf.x[9], nzcv(&rf)), (CODE + 8, 0, 0b0110));
    assert_eq!(bus.log().len(), 1);
}

#[test]
fn barriers_run_other_system_instructions_stop() {
    let prog = [STR_W8_X10_POST4, DMB_ISH, DSB_SY, 0xd53b_d040]; // mrs x0, tpidr_el0
    let (ram, mut rf, mut bus) = machine(&prog);
    rf.x[10] = DEV;
    let out = run(
        &mut RunAhead::new(RunAheadConfig::default()),
        &mut rf,
        &ram,
        &mut bus,
        &mut Unlimited,
    );
    assert_eq!(out.ran, 2);
    assert_eq!(out.stop, StopReason::Unmodelled { word: 0xd53b_d040 });
    assert_eq!(rf.pc, CODE + 12);
}

#[test]
fn sp_alignment_checking_stops_a_misaligned_sp_access() {
    let prog = [STR_W8_X10_POST4, LDR_X0_SP, NOP];
    for (sa, sp, stop) in [
        (true, RAMBUF + 8, StopReason::SpAlignment),
        (false, RAMBUF + 8, StopReason::Unmodelled { word: NOP }),
        (true, RAMBUF, StopReason::Unmodelled { word: NOP }),
    ] {
        let (ram, mut rf, mut bus) = machine(&prog);
        rf.x[10] = DEV;
        rf.sp_el1 = sp;
        rf.set_sys(SysReg::SctlrEl1, if sa { 1 << 3 } else { 0 });
        let out = run(
            &mut RunAhead::new(RunAheadConfig::default()),
            &mut rf,
            &ram,
            &mut bus,
            &mut Unlimited,
        );
        assert_eq!(out.stop, stop, "SA {sa} SP {sp:#x}");
    }
}

#[test]
fn an_untranslatable_next_page_stops_the_fetch() {
    // MMU on: code page at VA 0x1000 (mapped), the next page is not mapped.
    let mut p = pt::Pt::new(12, 25, 1, 0x4000_0000, 0x10_0000);
    p.map(CODE, CODE, 3, pt::AF | pt::AP_RO);
    p.map(0x20_0000, DEV, 3, pt::AF | pt::attr(1));
    let mut ram = p.ram;
    assert!(ram.add_region(0, 0x3000));
    // The store is the page's last word; subs would be at 0x2000.
    ram.write(CODE + 0xffc, &STR_W8_X10_POST4.to_le_bytes())
        .unwrap();
    ram.write(0x2000, &SUBS_X9_1.to_le_bytes()).unwrap();
    let mut rf = RegisterFile::default();
    rf.pc = CODE + 0xffc;
    rf.pstate = 0x3c5;
    rf.set_sys(SysReg::SctlrEl1, SCTLR_M);
    rf.set_sys(SysReg::TcrEl1, 25 | (5 << 32) | (1 << 23));
    rf.set_sys(SysReg::Ttbr0El1, p.root);
    rf.set_sys(SysReg::MairEl1, 0x04ff);
    rf.set_sys(SysReg::IdAa64mmfr0El1, 5);
    rf.x[10] = 0x20_0000;
    let mut bus = VecBus::new();
    assert!(bus.add_window(DEV, vec![0; 0x1000]));
    let mut regs = CountingRegs::new(rf);
    let out = run(
        &mut RunAhead::new(RunAheadConfig::default()),
        &mut regs,
        &ram,
        &mut bus,
        &mut Unlimited,
    );
    assert_eq!((out.ran, out.stop), (0, StopReason::Fetch));
    assert_eq!(regs.inner.pc, 0x2000);
    // MMU on, everything in TTBR0's half: neither TTBR1 nor MAIR is read.
    assert_eq!(regs.count(RegCall::Get(Reg::Sys(SysReg::Ttbr1El1))), 0);
    assert_eq!(regs.count(RegCall::Get(Reg::Sys(SysReg::MairEl1))), 0);
    assert_eq!(regs.read_twice(), None);
}

/// RAM that counts the atomic accesses run-ahead makes.
struct AtomicCounting {
    ram: VecRam,
    reads: Cell<u32>,
    writes: Cell<u32>,
}

impl GuestRam for AtomicCounting {
    fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.ram.read(ipa, buf)
    }
    fn write(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        self.ram.write(ipa, buf)
    }
    fn is_ram(&self, ipa: u64, len: usize) -> bool {
        self.ram.is_ram(ipa, len)
    }
    fn read_atomic(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        assert!(matches!(buf.len(), 1 | 2 | 4 | 8) && ipa.is_multiple_of(buf.len() as u64));
        self.reads.set(self.reads.get() + 1);
        self.ram.read(ipa, buf)
    }
    fn write_atomic(&self, ipa: u64, buf: &[u8]) -> Result<(), MemError> {
        assert!(matches!(buf.len(), 1 | 2 | 4 | 8) && ipa.is_multiple_of(buf.len() as u64));
        self.writes.set(self.writes.get() + 1);
        self.ram.write(ipa, buf)
    }
}

#[test]
fn ram_elements_are_single_copy_atomic_host_accesses() {
    // str x1, [x3], #8 (device); ldr x1, [x2], #8 (RAM); subs; b.ne -12...
    // A memcpy from RAM to the device, entered at its store.
    let b_ne_minus12 = 0x54ff_ffa1;
    let prog = [
        STR_X1_X3_POST8,
        LDR_X1_X2_POST8,
        SUBS_X9_1,
        b_ne_minus12,
        STR_X1_X3_POST8,
        NOP,
    ];
    let (vram, mut rf, mut bus) = machine(&prog);
    for i in 0..4u64 {
        vram.write(RAMBUF + 8 * i, &(0x100 + i).to_le_bytes())
            .unwrap();
    }
    let ram = AtomicCounting {
        ram: vram,
        reads: Cell::new(0),
        writes: Cell::new(0),
    };
    rf.x[1] = 0xff;
    rf.x[2] = RAMBUF;
    rf.x[3] = DEV;
    rf.x[9] = 4;
    let out = run(
        &mut RunAhead::new(RunAheadConfig::default()),
        &mut rf,
        &ram,
        &mut bus,
        &mut Unlimited,
    );
    assert_eq!(out.stop, StopReason::Unmodelled { word: NOP });
    // Four RAM loads, each one atomic 8-byte access (plus atomic instruction
    // fetches from RAM: 4-byte reads).
    let dev = bus.window(DEV).unwrap();
    let got: Vec<u64> = (0..5)
        .map(|i| u64::from_le_bytes(dev[8 * i..8 * i + 8].try_into().unwrap()))
        .collect();
    assert_eq!(got, vec![0xff, 0x100, 0x101, 0x102, 0x103]);
    assert!(ram.reads.get() >= 4);
    assert_eq!(ram.writes.get(), 0);
}

#[test]
fn the_trigger_fires_on_a_repeated_pc_within_the_window() {
    let mut t = RunAheadTrigger::repeat_within(100);
    assert!(!t.should_run_ahead(0x1000, 0));
    assert!(t.should_run_ahead(0x1000, 50));
    assert!(!t.should_run_ahead(0x1000, 500), "too late");
    assert!(t.should_run_ahead(0x1000, 550));
    // Four PCs are remembered; a fifth evicts the oldest.
    for (i, pc) in [0x2000, 0x3000, 0x4000, 0x5000].into_iter().enumerate() {
        assert!(!t.should_run_ahead(pc, 600 + i as u64));
    }
    assert!(!t.should_run_ahead(0x1000, 610));
    assert!(t.should_run_ahead(0x5000, 620));
    let mut a = RunAheadTrigger::always();
    assert!(a.should_run_ahead(1, 0));
    // exit_handled restarts the window when handling ends: an exit that took
    // longer than the window to handle is still followed by a hit.
    let mut t = RunAheadTrigger::repeat_within(100);
    assert!(!t.should_run_ahead(0x1000, 0));
    t.exit_handled(0x1000, 3000);
    assert!(t.should_run_ahead(0x1000, 3050));
    t.exit_handled(0x1000, 6000);
    assert!(!t.should_run_ahead(0x1000, 6200), "guest took too long");
    // Unknown PCs are ignored.
    t.exit_handled(0x9000, 6300);
    assert!(!t.should_run_ahead(0x9000, 6310));
}

/// Random programs mixing integer instructions, device loads/stores on two
/// pointer registers and a counted loop: run-ahead in one call must end in
/// the same state as one exit per load/store with the integer instructions
/// run one at a time (the same interpreter, so this checks the run-ahead
/// plumbing: the register cache, PC, NZCV in PSTATE, SP selection, stops).
#[test]
fn run_ahead_equals_one_instruction_per_exit() {
    let mut rng = Rng(0x5eed_0001);
    let mut cases = 0;
    let mut total_ran = 0u64;
    while cases < 3000 {
        let (prog, rf) = random_program(&mut rng);
        let (ram, _, _) = machine(&prog);
        let mut bus = VecBus::new();
        assert!(bus.add_window(DEV, (0..0x1_0000u32).map(|i| (i * 7) as u8).collect()));
        // Reference: step.
        let mut ref_rf = rf.clone();
        let mut ref_bus = bus.clone();
        let mut emu = Emulator::new();
        let mut steps = 0;
        loop {
            let pc = ref_rf.pc;
            let i = ((pc - CODE) / 4) as usize;
            let Some(&w) = prog.get(i) else { break };
            if let Some(ins) = a64::decode(w) {
                let mut st = a64::IntState {
                    x: ref_rf.x,
                    sp: ref_rf.sp_el1,
                    nzcv: (ref_rf.pstate >> 28) as u8,
                };
                let Some(npc) = a64::execute(&ins, pc, &mut st).unwrap() else {
                    break;
                };
                ref_rf.x = st.x;
                ref_rf.sp_el1 = st.sp;
                ref_rf.pstate = (ref_rf.pstate & !0xf000_0000) | (u64::from(st.nzcv) << 28);
                ref_rf.pc = npc;
            } else {
                match emu.emulate(&mut ref_rf, &ram, &mut ref_bus, None).unwrap() {
                    Outcome::Emulated { .. } => {}
                    _ => break,
                }
            }
            steps += 1;
            if steps > 200 {
                break;
            }
        }
        // Run-ahead from the same start (the first instruction is a store).
        let mut ra_rf = rf.clone();
        let mut ra_bus = bus.clone();
        let cfg = RunAheadConfig {
            max_insns: 200,
            max_micros: 0,
        };
        let out = RunAhead::new(cfg)
            .emulate(
                &mut Emulator::new(),
                &mut ra_rf,
                &ram,
                &mut ra_bus,
                None,
                &mut Unlimited,
            )
            .unwrap();
        assert!(matches!(out.outcome, Outcome::Emulated { .. }));
        assert_eq!(
            u64::from(out.ran) + 1,
            steps,
            "case {cases}: {prog:08x?} {out:?}"
        );
        assert_eq!(ra_rf, ref_rf, "case {cases}: {prog:08x?}");
        assert_eq!(ra_bus, ref_bus, "case {cases}");
        total_ran += u64::from(out.ran);
        cases += 1;
    }
    assert!(total_ran > 3000 * 5, "programs too short: {total_ran}");
}

/// A store through x20 first, then up to 12 instructions: random integer
/// words that write neither x20, x21, x22 nor SP, device loads/stores through
/// x20/x21 (post-index, in range), and a loop on x22; NOP at the end.
fn random_program(rng: &mut Rng) -> (Vec<u32>, RegisterFile) {
    let mut body: Vec<u32> = Vec::new();
    // str x<rt>, [x20], #8 with rt random (not the pointers).
    let data = |rng: &mut Rng| rng.pick(&[0u32, 1, 2, 3, 4, 5, 6, 7, 30]);
    let first = 0xf800_8680 | data(rng);
    let n = 2 + rng.below(10) as usize;
    for _ in 0..n {
        match rng.below(5) {
            0 => {
                // Device access through x21: ldr/str x or w, post-index +8.
                let ld = rng.chance(1, 2);
                let size = if rng.chance(1, 2) {
                    0xf800_0000
                } else {
                    0xb800_0000
                };
                body.push(size | (u32::from(ld) << 22) | (8 << 12) | 0x400 | (21 << 5) | data(rng));
            }
            _ => loop {
                let w = rng.next() as u32;
                let w = match rng.below(3) {
                    0 => (w & !0x1c00_0000) | 0x1000_0000,
                    _ => (w & !0x0e00_0000) | 0x0a00_0000,
                };
                let Some(i) = a64::decode(w) else { continue };
                let rd = w & 31;
                let ok = match i {
                    a64::IntInsn::AddSub { rd, .. } | a64::IntInsn::Logical { rd, .. } => {
                        !matches!(rd, a64::Gpr::Sp)
                    }
                    a64::IntInsn::Adr { .. } => true,
                    _ => true,
                };
                if ok && !(20..=22).contains(&rd) {
                    body.push(w);
                    break;
                }
            },
        }
    }
    // Loop: the body after `first` repeats while x22 counts down.
    let mut prog = vec![first];
    prog.extend(&body);
    let back = -(body.len() as i32 + 1);
    prog.push(0xf100_06d6); // subs x22, x22, #1
    prog.push(0x5400_0001 | (((back as u32) & 0x7ffff) << 5)); // b.ne body start
    prog.push(NOP);
    let mut rf = RegisterFile::default();
    rf.pc = CODE;
    rf.pstate = 0x3c5 | ((rng.next() & 0xf) << 28);
    for (i, x) in rf.x.iter_mut().enumerate() {
        *x = match i {
            20 => DEV,
            21 => DEV + 0x8000,
            22 => 1 + rng.below(4),
            _ => rng.next(),
        };
    }
    rf.sp_el1 = rng.next();
    rf.set_sys(SysReg::IdAa64mmfr0El1, 5);
    (prog, rf)
}
