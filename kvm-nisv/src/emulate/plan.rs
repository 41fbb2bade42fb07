// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Planning an access: address, alignment, and the translation of every piece.
//!
//! [`plan`] is pure: it reads guest memory only to walk the stage-1 tables
//! ([`GuestRam::read`]) and asks [`GuestRam::is_ram`] and [`MmioBus::contains`]
//! where each byte goes. It writes nothing (hardware-managed descriptor updates
//! are returned in the plan for the caller to apply with the access). The
//! emulator plans every instruction before any side effect; a VMM can use the
//! planner on its own, for instance to check an access it completes itself
//! (docs/emulator.md, "Steps").
//!
//! Per element, in architectural order: SCTLR_EL1.A alignment; then each piece
//! (the element cut where its translation ends) gets its translation for its
//! VA with the access's EL and kind; a translation, address size or access
//! flag fault; an alignment fault for an unaligned element (or DC ZVA) on
//! Device memory; a permission fault; then whether each byte is RAM or a
//! device. The first problem found is kept, but every piece is translated so
//! that [`Plan::touches_page`] sees every IPA the hardware may have faulted on.
//!
//! **One walk per page.** A successful walk covers the whole page or block its
//! final descriptor maps ([`Translation::size`]), and within one instruction
//! every element has the same access kind and EL, so the planner walks once
//! per page/block and reuses that translation (output address, memory type,
//! deferred permission fault) for every later byte that falls in it, as a TLB
//! would: `ld1 {v0.16b-v3.16b}` (64 one-byte elements) walks once, or twice
//! when it crosses a page. Every check above is still made per element and
//! per piece; the hardware-managed descriptor update of a walk is recorded
//! once. A walk that faults is not reused (there is no page to reuse it for).

use alloc::vec::Vec;

use crate::decode::{Extend, Insn, Offset, Op};
use crate::mem::{GuestRam, MmioBus};
use crate::stage1::{
    self, AccessKind, DescUpdate, DeviceKind, El, FaultKind, MemType, SCTLR_A, Stage1Fault,
    Stage1Regs, Translation,
};

use super::GuestFault;

/// SCTLR_EL1.nAA (FEAT_LSE2): no alignment fault for unaligned
/// load-acquire/store-release within 16 bytes.
pub(crate) const SCTLR_NAA: u64 = 1 << 6;

/// Where a piece of an access goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// Guest RAM ([`GuestRam`]).
    Ram,
    /// A device on the MMIO bus ([`MmioBus`]).
    Device,
}

/// One piece of an element: a byte range with a single translation and a
/// single target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Piece {
    /// Offset of the piece within its element.
    pub off: usize,
    /// Length in bytes.
    pub len: usize,
    /// Virtual address of the piece's first byte.
    pub va: u64,
    /// Its IPA.
    pub ipa: u64,
    /// RAM or device.
    pub target: Target,
    /// The memory type of the piece's translation: whether the bus may see
    /// the piece gathered with its neighbours (Normal and Device-GRE) or only
    /// as element-sized accesses (docs/emulator.md, "Gathering").
    pub mem: MemType,
}

impl Piece {
    /// A placeholder for unused inline slots of [`Pieces`].
    const EMPTY: Piece = Piece {
        off: 0,
        len: 0,
        va: 0,
        ipa: 0,
        target: Target::Ram,
        mem: MemType::Device(DeviceKind::NGnRnE),
    };
}

/// The pieces of one element: a list that holds up to two pieces (one page,
/// or the two sides of a page boundary: every element but one that mixes RAM
/// and device bytes inside a page) without a heap allocation. It dereferences
/// to `[Piece]`.
#[derive(Clone, Debug)]
pub struct Pieces {
    inline: [Piece; 2],
    len: u8,
    /// All the pieces once there are more than two.
    spill: Vec<Piece>,
}

impl Pieces {
    /// An empty list.
    pub const fn new() -> Self {
        Pieces {
            inline: [Piece::EMPTY; 2],
            len: 0,
            spill: Vec::new(),
        }
    }

    /// Append a piece.
    pub fn push(&mut self, p: Piece) {
        if self.spill.is_empty() {
            if let Some(slot) = self.inline.get_mut(usize::from(self.len)) {
                *slot = p;
                self.len += 1;
                return;
            }
            self.spill.extend_from_slice(&self.inline);
        }
        self.spill.push(p);
    }
}

impl Default for Pieces {
    fn default() -> Self {
        Self::new()
    }
}

impl core::ops::Deref for Pieces {
    type Target = [Piece];
    fn deref(&self) -> &[Piece] {
        if self.spill.is_empty() {
            self.inline.get(..usize::from(self.len)).unwrap_or(&[])
        } else {
            &self.spill
        }
    }
}

impl PartialEq for Pieces {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Pieces {}

impl<'a> IntoIterator for &'a Pieces {
    type Item = &'a Piece;
    type IntoIter = core::slice::Iter<'a, Piece>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// All the pieces of one element (or of the DC ZVA block).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ElemPlan {
    /// Virtual address of the element.
    pub va: u64,
    /// Element size in bytes.
    pub size: usize,
    /// The pieces, at increasing offsets. Complete (covering `size` bytes)
    /// when the plan has no problem.
    pub pieces: Pieces,
}

/// The first problem the planner found, in architectural order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Problem {
    /// A fault the guest takes (translation, permission, alignment...).
    Fault(GuestFault),
    /// A byte that is neither RAM nor claimed by a device.
    NoDevice {
        /// Its virtual address.
        va: u64,
        /// Its IPA.
        ipa: u64,
    },
}

/// What the planner needs besides the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AccessSpec {
    /// The address: base + offset ([`address`]); for DC ZVA the address in Xt.
    pub addr: u64,
    /// The exception level the access is made from (PSTATE.EL; selects the EC
    /// of a fault).
    pub from_el: El,
    /// The exception level whose permissions apply (EL0 for LDTR/STTR at EL1
    /// without PSTATE.UAO).
    pub perm_el: El,
    /// DC ZVA block size in bytes (4 << DCZID_EL0.BS); ignored for other
    /// instructions.
    pub zva_block: u64,
    /// Whether the CPU implements FEAT_LSE2 (relaxed alignment of atomics and
    /// load-acquire/store-release with SCTLR_EL1.nAA; see docs/emulator.md).
    pub lse2: bool,
}

impl AccessSpec {
    /// An access at `addr` from `el`, checked with `el`'s permissions.
    pub fn new(addr: u64, el: El) -> Self {
        AccessSpec {
            addr,
            from_el: el,
            perm_el: el,
            zva_block: 64,
            lse2: false,
        }
    }

    /// Check permissions as `el` (LDTR/STTR).
    pub fn with_perm_el(mut self, el: El) -> Self {
        self.perm_el = el;
        self
    }

    /// The DC ZVA block size in bytes.
    pub fn with_zva_block(mut self, bytes: u64) -> Self {
        self.zva_block = bytes;
        self
    }

    /// Whether the CPU implements FEAT_LSE2.
    pub fn with_lse2(mut self, lse2: bool) -> Self {
        self.lse2 = lse2;
        self
    }
}

/// The result of planning an access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    kind: AccessKind,
    elements: Vec<ElemPlan>,
    updates: Vec<DescUpdate>,
    ipas: Vec<(u64, usize)>,
    problem: Option<Problem>,
}

impl Plan {
    /// Read (loads, load-exclusives) or write (everything else, including
    /// atomics, CAS and DC ZVA, which need write permission).
    pub fn kind(&self) -> AccessKind {
        self.kind
    }

    /// The elements in architectural order (one block for DC ZVA).
    pub fn elements(&self) -> &[ElemPlan] {
        &self.elements
    }

    /// Hardware-managed descriptor updates (FEAT_HAFDBS) to apply with the access.
    pub fn updates(&self) -> &[DescUpdate] {
        &self.updates
    }

    /// The first problem, if any: then nothing may be accessed.
    pub fn problem(&self) -> Option<Problem> {
        self.problem
    }

    /// Whether some translated byte lies in the 4 KiB page of `ipa` (the check
    /// against KVM's `fault_ipa`).
    pub fn touches_page(&self, ipa: u64) -> bool {
        let page = ipa & !0xfff;
        self.ipas.iter().any(|&(a, len)| {
            let end = a.saturating_add(len as u64);
            a < page.saturating_add(0x1000) && end > page
        })
    }
}

/// Sign-extend the low `bytes` bytes of `v`.
pub(crate) fn sext(v: u64, bytes: usize) -> u64 {
    let sh = 64 - 8 * bytes.clamp(1, 8) as u32;
    (((v << sh) as i64) >> sh) as u64
}

/// The address `insn` accesses, from the base register's value and the index
/// register's value (ignored for immediate offsets): base + offset, the offset
/// being zero for post-indexed forms. Wraps like the hardware.
pub fn address(insn: &Insn, base: u64, index: u64) -> u64 {
    let off = match insn.offset {
        Offset::Imm(i) => i as u64,
        Offset::Reg { extend, shift, .. } => {
            let e = match extend {
                Extend::Uxtw => index & 0xffff_ffff,
                Extend::Sxtw => sext(index, 4),
                Extend::Lsl | Extend::Sxtx => index,
            };
            e << (shift & 63)
        }
    };
    base.wrapping_add(off)
}

/// The access kind whose permissions `op` needs.
pub fn access_kind(op: Op) -> AccessKind {
    match op {
        Op::Load | Op::LoadExclusive => AccessKind::Read,
        _ => AccessKind::Write,
    }
}

/// Plan `insn`'s access at `spec.addr`: check the instruction's own alignment
/// requirement, then translate and check every piece of every element.
///
/// `Err` is an alignment fault required by the instruction whatever the memory
/// type (exclusives, atomics, CAS, acquire/release: pseudocode
/// `CheckAlignment`), found before any translation. Otherwise the [`Plan`]
/// holds every piece and the first [`Problem`], if any.
pub fn plan<M: GuestRam + ?Sized, B: MmioBus + ?Sized>(
    s1: &Stage1Regs,
    insn: &Insn,
    spec: &AccessSpec,
    ram: &M,
    bus: &B,
) -> Result<Plan, GuestFault> {
    let addr = spec.addr;
    let kind = access_kind(insn.op);
    let zva = insn.op == Op::ZeroBlock;
    let fault = |va: u64, fault: Stage1Fault| GuestFault {
        va: if zva { addr } else { va },
        fault,
        write: kind == AccessKind::Write,
        from_el: spec.from_el,
    };
    let align_fault = Stage1Fault {
        kind: FaultKind::Alignment,
        level: 0,
    };

    // The list of (va, size) accesses to plan.
    let mut accesses: Vec<(u64, usize)> = Vec::with_capacity(insn.elements.len().max(1));
    if zva {
        let block = spec.zva_block.max(1);
        accesses.push((addr & !(block - 1), usize::try_from(block).unwrap_or(0)));
    } else {
        if !required_alignment_ok(s1, insn, spec) {
            return Err(fault(addr, align_fault));
        }
        for e in &insn.elements {
            accesses.push((addr.wrapping_add(u64::from(e.offset)), usize::from(e.size)));
        }
    }

    let strict_align = s1.sctlr & SCTLR_A != 0 && !zva;
    let mut p = Plan {
        kind,
        elements: Vec::with_capacity(accesses.len()),
        updates: Vec::new(),
        ipas: Vec::with_capacity(2),
        problem: None,
    };
    // The end of the instruction's bytes (the highest element end): how far a
    // span of one translation is checked at once below.
    let extent_end = accesses
        .iter()
        .map(|&(va, size)| va.wrapping_add(size as u64))
        .max_by_key(|&end| end.wrapping_sub(addr))
        .unwrap_or(addr);
    let whole = zva || whole_aligned(insn, addr);
    // Translations made for this instruction (one access kind, one EL).
    let mut walks = Walks::default();
    // Runs of one translation's bytes by target (reused: no allocation per element).
    let mut runs: Vec<(usize, usize, Target)> = Vec::new();
    // IPA bytes [lo, hi) already seen to be wholly one target; and the last
    // span for which that check failed (mixed targets: checked per piece).
    let mut checked: Option<(u64, u64, Target)> = None;
    let mut mixed: Option<(u64, u64)> = None;
    for &(va, size) in &accesses {
        let aligned = va % (size.max(1) as u64) == 0 && whole;
        if strict_align && va % (size.max(1) as u64) != 0 && p.problem.is_none() {
            p.problem = Some(Problem::Fault(fault(va, align_fault)));
        }
        let mut elem = ElemPlan {
            va,
            size,
            pieces: Pieces::new(),
        };
        let mut off = 0usize;
        while off < size {
            let pva = va.wrapping_add(off as u64);
            let (t, perm): (Translation, Option<Stage1Fault>) = match walks.lookup(pva) {
                Some(hit) => hit,
                None => match stage1::translate_deferred(s1, pva, kind, spec.perm_el, ram) {
                    Ok((t, perm)) => {
                        walks.insert(pva, t, perm);
                        if let Some(u) = t.update {
                            p.updates.push(u);
                        }
                        (t, perm)
                    }
                    Err(f) => {
                        if p.problem.is_none() {
                            p.problem = Some(Problem::Fault(fault(pva, f)));
                        }
                        break;
                    }
                },
            };
            // Bytes left in this translation's page/block.
            let in_map = t.size - (pva & (t.size - 1));
            let len = (size - off).min(usize::try_from(in_map).unwrap_or(usize::MAX));
            match p.ipas.last_mut() {
                Some((a, l)) if a.checked_add(*l as u64) == Some(t.ipa) => *l += len,
                _ => p.ipas.push((t.ipa, len)),
            }
            if p.problem.is_none() {
                if t.mem.is_device() && (!aligned || zva) {
                    p.problem = Some(Problem::Fault(fault(pva, align_fault)));
                } else if let Some(f) = perm {
                    p.problem = Some(Problem::Fault(fault(pva, f)));
                }
            }
            // Target of each byte: one RAM or device piece normally; a
            // translation whose bytes mix RAM and devices (a DC ZVA block, a
            // memslot ending inside a page) is cut into runs.
            // Stores (and read-modify-writes) need RAM the guest may write:
            // read-only RAM is the bus's, like a `KVM_MEM_READONLY` memslot.
            let ram_ok = |a: u64, l: usize| {
                if kind == AccessKind::Write {
                    ram.is_writable(a, l)
                } else {
                    ram.is_ram(a, l)
                }
            };
            runs.clear();
            let end = t.ipa.checked_add(len as u64);
            let within = |r: (u64, u64)| r.0 <= t.ipa && end.is_some_and(|e| e <= r.1);
            // The rest of the instruction's bytes in this translation: one
            // `is_ram`/`contains` for all of them (a range wholly RAM or wholly
            // claimed by one device has every sub-range so), instead of one
            // per element: `ld1 {v0.16b-v3.16b}` asks once, not 64 times.
            let span = usize::try_from(extent_end.wrapping_sub(pva))
                .unwrap_or(usize::MAX)
                .min(usize::try_from(in_map).unwrap_or(usize::MAX))
                .max(len);
            let span_end = t.ipa.checked_add(span as u64);
            if checked.is_none_or(|(lo, hi, _)| !within((lo, hi)))
                && span > len
                && let Some(span_end) = span_end
                && mixed.is_none_or(|r| !within(r))
            {
                checked = if ram_ok(t.ipa, span) {
                    Some((t.ipa, span_end, Target::Ram))
                } else if bus.contains(t.ipa, span) {
                    Some((t.ipa, span_end, Target::Device))
                } else {
                    mixed = Some((t.ipa, span_end));
                    None
                };
            }
            if let Some((lo, hi, target)) = checked
                && within((lo, hi))
            {
                runs.push((0, len, target));
            } else if ram_ok(t.ipa, len) {
                runs.push((0, len, Target::Ram));
            } else if bus.contains(t.ipa, len) {
                runs.push((0, len, Target::Device));
            } else {
                for i in 0..len {
                    let a = t.ipa.wrapping_add(i as u64);
                    let target = if ram_ok(a, 1) {
                        Target::Ram
                    } else if bus.contains(a, 1) {
                        Target::Device
                    } else {
                        if p.problem.is_none() {
                            p.problem = Some(Problem::NoDevice {
                                va: pva.wrapping_add(i as u64),
                                ipa: a,
                            });
                        }
                        break;
                    };
                    match runs.last_mut() {
                        Some(r) if r.2 == target => r.1 += 1,
                        _ => runs.push((i, 1, target)),
                    }
                }
            }
            for &(roff, rlen, target) in &runs {
                elem.pieces.push(Piece {
                    off: off + roff,
                    len: rlen,
                    va: pva.wrapping_add(roff as u64),
                    ipa: t.ipa.wrapping_add(roff as u64),
                    target,
                    mem: t.mem,
                });
            }
            off += len;
        }
        p.elements.push(elem);
    }
    Ok(p)
}

/// The successful walks of one plan: the translations of the pages/blocks
/// the instruction touched so far, for one access kind and one EL.
#[derive(Default)]
struct Walks {
    /// (VA the walk was made for, its translation, its deferred permission fault).
    done: Vec<(u64, Translation, Option<Stage1Fault>)>,
}

impl Walks {
    /// The translation of `va` if a walk already covered its page/block: the
    /// same descriptor with `va`'s offset in it. The descriptor update is not
    /// repeated (it was recorded with the walk).
    #[inline]
    fn lookup(&self, va: u64) -> Option<(Translation, Option<Stage1Fault>)> {
        // Latest first: consecutive elements are usually in the last page.
        self.done.iter().rev().find_map(|&(wva, t, perm)| {
            // `size` is a power of two (a page or block); VAs in the same
            // naturally aligned region, tag byte included, share the walk.
            let mask = !(t.size - 1);
            (va & mask == wva & mask).then(|| {
                let hit = Translation {
                    ipa: t.ipa.wrapping_add(va.wrapping_sub(wva)),
                    update: None,
                    ..t
                };
                (hit, perm)
            })
        })
    }

    /// Remember a walk made for `va`.
    fn insert(&mut self, va: u64, t: Translation, perm: Option<Stage1Fault>) {
        if t.size.is_power_of_two() {
            self.done.push((va, t, perm));
        }
    }
}

/// The instruction's own alignment requirement (`Insn::align`: the whole
/// access size of exclusives, atomics, CAS and the acquire/release forms) as
/// the Arm ARM's `AArch64.UnalignedAccessFaults` has it (DDI 0487K.a): an
/// unaligned access of
///
/// - an exclusive (LDXR/STXR/LDXP/STXP and the acquire/release forms), an
///   atomic (LD<op>/ST<op>/SWP) or a CAS/CASP faults unless the CPU has
///   FEAT_LSE2 and every byte lies in one aligned 16-byte quantity
///   (`AllInAlignedQuantity(address, size, 16)`);
/// - a load-acquire/store-release (LDAR/STLR, LDAPR, LDAPUR/STLUR,
///   LDLAR/STLLR) faults without FEAT_LSE2; with it, only when SCTLR_EL1.nAA = 0
///   and the bytes are not all in one aligned 16-byte quantity.
///
/// SCTLR_EL1.A (checked per element by the caller) and Device memory (checked
/// per piece) fault whatever this says.
fn required_alignment_ok(s1: &Stage1Regs, insn: &Insn, spec: &AccessSpec) -> bool {
    let addr = spec.addr;
    let align = u64::from(insn.align.max(1));
    if addr.is_multiple_of(align) {
        return true;
    }
    if !spec.lse2 {
        return false;
    }
    let in_quantity = (addr & 15) + insn.elements.total_bytes() <= 16;
    match insn.op {
        Op::LoadExclusive
        | Op::StoreExclusive { .. }
        | Op::Atomic { .. }
        | Op::CompareAndSwap { .. } => in_quantity,
        _ => s1.sctlr & SCTLR_NAA != 0 || in_quantity,
    }
}

/// Whether the memory type of `insn`'s access at `addr` can change the
/// outcome, so that the emulator has to read MAIR_EL1 (with the MMU on):
///
/// * DC ZVA (an Alignment fault on Device memory whatever the address);
/// * an element that is not aligned to its size, or an instruction whose own
///   alignment requirement the address misses (the Device alignment fault,
///   FEAT_LSE2's rules);
/// * more than one element: whether the type permits gathering decides how
///   the bus sees them (docs/emulator.md, "Gathering");
/// * one element wider than 8 bytes, when `wide_bus` (the device takes
///   accesses of more than 8 bytes, [`MmioBus::max_access_size`]): gathered
///   into one access or split into 8-byte ones.
///
/// Otherwise (one aligned element that the bus sees as the same accesses on
/// every type) the answer is `false`. It only decides which registers are
/// read: MAIR_EL1 left unread reads as 0, Device-nGnRnE, the strictest type,
/// for which the outcome is then the same.
pub fn needs_mem_type(insn: &Insn, addr: u64, wide_bus: bool) -> bool {
    if insn.op == Op::ZeroBlock || insn.elements.len() != 1 || !whole_aligned(insn, addr) {
        return true;
    }
    insn.elements.as_slice().iter().any(|e| {
        let size = u64::from(e.size.max(1));
        (e.size > 8 && wide_bus) || !addr.wrapping_add(u64::from(e.offset)).is_multiple_of(size)
    })
}

/// Whether the whole access is aligned to the instruction's own alignment
/// (`Insn::align`): with FEAT_LSE2 an unaligned exclusive, atomic or
/// acquire/release access may pass [`required_alignment_ok`], and is then
/// unaligned for the Device memory check (pseudocode `IsAligned(address,
/// size)` over the whole access).
fn whole_aligned(insn: &Insn, addr: u64) -> bool {
    addr.is_multiple_of(u64::from(insn.align.max(1)))
}
