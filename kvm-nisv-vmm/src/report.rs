// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The stop report: what the VMM prints when a NISV exit (or a retry loop)
//! stops the VM.
//!
//! It starts with the case in plain words ("access inside the `<device>` window
//! ...", "access outside any RAM or device ..."), then why it stopped, the fault
//! IPA and where it is, the ESR ISS decoded, the instruction disassembled with
//! its PC, x0..x30, SP_EL0/SP_EL1, PSTATE in words and a frame-pointer
//! backtrace. Everything is read through kvm-nisv (`fetch_at_pc`, the stage-1
//! walker), never trusted: an unreadable value is reported as such.

use std::fmt::Write as _;

use kvm_nisv::mem::GuestRam;
use kvm_nisv::regs::{Reg, VcpuRegs};

use crate::adapter;
use crate::bus::Bus;

/// Frames printed in the backtrace at most.
pub const BACKTRACE_MAX: usize = 32;

/// The faulting instruction, as far as it could be read.
pub(crate) struct Fetched {
    pub(crate) pc: u64,
    pub(crate) word: Option<u32>,
    pub(crate) insn: Option<kvm_nisv::decode::Insn>,
    pub(crate) why_not: Option<String>,
}

/// The instruction at PC, through kvm-nisv's own fetch (execute permission
/// at the current EL, `kvm_nisv::emulate::fetch_at_pc`).
pub(crate) fn fetch(regs: &mut dyn VcpuRegs, ram: &dyn GuestRam) -> Fetched {
    match kvm_nisv::emulate::fetch_at_pc(regs, &ram) {
        Ok(f) => Fetched {
            pc: f.pc,
            word: Some(f.word),
            insn: f.decode().ok(),
            why_not: None,
        },
        Err(e) => Fetched {
            pc: regs.get(Reg::Pc).unwrap_or(0),
            word: None,
            insn: None,
            why_not: Some(e.to_string()),
        },
    }
}

pub(crate) fn insn_text(f: &Fetched) -> String {
    match (&f.insn, f.word) {
        (Some(i), _) => adapter::disasm(i),
        (None, Some(w)) => format!("{w:#010x} (not a load/store the decoder knows)"),
        (None, None) => format!("unreadable ({})", f.why_not.as_deref().unwrap_or("?")),
    }
}

/// Which of the two situations the report distinguishes.
fn where_is(bus: &Bus, ram: &dyn GuestRam, ipa: u64) -> (Option<String>, String) {
    if let Some((name, base)) = bus.device_at(ipa) {
        (
            Some(name.to_string()),
            format!("inside the {name} window at +{:#x}", ipa - base),
        )
    } else if ram.is_ram(ipa, 1) {
        (None, "in guest RAM".to_string())
    } else {
        (None, "outside any RAM or device".to_string())
    }
}

/// Build the stop report: the case in plain words, the decoded ESR, the fault
/// IPA, the instruction, the registers, PSTATE and a frame-pointer backtrace.
pub fn report(
    regs: &mut dyn VcpuRegs,
    ram: &dyn GuestRam,
    bus: &Bus,
    esr_iss: Option<u64>,
    fault_ipa: u64,
    reason: &str,
) -> String {
    let f = fetch(regs, ram);
    let (device, place) = where_is(bus, ram, fault_ipa);
    let case = match (&device, f.insn.is_some()) {
        (Some(d), false) => {
            format!("access inside the {d} window with an instruction we cannot emulate")
        }
        (Some(d), true) => {
            format!("access inside the {d} window by an instruction the decoder knows")
        }
        (None, _) if ram.is_ram(fault_ipa, 1) => {
            "access to guest RAM without a valid syndrome (unexpected: RAM is a memslot)"
                .to_string()
        }
        (None, _) => "access outside any RAM or device (most likely a guest bug)".to_string(),
    };
    let mut s = String::new();
    let _ = writeln!(s, "kvm-nisv-vmm: NISV exit: {case}");
    let _ = writeln!(s, "  why stopped : {reason}");
    let _ = writeln!(s, "  fault IPA   : {fault_ipa:#x} ({place})");
    match esr_iss {
        Some(iss) => {
            let _ = writeln!(s, "  ESR ISS     : {}", adapter::describe_iss(iss));
        }
        None => {
            let _ = writeln!(
                s,
                "  ESR ISS     : (a KVM_EXIT_MMIO access with a valid syndrome, not a NISV exit)"
            );
        }
    }
    let _ = writeln!(s, "  instruction : {} at PC {:#x}", insn_text(&f), f.pc);
    let mut x = [0u64; 31];
    for (i, v) in x.iter_mut().enumerate() {
        *v = regs.get(Reg::X(i as u8)).unwrap_or(0);
    }
    for row in 0..8 {
        let mut line = String::from(" ");
        for col in 0..4 {
            let i = row * 4 + col;
            if let Some(v) = x.get(i) {
                let _ = write!(line, " x{i:<2}={v:016x}");
            }
        }
        let _ = writeln!(s, "{line}");
    }
    let sp0 = regs.get(Reg::SpEl0).unwrap_or(0);
    let sp1 = regs.get(Reg::SpEl1).unwrap_or(0);
    let _ = writeln!(s, "  sp_el0={sp0:016x} sp_el1={sp1:016x} pc={:016x}", f.pc);
    match regs.get(Reg::Pstate) {
        Ok(p) => {
            let _ = writeln!(s, "  PSTATE      : {}", describe_pstate(p));
        }
        Err(e) => {
            let _ = writeln!(s, "  PSTATE      : unreadable ({e})");
        }
    }
    let _ = writeln!(s, "  backtrace   :");
    for line in backtrace(regs, ram, f.pc) {
        let _ = writeln!(s, "    {line}");
    }
    s
}

/// PSTATE (SPSR layout) in words: NZCV, DAIF, mode.
pub fn describe_pstate(p: u64) -> String {
    let flag = |bit: u32, c: char| if p >> bit & 1 == 1 { c } else { '-' };
    let mode = match p & 0x1f {
        0b00000 => "EL0t",
        0b00100 => "EL1t",
        0b00101 => "EL1h",
        0b01000 => "EL2t",
        0b01001 => "EL2h",
        m if m & 0x10 != 0 => "AArch32",
        _ => "reserved",
    };
    format!(
        "{p:#x} ({}{}{}{} DAIF={}{}{}{} {mode})",
        flag(31, 'N'),
        flag(30, 'Z'),
        flag(29, 'C'),
        flag(28, 'V'),
        flag(9, 'D'),
        flag(8, 'A'),
        flag(7, 'I'),
        flag(6, 'F'),
    )
}

/// A frame-pointer backtrace (AAPCS64 frame records: `[x29] = caller's x29`,
/// `[x29 + 8] = return address`), read through the stage-1 walker. Stops at a
/// null, misaligned, non-increasing or untranslatable frame pointer.
pub fn backtrace(regs: &mut dyn VcpuRegs, ram: &dyn GuestRam, pc: u64) -> Vec<String> {
    let mut out = vec![format!("#0  pc {pc:#x}")];
    if let Ok(lr) = regs.get(Reg::X(30)) {
        out.push(format!("#1  lr {lr:#x}"));
    }
    let mut fp = regs.get(Reg::X(29)).unwrap_or(0);
    let mut prev = 0u64;
    while out.len() < BACKTRACE_MAX {
        if fp == 0 {
            break;
        }
        if !fp.is_multiple_of(16) || fp <= prev {
            out.push(format!(
                "(frame pointer {fp:#x} is not a frame record; stopping)"
            ));
            break;
        }
        let rec = adapter::translate(regs, ram, fp).and_then(|ipa| {
            let mut b = [0u8; 16];
            ram.read(ipa, &mut b).map_err(|e| e.to_string())?;
            let (lo, hi) = b.split_at(8);
            let next = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
            let ret = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));
            Ok((next, ret))
        });
        match rec {
            Ok((next, ret)) => {
                out.push(format!("#{:<2} ret {ret:#x} (frame {fp:#x})", out.len()));
                prev = fp;
                fp = next;
            }
            Err(e) => {
                out.push(format!("(frame {fp:#x} unreadable: {e})"));
                break;
            }
        }
    }
    out
}
