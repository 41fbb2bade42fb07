// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Performing planned element accesses on guest RAM and the MMIO bus.
//!
//! A RAM piece is one [`GuestRam`] access. A device piece becomes naturally
//! aligned bus accesses of at most 8 bytes at increasing addresses (the largest
//! of 8/4/2/1 bytes that is aligned and fits). Each element is byte-reversed at
//! its own size for a big-endian guest; bus data is in address order.

use alloc::vec::Vec;

use crate::decode::AtomicOp;
use crate::mem::{GuestRam, MemError, MmioBus};

use super::EmulateError;
use super::plan::{ElemPlan, Target, sext};

/// Mask of the low `bytes` bytes.
pub(crate) fn mask(bytes: usize) -> u64 {
    if bytes >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * bytes)) - 1
    }
}

/// Split a bus range into naturally aligned accesses of at most 8 bytes.
pub(crate) fn bus_chunks(ipa: u64, len: usize) -> impl Iterator<Item = (u64, usize)> {
    let mut at = ipa;
    let mut left = len;
    core::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let mut s = 8usize;
        while s > 1 && (s > left || !at.is_multiple_of(s as u64)) {
            s /= 2;
        }
        let r = (at, s);
        at = at.wrapping_add(s as u64);
        left -= s;
        Some(r)
    })
}

/// Read one element: pieces in order, then the element's byte order.
pub(crate) fn load_elem<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    p: &ElemPlan,
    big: bool,
) -> Result<u128, EmulateError> {
    let mut buf = [0u8; 16];
    let bytes = buf
        .get_mut(..p.size)
        .ok_or(EmulateError::Mem(MemError::NotRam {
            ipa: 0,
            len: p.size,
        }))?;
    for pc in &p.pieces {
        let Some(dst) = bytes.get_mut(pc.off..pc.off + pc.len) else {
            continue;
        };
        match pc.target {
            Target::Ram => ram.read(pc.ipa, dst)?,
            Target::Device => {
                let mut o = 0usize;
                for (a, s) in bus_chunks(pc.ipa, pc.len) {
                    if let Some(d) = dst.get_mut(o..o + s) {
                        bus.read(a, d)?;
                    }
                    o += s;
                }
            }
        }
    }
    if big {
        bytes.reverse();
    }
    Ok(u128::from_le_bytes(buf))
}

/// Write one element.
pub(crate) fn store_elem<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    p: &ElemPlan,
    value: u128,
    big: bool,
) -> Result<(), EmulateError> {
    let all = value.to_le_bytes();
    let mut buf = [0u8; 16];
    let n = p.size.min(16);
    buf[..n].copy_from_slice(&all[..n]);
    if big {
        buf[..n].reverse();
    }
    for pc in &p.pieces {
        let Some(src) = buf.get(pc.off..pc.off + pc.len) else {
            continue;
        };
        match pc.target {
            Target::Ram => ram.write(pc.ipa, src)?,
            Target::Device => {
                let mut o = 0usize;
                for (a, s) in bus_chunks(pc.ipa, pc.len) {
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

/// Zero a DC ZVA block.
pub(crate) fn zero_block<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    p: &ElemPlan,
) -> Result<(), EmulateError> {
    const ZEROS: [u8; 8] = [0; 8];
    for pc in &p.pieces {
        match pc.target {
            Target::Ram => ram.write(pc.ipa, &alloc::vec![0u8; pc.len])?,
            Target::Device => {
                for (a, s) in bus_chunks(pc.ipa, pc.len) {
                    bus.write(a, &ZEROS[..s])?;
                }
            }
        }
    }
    Ok(())
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

/// Load every element in order.
pub(crate) fn load_all<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    plans: &[ElemPlan],
    big: bool,
) -> Result<Vec<u128>, EmulateError> {
    let mut loaded = Vec::with_capacity(plans.len());
    for p in plans {
        loaded.push(load_elem(ram, bus, p, big)?);
    }
    Ok(loaded)
}

/// Store every element in order.
pub(crate) fn store_all<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    ram: &M,
    bus: &mut B,
    plans: &[ElemPlan],
    src: &[u128],
    big: bool,
) -> Result<(), EmulateError> {
    for (p, v) in plans.iter().zip(src) {
        store_elem(ram, bus, p, *v, big)?;
    }
    Ok(())
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
    let old = load_elem(ram, bus, p, big)? as u64;
    let new = atomic_op(op, old, rs, p.size);
    store_elem(ram, bus, p, u128::from(new), big)?;
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
) -> Result<Vec<u128>, EmulateError> {
    let mut olds = Vec::with_capacity(plans.len());
    for p in plans {
        olds.push(load_elem(ram, bus, p, big)? as u64);
    }
    let equal = olds
        .iter()
        .zip(compare)
        .zip(plans)
        .all(|((o, s), p)| o & mask(p.size) == s & mask(p.size));
    if equal {
        store_all(ram, bus, plans, src, big)?;
    }
    Ok(olds.iter().map(|&o| u128::from(o)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_chunks_are_natural_and_bounded() {
        let c: Vec<_> = bus_chunks(0x1001, 3).collect();
        assert_eq!(c, alloc::vec![(0x1001, 1), (0x1002, 2)]);
        let c: Vec<_> = bus_chunks(0x1000, 16).collect();
        assert_eq!(c, alloc::vec![(0x1000, 8), (0x1008, 8)]);
        let c: Vec<_> = bus_chunks(0x1ffe, 7).collect();
        assert_eq!(c, alloc::vec![(0x1ffe, 2), (0x2000, 4), (0x2004, 1)]);
        assert_eq!(bus_chunks(0, 0).count(), 0);
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
