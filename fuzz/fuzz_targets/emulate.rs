// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Fuzz the emulator: arbitrary registers (general, SIMD&FP, PSTATE and the
//! translation registers), an arbitrary instruction word and memory contents
//! (which also hold the translation tables), RAM next to devices. It must not
//! panic; every outcome other than `Emulated` must leave registers, RAM and
//! devices unchanged; device accesses must be 1, 2, 4 or 8 bytes, naturally
//! aligned; `Emulated` advances the PC by 4.

#![no_main]

use kvm_nisv::emulate::{Emulator, Outcome};
use kvm_nisv::mem::{BusAccess, GuestRam, VecBus, VecRam};
use kvm_nisv::regs::{RegisterFile, SysReg};
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

/// RAM: [0, 0x4000) holds code, tables and data; devices follow at 0x4000
/// and at 0x1000_0000; more RAM at 0x1000_1000 (right after that device).
const RAM: [(u64, usize); 2] = [(0, 0x4000), (0x1000_1000, 0x1000)];

fn snapshot(ram: &VecRam) -> Vec<u8> {
    let mut out = Vec::new();
    for (b, len) in RAM {
        let mut v = vec![0u8; len];
        ram.read(b, &mut v).unwrap();
        out.extend(v);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let sel = inp.u64();
    let word = inp.u64() as u32;
    let mut r = RegisterFile::default();
    for x in r.x.iter_mut() {
        let v = inp.u64();
        // Half the registers point near the interesting addresses.
        *x = if v & 1 == 0 {
            [0x3f00u64, 0x4000, 0x0fff_fff0, 0x1000_0ff8, 0x1000_1000][(v >> 1) as usize % 5]
                .wrapping_add((v >> 8) & 0x1ff)
                .wrapping_sub(0x100)
        } else {
            v
        };
    }
    r.sp_el0 = inp.u64();
    r.sp_el1 = inp.u64();
    for v in r.v.iter_mut().take(8) {
        *v = u128::from(inp.u64()) | (u128::from(inp.u64()) << 64);
    }
    r.pstate = inp.u64();
    if sel & 1 == 0 {
        // Mostly AArch64 EL0/EL1.
        r.pstate &= !0x1e;
        r.pstate |= (sel >> 1) & 4;
    }
    r.pc = if sel & 2 == 0 { 0x100 } else { inp.u64() };
    let sctlr = inp.u64();
    r.set_sys(
        SysReg::SctlrEl1,
        if sel & 4 == 0 { sctlr & !1 } else { sctlr },
    );
    r.set_sys(SysReg::TcrEl1, inp.u64());
    r.set_sys(
        SysReg::Ttbr0El1,
        inp.u64() & if sel & 8 == 0 { 0x3ff8 } else { u64::MAX },
    );
    r.set_sys(
        SysReg::Ttbr1El1,
        inp.u64() & if sel & 8 == 0 { 0x3ff8 } else { u64::MAX },
    );
    r.set_sys(SysReg::MairEl1, inp.u64());
    r.set_sys(SysReg::DczidEl0, inp.u64() & 0x1f);
    r.set_sys(SysReg::IdAa64mmfr0El1, inp.u64() & 0xf);

    let mut ram = VecRam::new();
    for (b, len) in RAM {
        assert!(ram.add_region(b, len));
    }
    let rest = inp.0;
    let n = rest.len().min(0x4000);
    ram.write(0, &rest[..n]).unwrap();
    // The word at the default PC (MMU off) and at the PC's low bits.
    ram.write(0x100, &word.to_le_bytes()).unwrap();
    // Devices: byte windows; every access is logged.
    let mut bus = VecBus::new();
    assert!(bus.add_window(0x4000, vec![0x5a; 0x1000]));
    assert!(bus.add_window(0x1000_0000, vec![0xa5; 0x1000]));

    let regs_before = r.clone();
    let ram_before = snapshot(&ram);
    let bus_before = bus.clone();
    let fault_ipa = (sel & 0x10 != 0).then_some(0x1000_0000 | ((sel >> 8) & 0xfff));
    let mut emu = Emulator::new();
    let out = emu.emulate(&mut r, &ram, &mut bus, fault_ipa);
    for &BusAccess { ipa, len, .. } in bus.log() {
        assert!(matches!(len, 1 | 2 | 4 | 8), "bus access of {len}");
        assert_eq!(ipa % len as u64, 0, "unaligned bus access");
    }
    match out {
        Ok(Outcome::Emulated { .. }) => {
            assert_eq!(r.pc, regs_before.pc.wrapping_add(4));
        }
        Ok(_) | Err(kvm_nisv::emulate::EmulateError::FaultIpaMismatch { .. }) => {
            assert_eq!(r, regs_before, "{out:?}");
            assert_eq!(snapshot(&ram), ram_before, "{out:?}");
            assert!(bus.log().is_empty(), "{out:?}");
            assert_eq!(bus, bus_before);
        }
        Err(kvm_nisv::emulate::EmulateError::Fetch { .. }) => {
            assert_eq!(r, regs_before);
            assert!(bus.log().is_empty());
        }
        Err(e) => panic!("unexpected host error on consistent backends: {e}"),
    }
});
