// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Page-straddling accesses that arrive as `KVM_EXIT_MMIO`.
//!
//! A single general-register load or store without writeback carries a valid
//! syndrome (ESR_EL2.ISV = 1) even when it crosses a page boundary and only its
//! second part faults at stage 2 (RAM page, then a device page; the CPU splits
//! the access and reports the second page). KVM then reports ONE
//! `KVM_EXIT_MMIO` of the whole access size at the fault IPA
//! (arch/arm64/kvm/mmio.c `io_mem_abort`), so the bytes of the first page would
//! wrongly go to, or come from, the device.
//!
//! [`straddle`] recognises that case and completes it correctly: it runs the
//! instruction through kvm-nisv's emulator against a *shadow* of the vCPU
//! registers (reads go to the vCPU, writes are kept aside), so every byte goes
//! to or comes from its own IPA (RAM or device), and then lets KVM's own
//! completion finish the instruction. `kvm_handle_mmio_return`
//! (arch/arm64/kvm/mmio.c, 6.1 and 6.12) reads `len` bytes from `mmio.data`,
//! sign-extends them per ESR.SSE, truncates per ESR.SF, byte-swaps for a
//! big-endian guest, writes Rt and advances PC. So for a load `mmio.data` is set
//! to the access's bytes in address order (the low `len` bytes of the value the
//! emulator loaded, in the guest's data endianness); for a store the emulator
//! already wrote every byte where it belongs and nothing else is needed. The
//! shadowed register writes (Rt, PC) are dropped: KVM makes the same ones.
//!
//! The same holds for the head of a straddle (device page, then RAM through
//! another mapping): KVM reports the whole size at the first byte's IPA and the
//! bytes past the page end would be looked up at the next IPA, which is not
//! where the guest's mapping puts them.
//!
//! Every piece is translated from its own VA through the guest's stage 1 with
//! the access's EL and kind, by the library's planner (the same as for NISV
//! exits), and every check is made before any access. A piece that faults
//! (translation, permission, access flag, alignment, or nothing behind it)
//! makes [`straddle`] return [`Straddle::Fault`]: the caller delivers that
//! fault (FAR = the piece's VA), nothing is written, and KVM must not complete
//! the access (the run loop clears `kvm_run.exit_reason`). Before issue 11 the
//! whole access then fell through to the bus at the fault IPA, so a store wrote
//! its second half into the window page that follows in IPA space and the
//! guest saw no fault.
//!
//! Cost: only exits whose address is within `len` bytes of the start of a 4 KiB
//! page (the tail of a straddle always is) or whose range crosses a 4 KiB
//! boundary (the head) pay for the decode (PC, PSTATE, the
//! stage-1 registers, the base and index registers); the address computed from
//! the instruction then tells whether the access really crosses the page.

use kvm_nisv::decode::{Base, Insn, LoadExt, Offset, Op, RegSlot, Writeback};
use kvm_nisv::emulate::plan;
use kvm_nisv::emulate::{EmulateError, Emulator, GuestFault, Outcome, fetch_at_pc};
use kvm_nisv::mem::GuestRam;
use kvm_nisv::regs::{Reg, RegError, SysReg, VcpuRegs};

use crate::bus::Bus;

/// 4 KiB: the smallest granule, so every page boundary is a 4 KiB boundary.
const PAGE: u64 = 0x1000;
/// PSTATE.M\[0\]: SP_ELx selected.
const PSTATE_SP: u64 = 1;
/// PSTATE.nRW (M\[4\]): AArch32.
const PSTATE_NRW: u64 = 1 << 4;
/// SCTLR_EL1.EE (EL1 data endianness) and SCTLR_EL1.E0E (EL0).
const SCTLR_EE: u64 = 1 << 25;
const SCTLR_E0E: u64 = 1 << 24;

/// Register reads go to the vCPU; writes are recorded, not made.
struct Shadow<'a> {
    inner: &'a mut dyn VcpuRegs,
    writes: Vec<(Reg, u64)>,
}

impl VcpuRegs for Shadow<'_> {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        match self.writes.iter().rev().find(|(r, _)| *r == reg) {
            Some(&(_, v)) => Ok(v),
            None => self.inner.get(reg),
        }
    }
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        self.writes.push((reg, value));
        Ok(())
    }
    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        self.inner.get_v(n)
    }
    fn set_v(&mut self, _n: u8, _value: u128) -> Result<(), RegError> {
        // An ISV=1 access never targets a SIMD&FP register; refuse rather
        // than lose the write.
        Err(RegError::Unavailable(format!("V{_n} (shadowed)")))
    }
}

/// The cheap pre-check: could an MMIO exit of `len` bytes at `addr` be part
/// of a page-straddling access? Either the tail (the address is within `len`
/// bytes of the start of a 4 KiB page: the CPU reported the second page) or
/// the head (the reported range itself crosses into the next page).
pub fn may_straddle(addr: u64, len: usize) -> bool {
    let (off, len) = (addr % PAGE, len as u64);
    len > 1 && (off < len || off + len > PAGE)
}

/// The virtual address `insn` accesses, from the vCPU's registers (the
/// library's own address computation, `kvm_nisv::emulate::plan::address`).
fn address(regs: &mut dyn VcpuRegs, insn: &Insn, pstate: u64) -> Option<u64> {
    let base = match insn.base {
        Base::X(n) if n < 31 => regs.get(Reg::X(n)).ok()?,
        Base::X(_) => return None,
        Base::Sp => {
            let el1 = (pstate >> 2) & 3 == 1;
            let r = if el1 && pstate & PSTATE_SP != 0 {
                Reg::SpEl1
            } else {
                Reg::SpEl0
            };
            regs.get(r).ok()?
        }
        _ => return None,
    };
    let index = match insn.offset {
        Offset::Reg { m, .. } if m < 31 => regs.get(Reg::X(m)).ok()?,
        _ => 0,
    };
    Some(plan::address(insn, base, index))
}

/// What [`straddle`] did with an MMIO exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Straddle {
    /// Not a page-straddling access: handle the exit as an ordinary MMIO access.
    No,
    /// Completed: every byte went to, or came from, its own target (for a read,
    /// the buffer holds the bytes KVM completes the load with). A device that
    /// refused its part is treated like one that refuses an ordinary MMIO
    /// access (logged; a read gets zeros).
    Completed,
    /// A piece of the access faults: the guest must take `0` (translation,
    /// permission, access flag, alignment fault of that piece, or the external
    /// abort of a piece with nothing behind it) and nothing was accessed. KVM
    /// must not complete the MMIO access.
    Fault(GuestFault),
    /// The access could not be checked (the guest changed its tables, or a
    /// register could not be read): resume without completing the MMIO access,
    /// so the vCPU executes the instruction again.
    Retry,
}

/// Complete an MMIO exit that is part of a page-straddling single-register
/// access. Every piece is translated from its own VA through the guest's stage
/// 1 with the access's EL and kind, and every check is made before any access,
/// by kvm-nisv's emulator (the same planner as for NISV exits), run on the
/// decoded instruction against a shadow of the registers with `addr` as the
/// fault IPA. Nothing is accessed before the access is known to straddle, and
/// nothing at all when a piece faults.
pub fn straddle(
    regs: &mut dyn VcpuRegs,
    ram: &dyn GuestRam,
    bus: &Bus,
    addr: u64,
    read: Option<&mut [u8]>,
    write: Option<&[u8]>,
) -> Straddle {
    let len = match (&read, write) {
        (Some(d), _) => d.len(),
        (None, Some(d)) => d.len(),
        (None, None) => return Straddle::No,
    };
    if !may_straddle(addr, len) {
        return Straddle::No;
    }
    let Ok(pstate) = regs.get(Reg::Pstate) else {
        return Straddle::No;
    };
    if pstate & PSTATE_NRW != 0 {
        // An AArch32 access: not decoded here (A64 decoder).
        return Straddle::No;
    }
    let Ok(insn) = fetch_at_pc(regs, &ram).map(|f| f.decode()) else {
        return Straddle::No;
    };
    let Ok(insn) = insn else {
        return Straddle::No;
    };
    let [el] = insn.elements.as_slice() else {
        return Straddle::No;
    };
    let RegSlot::Gpr { .. } = el.reg else {
        return Straddle::No;
    };
    if insn.writeback != Writeback::None || usize::from(el.size) != len {
        return Straddle::No;
    }
    let Some(va) = address(regs, &insn, pstate) else {
        return Straddle::No;
    };
    let va = va.wrapping_add(u64::from(el.offset));
    if va % PAGE + len as u64 <= PAGE {
        return Straddle::No; // Not a straddle: an ordinary MMIO access.
    }
    let big = match regs.get(Reg::Sys(SysReg::SctlrEl1)) {
        Ok(s) if (pstate >> 2) & 3 == 0 => s & SCTLR_E0E != 0,
        Ok(s) => s & SCTLR_EE != 0,
        Err(_) => return Straddle::Retry,
    };
    let mut shadow = Shadow {
        inner: regs,
        writes: Vec::new(),
    };
    let mut emu = Emulator::new();
    let mut b = bus;
    let outcome = emu.emulate_insn(&mut shadow, &ram, &mut b, &insn, Some(addr));
    match outcome {
        Ok(Outcome::Emulated { .. }) => {}
        Ok(Outcome::GuestFault(f)) => return Straddle::Fault(f),
        Ok(Outcome::NoDevice { fault, .. }) => return Straddle::Fault(fault),
        Err(EmulateError::Bus(e)) => {
            log::warn!("straddling MMIO access at {addr:#x} (va {va:#x}): {e}");
            if let Some(d) = read {
                d.fill(0);
            }
            return Straddle::Completed;
        }
        r => {
            log::warn!("straddling MMIO access at {addr:#x} (va {va:#x}) not emulated: {r:?}");
            return Straddle::Retry;
        }
    }
    if let Some(data) = read {
        let v = shadow
            .writes
            .iter()
            .find_map(|(r, v)| matches!(r, Reg::X(_)).then_some(*v))
            .unwrap_or(0);
        let bytes = v.to_le_bytes();
        for (i, d) in data.iter_mut().enumerate() {
            let j = if big { len.saturating_sub(1 + i) } else { i };
            *d = bytes.get(j).copied().unwrap_or(0);
        }
    }
    Straddle::Completed
}

/// PSTATE.BTYPE, cleared by KVM's own PC advance (`kvm_skip_instr`).
const PSTATE_BTYPE: u64 = 3 << 10;

/// The value a sign-extending load of `data` (the bytes in address order)
/// leaves in its destination register.
pub fn sign_extended(data: &[u8], big: bool, ext: LoadExt) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    let raw = if big {
        b[8 - n..].copy_from_slice(&data[..n]);
        u64::from_be_bytes(b)
    } else {
        b[..n].copy_from_slice(&data[..n]);
        u64::from_le_bytes(b)
    };
    let sh = 64 - 8 * n.max(1) as u32;
    let v = (((raw << sh) as i64) >> sh) as u64;
    match ext {
        LoadExt::Sign32 => v & 0xffff_ffff,
        LoadExt::Sign64 => v,
        _ => raw,
    }
}

/// Complete a sign-extending load (LDRSB/LDRSH/LDRSW) that KVM would
/// complete wrongly, and return `true` if it did: the caller must then stop KVM
/// from completing the `KVM_EXIT_MMIO` itself (set `kvm_run.exit_reason` to
/// anything but `KVM_EXIT_MMIO` before the next `KVM_RUN`; arch/arm64/kvm/arm.c
/// `kvm_arch_vcpu_ioctl_run` only calls `kvm_handle_mmio_return` when it is).
///
/// Why: `kvm_handle_mmio_return` (arch/arm64/kvm/mmio.c, 6.1 and 6.12)
/// sign-extends the data per ESR.SSE and then passes it through
/// `vcpu_data_host_to_guest` (arch/arm64/include/asm/kvm_emulate.h), which
/// masks it back to `len` bytes (`data & 0xff`, `data & 0xffff`, ...) in both
/// endiannesses: the sign extension is lost and the register is
/// zero-extended. This writes the destination register and PC (+4, clearing
/// PSTATE.BTYPE as KVM would) itself. Only reads shorter than 8 bytes whose
/// first or last byte has its top bit set (the sign bit, in either data
/// endianness) are decoded; for every other value zero- and sign-extension
/// agree.
pub fn sign_extend(regs: &mut dyn VcpuRegs, ram: &dyn GuestRam, data: &[u8]) -> bool {
    let len = data.len();
    let (Some(first), Some(last)) = (data.first(), data.last()) else {
        return false;
    };
    if len >= 8 || (first | last) & 0x80 == 0 {
        return false;
    }
    let Ok(f) = fetch_at_pc(regs, &ram) else {
        return false;
    };
    let (pc, pstate) = (f.pc, f.pstate);
    let Ok(insn) = f.decode() else {
        return false;
    };
    let [el] = insn.elements.as_slice() else {
        return false;
    };
    let RegSlot::Gpr { n, ext } = el.reg else {
        return false;
    };
    if insn.op != Op::Load
        || ext == LoadExt::Zero
        || insn.writeback != Writeback::None
        || usize::from(el.size) != len
    {
        return false;
    }
    let big = match regs.get(Reg::Sys(SysReg::SctlrEl1)) {
        Ok(s) if (pstate >> 2) & 3 == 0 => s & SCTLR_E0E != 0,
        Ok(s) => s & SCTLR_EE != 0,
        Err(_) => return false,
    };
    let v = sign_extended(data, big, ext);
    if n < 31 && regs.set(Reg::X(n), v).is_err() {
        return false;
    }
    if pstate & PSTATE_BTYPE != 0 && regs.set(Reg::Pstate, pstate & !PSTATE_BTYPE).is_err() {
        return false;
    }
    // If this fails after Xn was written, KVM still completes the load (Xn
    // zero-extended, PC + 4): the same result as without this function.
    regs.set(Reg::Pc, pc.wrapping_add(4)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_check_is_cheap_and_catches_both_ends() {
        // Tail: the CPU reported the second page.
        assert!(may_straddle(0x1000_0000, 8));
        assert!(may_straddle(0x1000_0004, 8));
        // Head: the reported range crosses the page end.
        assert!(may_straddle(0x1000_0ffd, 8));
        assert!(may_straddle(0x1000_0fff, 2));
        // Ordinary accesses inside a page are not looked at.
        assert!(!may_straddle(0x1000_0008, 8));
        assert!(!may_straddle(0x1000_0ff8, 8));
        assert!(!may_straddle(0x1000_0000, 1));
        assert!(!may_straddle(0x1000_0800, 4));
    }

    #[test]
    fn sign_extension_per_size_endianness_and_destination() {
        assert_eq!(
            sign_extended(&[0x80], false, LoadExt::Sign64),
            0xffff_ffff_ffff_ff80
        );
        assert_eq!(sign_extended(&[0x80], false, LoadExt::Sign32), 0xffff_ff80);
        assert_eq!(
            sign_extended(&[0x34, 0x82], false, LoadExt::Sign64),
            0xffff_ffff_ffff_8234
        );
        assert_eq!(
            sign_extended(&[0x82, 0x34], true, LoadExt::Sign64),
            0xffff_ffff_ffff_8234
        );
        assert_eq!(sign_extended(&[0x82, 0x34], false, LoadExt::Sign64), 0x3482);
        assert_eq!(
            sign_extended(&[1, 2, 3, 0xf0], false, LoadExt::Sign64),
            0xffff_ffff_f003_0201
        );
        assert_eq!(
            sign_extended(&[0xf0, 3, 2, 1], true, LoadExt::Sign32),
            0xf003_0201
        );
        assert_eq!(sign_extended(&[0x7f], false, LoadExt::Sign64), 0x7f);
    }
}
