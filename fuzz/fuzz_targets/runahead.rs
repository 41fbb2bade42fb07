// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Fuzz run-ahead emulation: arbitrary registers (general, SIMD&FP, PSTATE
//! with NZCV, SCTLR/TCR/TTBRs/MAIR, MDSCR), an arbitrary program of up to 32
//! words after the faulting one, memory contents (which also hold the
//! translation tables) and the budget. It must not panic, must respect the
//! instruction budget, must make only naturally aligned device accesses of at
//! most 8 bytes, and must end in exactly the state reached by executing the
//! same number of instructions one at a time (the emulator for each load or
//! store, the interpreter for each integer instruction, nothing for a barrier),
//! which checks the register cache, the write-back, PC, NZCV and SP handling
//! of run-ahead on any input.

#![no_main]

use kvm_nisv::a64;
use kvm_nisv::emulate::{Emulator, Outcome};
use kvm_nisv::mem::{BusError, GuestRam, MmioBus, VecRam};
use kvm_nisv::regs::{RegisterFile, SysReg};
use kvm_nisv::runahead::{RunAhead, RunAheadConfig, Unlimited};
use libfuzzer_sys::fuzz_target;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let n = self.0.len().min(8);
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        u64::from_le_bytes(b)
    }
}

/// Devices: byte arrays; every access is logged.
#[derive(Clone, Default, PartialEq, Debug)]
struct Bus {
    regions: Vec<(u64, Vec<u8>)>,
    log: Vec<(u64, usize)>,
}

impl Bus {
    fn find(&mut self, ipa: u64, len: usize) -> Option<&mut [u8]> {
        let end = ipa.checked_add(len as u64)?;
        self.regions.iter_mut().find_map(|(b, r)| {
            if ipa >= *b && end <= *b + r.len() as u64 {
                let o = (ipa - *b) as usize;
                r.get_mut(o..o + len)
            } else {
                None
            }
        })
    }
}

impl MmioBus for Bus {
    fn read(&mut self, ipa: u64, data: &mut [u8]) -> Result<(), BusError> {
        self.log.push((ipa, data.len()));
        let len = data.len();
        data.copy_from_slice(self.find(ipa, len).ok_or(BusError::NoDevice { ipa, len })?);
        Ok(())
    }
    fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), BusError> {
        self.log.push((ipa, data.len()));
        let len = data.len();
        self.find(ipa, len)
            .ok_or(BusError::NoDevice { ipa, len })?
            .copy_from_slice(data);
        Ok(())
    }
    fn contains(&self, ipa: u64, len: usize) -> bool {
        let Some(end) = ipa.checked_add(len as u64) else {
            return false;
        };
        self.regions
            .iter()
            .any(|(b, r)| ipa >= *b && end <= *b + r.len() as u64)
    }
}

const RAM_LEN: usize = 0x4000;
const DEV: u64 = 0x1000_0000;

fn snapshot(ram: &VecRam) -> Vec<u8> {
    let mut v = vec![0u8; RAM_LEN];
    ram.read(0, &mut v).unwrap();
    v
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let sel = inp.u64();
    let mut r = RegisterFile::default();
    for x in r.x.iter_mut() {
        let v = inp.u64();
        *x = match v & 3 {
            0 => DEV + ((v >> 2) & 0xff8),
            1 => 0x2000 + ((v >> 2) & 0xfff),
            _ => v,
        };
    }
    r.sp_el0 = inp.u64();
    r.sp_el1 = inp.u64();
    for v in r.v.iter_mut().take(8) {
        *v = u128::from(inp.u64()) | (u128::from(inp.u64()) << 64);
    }
    // AArch64 EL0 or EL1h/EL1t, random NZCV, DAIF and BTYPE; sometimes SS.
    let p = inp.u64();
    r.pstate = (p & 0xf000_0c00) | [0x0, 0x4, 0x5][(p >> 4) as usize % 3];
    if sel & 0x100 != 0 {
        r.pstate |= 1 << 21;
    }
    r.pc = 0x1000;
    let sctlr = inp.u64();
    r.set_sys(
        SysReg::SctlrEl1,
        if sel & 4 == 0 { sctlr & !1 } else { sctlr },
    );
    r.set_sys(SysReg::TcrEl1, inp.u64());
    r.set_sys(SysReg::Ttbr0El1, inp.u64() & 0x3ff8);
    r.set_sys(SysReg::Ttbr1El1, inp.u64() & 0x3ff8);
    r.set_sys(SysReg::MairEl1, inp.u64());
    r.set_sys(SysReg::DczidEl0, 4);
    r.set_sys(SysReg::IdAa64mmfr0El1, 5);
    r.set_sys(
        SysReg::MdscrEl1,
        if sel & 0x200 != 0 { inp.u64() } else { 0 },
    );
    let max_insns = (sel >> 16) as u32 % 80;

    let mut ram = VecRam::new();
    assert!(ram.add_region(0, RAM_LEN));
    // Code: up to 32 words at 0x1000; the rest of the input fills memory.
    let rest = inp.0;
    let n = rest.len().min(RAM_LEN);
    ram.write(0, &rest[..n]).unwrap();
    let code_len = rest.len().min(32 * 4);
    ram.write(0x1000, &rest[..code_len]).unwrap();
    let mut bus = Bus::default();
    bus.regions.push((DEV, vec![0xa5; 0x1000]));

    let (start_regs, start_ram, start_bus) = (r.clone(), snapshot(&ram), bus.clone());

    let cfg = RunAheadConfig {
        max_insns,
        max_micros: 0,
    };
    let mut emu = Emulator::new();
    let out = RunAhead::new(cfg).emulate(&mut emu, &mut r, &ram, &mut bus, None, &mut Unlimited);
    for &(ipa, len) in &bus.log {
        assert!(matches!(len, 1 | 2 | 4 | 8), "bus access of {len}");
        assert_eq!(ipa % len as u64, 0, "unaligned bus access");
    }
    let Ok(out) = out else { return };
    assert!(out.ran <= max_insns);
    if !matches!(out.outcome, Outcome::Emulated { .. }) {
        assert_eq!(out.ran, 0);
        return;
    }

    // Reference: the same number of instructions, one at a time.
    let mut rr = start_regs;
    let mut rram = VecRam::new();
    assert!(rram.add_region(0, RAM_LEN));
    rram.write(0, &start_ram).unwrap();
    let mut rbus = start_bus;
    let mut remu = Emulator::new();
    let first = remu.emulate(&mut rr, &rram, &mut rbus, None).unwrap();
    assert!(matches!(first, Outcome::Emulated { .. }));
    // Instruction words are read through one translation per code page, as
    // run-ahead does (a TLB may keep it: changing it needs TLB maintenance).
    let mut page: Option<(u64, u64, u64)> = None;
    for _ in 0..out.ran {
        let pc = rr.pc;
        let el = if (rr.pstate >> 2) & 3 == 0 {
            kvm_nisv::stage1::El::El0
        } else {
            kvm_nisv::stage1::El::El1
        };
        let (va, size, ipa) = match page {
            Some((va, size, ipa)) if pc.wrapping_sub(va) < size => (va, size, ipa),
            _ => {
                let s1 = kvm_nisv::stage1::Stage1Regs {
                    pan: rr.pstate & (1 << 22) != 0,
                    ..kvm_nisv::stage1::Stage1Regs::read(&mut rr.clone()).unwrap()
                };
                let t = kvm_nisv::stage1::translate(
                    &s1,
                    pc,
                    kvm_nisv::stage1::AccessKind::Fetch,
                    el,
                    &rram,
                )
                .expect("run-ahead fetched it");
                let p = (pc & !(t.size - 1), t.size, t.ipa & !(t.size - 1));
                page = Some(p);
                p
            }
        };
        let _ = size;
        let mut w = [0u8; 4];
        rram.read(ipa + (pc - va), &mut w).unwrap();
        let word = u32::from_le_bytes(w);
        if let Some(i) = a64::decode(word) {
            let sp_el1 = el == kvm_nisv::stage1::El::El1 && rr.pstate & 1 != 0;
            let mut st = a64::IntState {
                x: rr.x,
                sp: if sp_el1 { rr.sp_el1 } else { rr.sp_el0 },
                nzcv: (rr.pstate >> 28) as u8,
            };
            let npc = a64::execute(&i, pc, &mut st)
                .unwrap()
                .expect("executed by run-ahead");
            rr.x = st.x;
            if sp_el1 {
                rr.sp_el1 = st.sp;
            } else {
                rr.sp_el0 = st.sp;
            }
            rr.pstate = (rr.pstate & !0xf000_0000) | (u64::from(st.nzcv) << 28);
            rr.pc = npc;
        } else if a64::barrier(word).is_some() {
            rr.pc = pc.wrapping_add(4);
        } else {
            // As run-ahead: the decoded instruction, no store-exclusive fusing.
            let insn = kvm_nisv::decode::decode(word).expect("a load/store");
            let o = remu
                .emulate_insn(&mut rr, &rram, &mut rbus, &insn, None)
                .unwrap();
            assert!(matches!(o, Outcome::Emulated { .. }), "{o:?}");
        }
    }
    assert_eq!(r, rr, "{out:?}");
    assert_eq!(snapshot(&ram), snapshot(&rram));
    assert_eq!(bus.regions, rbus.regions);
    assert_eq!(bus.log, rbus.log);
});
