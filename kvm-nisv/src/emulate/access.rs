// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Performing planned element accesses on guest RAM and the MMIO bus.
//!
//! The elements' bytes are laid out in one buffer in architectural order, each
//! element in memory byte order (byte-reversed at its own size for a
//! big-endian guest), so the bus always sees bytes in address order. The
//! planned pieces become [`Transfer`]s between that buffer and RAM or the bus,
//! made in order:
//!
//! - a RAM piece is one [`GuestRam`] access;
//! - a device piece is a bus transfer, cut into naturally aligned accesses of
//!   at most the transfer's limit at increasing addresses. Consecutive device
//!   pieces (contiguous in VA, IPA and buffer, claimed as one range by the
//!   bus) are merged into one transfer when the memory type permits
//!   gathering (Normal, Device-GRE: limit [`MmioBus::max_access_size`]), or
//!   when they are one single-copy atomic access (the pair of LDXP/STXP of
//!   W registers, STXP of X registers, CASP: limit the pair's size).
//!   Otherwise (Device-nGnRnE, -nGnRE, -nGRE) each piece is its own transfer
//!   with the element limit of 8 bytes, so an element is one access (a Q
//!   element two 8-byte accesses). See docs/emulator.md, "Gathering".

use alloc::vec;
use alloc::vec::Vec;

use crate::decode::AtomicOp;
use crate::mem::{GuestRam, MemError, MmioBus};
use crate::stage1::{DeviceKind, MemType};

use super::EmulateError;
use super::plan::{ElemPlan, Target, sext};

/// The widest access an element is cut into on memory that does not permit
/// gathering: single-copy atomic accesses are at most 8 bytes (a 128-bit
/// SIMD&FP element is a pair of 64-bit ones; Arm ARM B2.2.1).
pub(crate) const ELEMENT_LIMIT: usize = 8;

/// The largest access the emulator makes, whatever the bus accepts: 4 KiB, so
/// that no access crosses a 4 KiB boundary (no instruction accesses more than
/// a 2 KiB DC ZVA block anyway).
pub(crate) const BUS_LIMIT_MAX: usize = 4096;

/// Mask of the low `bytes` bytes.
pub(crate) fn mask(bytes: usize) -> u64 {
    if bytes >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * bytes)) - 1
    }
}

/// Whether the memory type permits gathering: Normal memory, and Device memory
/// with the G attribute (Device-GRE). Arm ARM B2.10.2.1 "Gathering".
pub(crate) fn gathers(mem: MemType) -> bool {
    matches!(
        mem,
        MemType::Normal { .. } | MemType::Device(DeviceKind::GRE)
    )
}

/// The widest access the bus takes at `ipa`: [`MmioBus::max_access_size`],
/// at least [`ELEMENT_LIMIT`], at most [`BUS_LIMIT_MAX`], rounded down to a
/// power of two.
pub(crate) fn bus_limit<B: MmioBus + ?Sized>(bus: &B, ipa: u64) -> usize {
    let m = bus.max_access_size(ipa).clamp(ELEMENT_LIMIT, BUS_LIMIT_MAX);
    1 << (usize::BITS - 1 - m.leading_zeros())
}

/// Split a bus range into naturally aligned accesses of at most `limit`
/// bytes (a power of two), at increasing addresses: each the largest power
/// of two that is aligned, fits and is within the limit.
pub(crate) fn bus_chunks(ipa: u64, len: usize, limit: usize) -> impl Iterator<Item = (u64, usize)> {
    let mut at = ipa;
    let mut left = len;
    core::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let mut s = limit.max(1);
        while s > 1 && (s > left || !at.is_multiple_of(s as u64)) {
            s /= 2;
        }
        let r = (at, s);
        at = at.wrapping_add(s as u64);
        left -= s;
        Some(r)
    })
}

/// A run of an instruction's bytes to or from one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    /// Offset in the instruction's byte buffer.
    pub buf: usize,
    /// VA of the first byte.
    pub va: u64,
    /// IPA of the first byte.
    pub ipa: u64,
    /// Length in bytes.
    pub len: usize,
    /// RAM or device.
    pub target: Target,
    /// Every piece merged in permits gathering.
    pub gather: bool,
    /// The widest bus access (device transfers).
    pub limit: usize,
}

/// The transfers of one instruction and where each element's bytes are in
/// the buffer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Layout {
    /// Transfers in architectural order.
    pub transfers: Vec<Transfer>,
    /// Offset of each element in the buffer.
    pub offsets: Vec<usize>,
    /// Buffer size: the sum of the element sizes.
    pub total: usize,
}

/// Lay out `plans`. `unit` is the size of the single-copy atomic access the
/// elements form together (the pair of LDXP/STXP of W registers, STXP of X
/// registers, CASP), if any: its pieces are merged whatever the memory type.
pub(crate) fn layout<B: MmioBus + ?Sized>(
    bus: &B,
    plans: &[ElemPlan],
    unit: Option<usize>,
) -> Layout {
    let mut l = Layout {
        transfers: Vec::with_capacity(plans.len()),
        offsets: Vec::with_capacity(plans.len()),
        total: 0,
    };
    // Device bytes [lo, hi) one device was seen to claim as a whole, and the
    // transfer start for which that look-ahead failed (see `claims`).
    let mut claimed: Option<(u64, u64)> = None;
    let mut unclaimed_from: Option<u64> = None;
    for (i, p) in plans.iter().enumerate() {
        l.offsets.push(l.total);
        for (j, pc) in p.pieces.iter().enumerate() {
            let buf = l.total + pc.off;
            let gather = pc.target == Target::Device && gathers(pc.mem);
            if pc.target == Target::Device
                && (gather || unit.is_some())
                && let Some(t) = l.transfers.last_mut()
                && t.target == Target::Device
                && (t.gather && gather || unit.is_some())
                && t.va.wrapping_add(t.len as u64) == pc.va
                && t.ipa.wrapping_add(t.len as u64) == pc.ipa
                && t.buf + t.len == buf
                && claims(
                    bus,
                    (t.ipa, t.len + pc.len),
                    &mut claimed,
                    &mut unclaimed_from,
                    || device_run_end(plans, i, j),
                )
            {
                t.len += pc.len;
                t.gather = t.gather && gather;
                continue;
            }
            l.transfers.push(Transfer {
                buf,
                va: pc.va,
                ipa: pc.ipa,
                len: pc.len,
                target: pc.target,
                gather,
                limit: ELEMENT_LIMIT,
            });
        }
        l.total += p.size;
    }
    for t in &mut l.transfers {
        if t.target == Target::Device {
            t.limit = match (t.gather, unit) {
                (true, _) => bus_limit(bus, t.ipa),
                (false, Some(u)) => bus_limit(bus, t.ipa).min(u.max(ELEMENT_LIMIT)),
                (false, None) => ELEMENT_LIMIT,
            };
        }
    }
    l
}

/// Whether one device claims the bytes `range` (start, length) extending a
/// transfer that starts at `range.0`. The first time a transfer needs it, one
/// [`MmioBus::contains`] asks for the whole run of contiguous device pieces
/// ahead (`run_end`), remembered in `claimed` (every sub-range of a range one
/// device claims is claimed by it), so that merging the 64 pieces of an `ld1`
/// asks the bus once rather than 63 times; if that fails, each extension is
/// asked on its own.
fn claims<B: MmioBus + ?Sized>(
    bus: &B,
    (start, len): (u64, usize),
    claimed: &mut Option<(u64, u64)>,
    unclaimed_from: &mut Option<u64>,
    run_end: impl FnOnce() -> Option<u64>,
) -> bool {
    let Some(end) = start.checked_add(len as u64) else {
        return false;
    };
    if claimed.is_some_and(|(lo, hi)| lo <= start && end <= hi) {
        return true;
    }
    if *unclaimed_from != Some(start)
        && let Some(run_end) = run_end()
        && run_end > end
    {
        if let Ok(run) = usize::try_from(run_end - start)
            && bus.contains(start, run)
        {
            *claimed = Some((start, run_end));
            return true;
        }
        *unclaimed_from = Some(start);
    }
    bus.contains(start, len)
}

/// The end IPA of the run of device pieces with contiguous IPAs that starts at
/// piece `j` of element `i` (`None` past the end or on overflow).
fn device_run_end(plans: &[ElemPlan], i: usize, j: usize) -> Option<u64> {
    let mut end: Option<u64> = None;
    let first = plans.get(i)?.pieces.get(j..)?.iter();
    let rest = plans.get(i + 1..)?.iter().flat_map(|p| p.pieces.iter());
    for pc in first.chain(rest) {
        if pc.target != Target::Device || end.is_some_and(|e| e != pc.ipa) {
            break;
        }
        end = Some(pc.ipa.checked_add(pc.len as u64)?);
    }
    end
}

/// Read every transfer of `l` into `buf`.
fn read_transfers<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    l: &Layout,
    buf: &mut [u8],
) -> Result<(), EmulateError> {
    for t in &l.transfers {
        let Some(dst) = buf.get_mut(t.buf..t.buf + t.len) else {
            continue;
        };
        match t.target {
            Target::Ram => ram.read(t.ipa, dst)?,
            Target::Device => {
                let mut o = 0usize;
                for (a, s) in bus_chunks(t.ipa, t.len, t.limit) {
                    if let Some(d) = dst.get_mut(o..o + s) {
                        bus.read(a, d)?;
                    }
                    o += s;
                }
            }
        }
    }
    Ok(())
}

/// Write every transfer of `l` from `buf`.
fn write_transfers<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    l: &Layout,
    buf: &[u8],
) -> Result<(), EmulateError> {
    for t in &l.transfers {
        let Some(src) = buf.get(t.buf..t.buf + t.len) else {
            continue;
        };
        match t.target {
            Target::Ram => ram.write(t.ipa, src)?,
            Target::Device => {
                let mut o = 0usize;
                for (a, s) in bus_chunks(t.ipa, t.len, t.limit) {
                    if let Some(d) = src.get(o..o + s) {
                        bus.write(a, d)?;
                    }
                    o += s;
                }
            }
        }
    }
    Ok(())
}

/// The elements' values from the buffer (each in the guest's byte order).
fn unpack(
    plans: &[ElemPlan],
    l: &Layout,
    buf: &[u8],
    big: bool,
) -> Result<Vec<u128>, EmulateError> {
    let mut out = Vec::with_capacity(plans.len());
    for (p, &off) in plans.iter().zip(&l.offsets) {
        let mut b = [0u8; 16];
        let (Some(dst), Some(src)) = (b.get_mut(..p.size), buf.get(off..off + p.size)) else {
            return Err(EmulateError::Mem(MemError::NotRam {
                ipa: 0,
                len: p.size,
            }));
        };
        dst.copy_from_slice(src);
        if big {
            dst.reverse();
        }
        out.push(u128::from_le_bytes(b));
    }
    Ok(out)
}

/// The buffer holding `values` (each in the guest's byte order).
fn pack(plans: &[ElemPlan], l: &Layout, values: &[u128], big: bool) -> Vec<u8> {
    let mut buf = vec![0u8; l.total];
    for ((p, &off), v) in plans.iter().zip(&l.offsets).zip(values) {
        let all = v.to_le_bytes();
        let n = p.size.min(16);
        if let Some(dst) = buf.get_mut(off..off + n) {
            dst.copy_from_slice(&all[..n]);
            if big {
                dst.reverse();
            }
        }
    }
    buf
}

/// Zero a DC ZVA block.
pub(crate) fn zero_block<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    p: &ElemPlan,
) -> Result<(), EmulateError> {
    let plans = core::slice::from_ref(p);
    let l = layout(bus, plans, None);
    write_transfers(ram, bus, &l, &vec![0u8; l.total])
}

/// `op(old, s)` at `size` bytes (pseudocode `MemAtomicOp`), zero-extended.
pub(crate) fn atomic_op(op: AtomicOp, old: u64, s: u64, size: usize) -> u64 {
    let m = mask(size);
    let (o, v) = (old & m, s & m);
    let (so, sv) = (sext(o, size) as i64, sext(v, size) as i64);
    let r = match op {
        AtomicOp::Add => o.wrapping_add(v),
        AtomicOp::Clr => o & !v,
        AtomicOp::Eor => o ^ v,
        AtomicOp::Set => o | v,
        AtomicOp::Smax => so.max(sv) as u64,
        AtomicOp::Smin => so.min(sv) as u64,
        AtomicOp::Umax => o.max(v),
        AtomicOp::Umin => o.min(v),
        AtomicOp::Swp => v,
    };
    r & m
}

/// Load every element: the transfers in order, then each element's value.
pub(crate) fn load_all<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    plans: &[ElemPlan],
    big: bool,
    unit: Option<usize>,
) -> Result<Vec<u128>, EmulateError> {
    let l = layout(bus, plans, unit);
    let mut buf = vec![0u8; l.total];
    read_transfers(ram, bus, &l, &mut buf)?;
    unpack(plans, &l, &buf, big)
}

/// Store every element (`src`, one value per element).
pub(crate) fn store_all<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    plans: &[ElemPlan],
    src: &[u128],
    big: bool,
    unit: Option<usize>,
) -> Result<(), EmulateError> {
    let l = layout(bus, plans, unit);
    write_transfers(ram, bus, &l, &pack(plans, &l, src, big))
}

/// An atomic read-modify-write of one element: returns the old value.
pub(crate) fn atomic<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    p: &ElemPlan,
    op: AtomicOp,
    rs: u64,
    big: bool,
) -> Result<u64, EmulateError> {
    let plans = core::slice::from_ref(p);
    let old = load_all(ram, bus, plans, big, None)?
        .first()
        .copied()
        .unwrap_or(0) as u64;
    let new = atomic_op(op, old, rs, p.size);
    store_all(ram, bus, plans, &[u128::from(new)], big, None)?;
    Ok(old)
}

/// Compare-and-swap: read every element, write `src` only if all equal the
/// compare values; returns the old values.
pub(crate) fn compare_and_swap<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    plans: &[ElemPlan],
    compare: &[u64],
    src: &[u128],
    big: bool,
    unit: Option<usize>,
) -> Result<Vec<u128>, EmulateError> {
    let olds: Vec<u64> = load_all(ram, bus, plans, big, unit)?
        .iter()
        .map(|&o| o as u64)
        .collect();
    let equal = olds
        .iter()
        .zip(compare)
        .zip(plans)
        .all(|((o, s), p)| o & mask(p.size) == s & mask(p.size));
    if equal {
        store_all(ram, bus, plans, src, big, unit)?;
    }
    Ok(olds.iter().map(|&o| u128::from(o)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_chunks_are_natural_and_bounded() {
        let c: Vec<_> = bus_chunks(0x1001, 3, 8).collect();
        assert_eq!(c, alloc::vec![(0x1001, 1), (0x1002, 2)]);
        let c: Vec<_> = bus_chunks(0x1000, 16, 8).collect();
        assert_eq!(c, alloc::vec![(0x1000, 8), (0x1008, 8)]);
        let c: Vec<_> = bus_chunks(0x1ffe, 7, 8).collect();
        assert_eq!(c, alloc::vec![(0x1ffe, 2), (0x2000, 4), (0x2004, 1)]);
        assert_eq!(bus_chunks(0, 0, 8).count(), 0);
        let c: Vec<_> = bus_chunks(0x1010, 64, 64).collect();
        assert_eq!(c, alloc::vec![(0x1010, 16), (0x1020, 32), (0x1040, 16)]);
        let c: Vec<_> = bus_chunks(0x1000, 64, 64).collect();
        assert_eq!(c, alloc::vec![(0x1000, 64)]);
        let c: Vec<_> = bus_chunks(0x1ff8, 16, 4096).collect();
        assert_eq!(c, alloc::vec![(0x1ff8, 8), (0x2000, 8)]);
    }

    #[test]
    fn atomic_ops_at_size() {
        assert_eq!(atomic_op(AtomicOp::Add, 0xff, 1, 1), 0);
        assert_eq!(atomic_op(AtomicOp::Smax, 0x80, 0x7f, 1), 0x7f);
        assert_eq!(atomic_op(AtomicOp::Smin, 0x80, 0x7f, 1), 0x80);
        assert_eq!(atomic_op(AtomicOp::Umax, 0x80, 0x7f, 1), 0x80);
        assert_eq!(atomic_op(AtomicOp::Clr, 0xf0f0, 0xff00, 2), 0x00f0);
        assert_eq!(atomic_op(AtomicOp::Swp, 1, u64::MAX, 4), 0xffff_ffff);
    }

    #[test]
    fn sign_extension() {
        assert_eq!(sext(0x80, 1), 0xffff_ffff_ffff_ff80);
        assert_eq!(sext(0x7fff, 2), 0x7fff);
        assert_eq!(sext(0x8000_0000, 4), 0xffff_ffff_8000_0000);
    }
}
