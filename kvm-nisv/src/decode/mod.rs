// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The AArch64 load/store decoder.
//!
//! [`decode`] turns one A64 instruction word into an [`Insn`]: the list of memory
//! accesses it makes and what happens to the registers. It covers every
//! load/store that can take a stage-2 data abort without a valid instruction
//! syndrome, plus the single-register forms (see `docs/decoder.md` for the list,
//! the treatment of CONSTRAINED UNPREDICTABLE encodings and the differential
//! testing). Everything else is [`Unsupported`].
//!
//! The decoder follows the A64 encoding index of the Arm ARM (DDI 0487, section
//! C4.1 "A64 instruction set encoding", group "Loads and Stores") and the decode
//! pseudocode of each instruction (C6.2). The instruction word is hostile input:
//! every field is extracted with masks, every table lookup is a `match`, and the
//! element list has a fixed capacity; no input panics or allocates.

mod display;
mod types;

pub use types::*;

/// Bits `hi..=lo` of `w` (`hi - lo < 31`).
#[inline]
const fn bits(w: u32, hi: u32, lo: u32) -> u32 {
    (w >> lo) & ((1u32 << (hi - lo + 1)) - 1)
}

/// Bit `n` of `w`.
#[inline]
const fn bit(w: u32, n: u32) -> bool {
    (w >> n) & 1 == 1
}

/// The 5-bit register field starting at bit `lo`.
#[inline]
const fn reg(w: u32, lo: u32) -> u8 {
    // The mask keeps the value below 32, so the cast cannot truncate.
    bits(w, lo + 4, lo) as u8
}

/// Sign-extend the low `width` bits of `v` (`0 < width < 32`).
#[inline]
const fn sext(v: u32, width: u32) -> i64 {
    let shift = 64 - width;
    ((v as u64) << shift) as i64 >> shift
}

/// `Rn` as a base register: 31 is SP.
#[inline]
const fn base_sp(n: u8) -> Base {
    if n == 31 { Base::Sp } else { Base::X(n) }
}

/// The word of DC ZVA with Rt = 0: `sys #3, c7, c4, #1, Xt` (Arm ARM C5.3 "DC ZVA").
const DC_ZVA: u32 = 0xd50b_7420;

/// Decode one A64 instruction word.
///
/// Returns [`Unsupported`] for everything that is not a load/store this crate
/// emulates, including unallocated encodings and the CONSTRAINED UNPREDICTABLE
/// cases documented in `docs/decoder.md`. Never panics, never allocates.
pub fn decode(word: u32) -> Result<Insn, Unsupported> {
    decode_inner(word).ok_or(Unsupported { word })
}

/// A partially built instruction: the fields every class sets.
struct Builder {
    insn: Insn,
}

impl Builder {
    fn new(word: u32, class: Class, op: Op, base: Base, form: Form) -> Self {
        Builder {
            insn: Insn {
                word,
                class,
                op,
                base,
                offset: Offset::Imm(0),
                writeback: Writeback::None,
                elements: Elements::new(),
                vec_write: VecWrite::None,
                align: 0,
                acquire: false,
                release: false,
                unprivileged: false,
                form,
            },
        }
    }

    /// Append an element; `None` if the list is full (cannot happen for the
    /// encodings decoded here, but the guest controls the word).
    fn push(&mut self, offset: u16, size: u8, reg: RegSlot) -> Option<()> {
        self.insn
            .elements
            .push(Element { offset, size, reg })
            .then_some(())
    }
}

fn decode_inner(word: u32) -> Option<Insn> {
    // Loads and Stores: op0 = x1x0, that is bit 27 = 1 and bit 25 = 0.
    if word & 0x0a00_0000 != 0x0800_0000 {
        if word & !0x1f == DC_ZVA {
            return Some(dc_zva(word));
        }
        return None;
    }
    match bits(word, 29, 24) {
        // Load/store exclusive, ordered, compare and swap (bit 26 = 0).
        0b00_1000 => exclusive(word),
        // Advanced SIMD load/store multiple structures (post-index when bit 23 = 1).
        0b00_1100 => simd_multiple(word),
        // Advanced SIMD load/store single structure (post-index when bit 23 = 1).
        0b00_1101 => simd_single(word),
        // Load register (literal), GPR and SIMD&FP.
        0b01_1000 | 0b01_1100 => literal(word),
        // LDAPR/STLR (unscaled immediate), FEAT_LRCPC2.
        0b01_1001 => rcpc_unscaled(word),
        // Load/store register pair: bits 29:27 = 101, bit 26 = V, bits 24:23 = mode.
        0b10_1000 | 0b10_1001 | 0b10_1100 | 0b10_1101 => pair(word),
        // Load/store register, unsigned immediate.
        0b11_1001 | 0b11_1101 => single(word, Mode::UnsignedImm),
        0b11_1000 | 0b11_1100 => {
            if !bit(word, 21) {
                let mode = match bits(word, 11, 10) {
                    0b00 => Mode::Unscaled,
                    0b01 => Mode::Post,
                    0b10 => Mode::Unprivileged,
                    _ => Mode::Pre,
                };
                single(word, mode)
            } else {
                match bits(word, 11, 10) {
                    0b00 if !bit(word, 26) => atomic(word),
                    0b10 => single(word, Mode::Register),
                    // 0b00 with V = 1: unallocated (or FEAT_LSFE); x1: LDRAA/LDRAB
                    // (FEAT_PAuth), not emulated.
                    _ => None,
                }
            }
        }
        // Everything else in the group: MTE tag instructions, memory copy/set,
        // RCW, LSE128, GCS, LRCPC3, unallocated. Not emulated.
        _ => None,
    }
}

/// DC ZVA, Xt (Arm ARM C5.3.x "DC ZVA"; the address is Xt, 31 meaning XZR).
fn dc_zva(word: u32) -> Insn {
    let t = reg(word, 0);
    Builder::new(word, Class::DcZva, Op::ZeroBlock, Base::X(t), Form::DcZva).insn
}

/// Addressing mode of the single-register loads and stores.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    UnsignedImm,
    Unscaled,
    Post,
    Pre,
    Unprivileged,
    Register,
}

/// What a general-purpose single-register encoding does.
#[derive(Clone, Copy)]
enum GprKind {
    Store,
    Load(LoadExt),
}

/// The size/opc table shared by "Load/store register (immediate/register/
/// unprivileged/unscaled)" with V = 0 and by LDAPUR/STLUR: access bytes and kind,
/// `None` for PRFM/PRFUM (prefetches cannot fault) and the unallocated rows.
fn gpr_size_opc(size: u32, opc: u32) -> Option<(u8, GprKind)> {
    let bytes = 1u8 << size;
    let kind = match (size, opc) {
        (_, 0b00) => GprKind::Store,
        (_, 0b01) => GprKind::Load(LoadExt::Zero),
        // LDRSB/LDRSH (64-bit), LDRSW.
        (0b00..=0b10, 0b10) => GprKind::Load(LoadExt::Sign64),
        // LDRSB/LDRSH (32-bit).
        (0b00 | 0b01, 0b11) => GprKind::Load(LoadExt::Sign32),
        // size = 10, opc = 11: unallocated; size = 11, opc = 10: PRFM/PRFUM;
        // size = 11, opc = 11: unallocated.
        _ => return None,
    };
    Some((bytes, kind))
}

/// The size/opc table of the SIMD&FP single-register forms: bytes and whether it
/// is a load.
fn fp_size_opc(size: u32, opc: u32) -> Option<(u8, bool)> {
    match (size, opc) {
        (0b00, 0b10) => Some((16, false)),
        (0b00, 0b11) => Some((16, true)),
        (_, 0b00) => Some((1 << size, false)),
        (_, 0b01) => Some((1 << size, true)),
        _ => None,
    }
}

/// log2 of an access size in bytes (1..=16).
const fn log2(bytes: u8) -> u8 {
    bytes.trailing_zeros() as u8
}

/// Load/store register: unsigned immediate, unscaled, pre/post-index,
/// unprivileged and register offset, GPR and SIMD&FP (Arm ARM C4.1.x
/// "Load/store register (...)"; decode pseudocode of LDR/STR (immediate),
/// LDR (register), LDUR, LDTR and their B/H/SB/SH/SW and SIMD&FP variants).
fn single(word: u32, mode: Mode) -> Option<Insn> {
    let size = bits(word, 31, 30);
    let v = bit(word, 26);
    let opc = bits(word, 23, 22);
    let n = reg(word, 5);
    let t = reg(word, 0);

    let (bytes, load, slot, class) = if v {
        if mode == Mode::Unprivileged {
            return None;
        }
        let (bytes, load) = fp_size_opc(size, opc)?;
        (bytes, load, RegSlot::Vec { n: t, lane: 0 }, Class::FpSingle)
    } else {
        let (bytes, kind) = gpr_size_opc(size, opc)?;
        let (load, ext) = match kind {
            GprKind::Store => (false, LoadExt::Zero),
            GprKind::Load(ext) => (true, ext),
        };
        (bytes, load, RegSlot::Gpr { n: t, ext }, Class::GprSingle)
    };
    let scale = log2(bytes);

    let mut form = match mode {
        Mode::Unscaled => Form::Unscaled,
        Mode::Unprivileged => Form::Unprivileged,
        _ => Form::Plain,
    };
    let imm9 = sext(bits(word, 20, 12), 9);
    let (offset, writeback) = match mode {
        Mode::UnsignedImm => (
            Offset::Imm(i64::from(bits(word, 21, 10)) << scale),
            Writeback::None,
        ),
        Mode::Unscaled | Mode::Unprivileged => (Offset::Imm(imm9), Writeback::None),
        Mode::Post => (Offset::Imm(0), Writeback::PostImm(imm9)),
        Mode::Pre => (Offset::Imm(imm9), Writeback::Pre),
        Mode::Register => {
            // option<1> == 0 is UNDEFINED (ExtendType decode in LDR (register)).
            let extend = match bits(word, 15, 13) {
                0b010 => Extend::Uxtw,
                0b011 => Extend::Lsl,
                0b110 => Extend::Sxtw,
                0b111 => Extend::Sxtx,
                _ => return None,
            };
            let s = bit(word, 12);
            let shift = if s { scale } else { 0 };
            if s && shift == 0 {
                form = Form::PlainShift0;
            }
            (
                Offset::Reg {
                    m: reg(word, 16),
                    extend,
                    shift,
                },
                Writeback::None,
            )
        }
    };

    // Writeback with Rn == Rt (n != 31) on a GPR load is CONSTRAINED UNPREDICTABLE
    // (Unpredictable_WBOVERLAPLD): decoded, and emulated as Constraint_UNKNOWN
    // (Rt = Rn ends with an UNKNOWN value: the writeback address, written after
    // the load). Stores (Unpredictable_WBOVERLAPST) are emulated as
    // Constraint_NONE: the register's value before writeback is stored. See
    // docs/decoder.md.

    let op = if load { Op::Load } else { Op::Store };
    let mut b = Builder::new(word, class, op, base_sp(n), form);
    b.insn.offset = offset;
    b.insn.writeback = writeback;
    b.insn.unprivileged = mode == Mode::Unprivileged;
    if load && v {
        b.insn.vec_write = VecWrite::ZeroThenLanes;
    }
    b.push(0, bytes, slot)?;
    Some(b.insn)
}

/// Load register (literal): LDR (literal) W/X, LDRSW (literal), LDR (literal,
/// SIMD&FP). PRFM (literal) is a prefetch and cannot fault.
fn literal(word: u32) -> Option<Insn> {
    let opc = bits(word, 31, 30);
    let v = bit(word, 26);
    let t = reg(word, 0);
    let (bytes, slot, class) = if v {
        let bytes = match opc {
            0b00 => 4,
            0b01 => 8,
            0b10 => 16,
            _ => return None,
        };
        (bytes, RegSlot::Vec { n: t, lane: 0 }, Class::FpSingle)
    } else {
        let (bytes, ext) = match opc {
            0b00 => (4, LoadExt::Zero),
            0b01 => (8, LoadExt::Zero),
            0b10 => (4, LoadExt::Sign64),
            _ => return None,
        };
        (bytes, RegSlot::Gpr { n: t, ext }, Class::GprSingle)
    };
    let mut b = Builder::new(word, class, Op::Load, Base::Pc, Form::Plain);
    b.insn.offset = Offset::Imm(sext(bits(word, 23, 5), 19) << 2);
    if v {
        b.insn.vec_write = VecWrite::ZeroThenLanes;
    }
    b.push(0, bytes, slot)?;
    Some(b.insn)
}

/// LDAPUR*/STLUR* (FEAT_LRCPC2): `size 011001 opc 0 imm9 00 Rn Rt`.
fn rcpc_unscaled(word: u32) -> Option<Insn> {
    if bit(word, 21) || bits(word, 11, 10) != 0 {
        return None;
    }
    let (bytes, kind) = gpr_size_opc(bits(word, 31, 30), bits(word, 23, 22))?;
    let t = reg(word, 0);
    let (op, ext) = match kind {
        GprKind::Store => (Op::Store, LoadExt::Zero),
        GprKind::Load(ext) => (Op::Load, ext),
    };
    let mut b = Builder::new(
        word,
        Class::GprSingle,
        op,
        base_sp(reg(word, 5)),
        Form::AcquirePcUnscaled,
    );
    b.insn.offset = Offset::Imm(sext(bits(word, 20, 12), 9));
    b.insn.acquire = op == Op::Load;
    b.insn.release = op == Op::Store;
    b.insn.align = bytes;
    b.push(0, bytes, RegSlot::Gpr { n: t, ext })?;
    Some(b.insn)
}

/// Load/store register pair (offset, pre/post-index, no-allocate), GPR and
/// SIMD&FP: LDP/STP/LDPSW/LDNP/STNP.
fn pair(word: u32) -> Option<Insn> {
    let opc = bits(word, 31, 30);
    let v = bit(word, 26);
    let mode = bits(word, 24, 23);
    let load = bit(word, 22);
    let t2 = reg(word, 10);
    let n = reg(word, 5);
    let t = reg(word, 0);

    let (bytes, ext) = if v {
        match opc {
            0b00 => (4, LoadExt::Zero),
            0b01 => (8, LoadExt::Zero),
            0b10 => (16, LoadExt::Zero),
            _ => return None,
        }
    } else {
        match opc {
            0b00 => (4, LoadExt::Zero),
            // LDPSW: loads only, not in the no-allocate class. opc = 01 with L = 0
            // is STGP (FEAT_MTE), not emulated.
            0b01 if load && mode != 0b00 => (4, LoadExt::Sign64),
            0b10 => (8, LoadExt::Zero),
            _ => return None,
        }
    };
    let imm = sext(bits(word, 21, 15), 7) << log2(bytes);
    let (offset, writeback) = match mode {
        0b01 => (0, Writeback::PostImm(imm)),
        0b11 => (imm, Writeback::Pre),
        _ => (imm, Writeback::None),
    };
    // LDP with Rt == Rt2 (Unpredictable_LDPOVERLAP) and writeback with the base
    // also a destination (Unpredictable_WBOVERLAPLD): decoded, and emulated as
    // Constraint_UNKNOWN (the register ends with an UNKNOWN value: the second
    // element, resp. the writeback address). See docs/decoder.md.
    let (class, slot1, slot2) = if v {
        (
            Class::FpPair,
            RegSlot::Vec { n: t, lane: 0 },
            RegSlot::Vec { n: t2, lane: 0 },
        )
    } else {
        (
            Class::GprPair,
            RegSlot::Gpr { n: t, ext },
            RegSlot::Gpr { n: t2, ext },
        )
    };
    let op = if load { Op::Load } else { Op::Store };
    let form = if mode == 0 {
        Form::PairNonTemporal
    } else {
        Form::Pair
    };
    let mut b = Builder::new(word, class, op, base_sp(n), form);
    b.insn.offset = Offset::Imm(offset);
    b.insn.writeback = writeback;
    if load && v {
        b.insn.vec_write = VecWrite::ZeroThenLanes;
    }
    b.push(0, bytes, slot1)?;
    b.push(u16::from(bytes), bytes, slot2)?;
    Some(b.insn)
}

/// Load/store exclusive register and pair, load/store ordered, compare and swap
/// (pair): `size 001000 o2 L o1 Rs o0 Rt2 Rn Rt`.
///
/// Fields the encoding diagrams show as `(1)` (Rs or Rt2 of the forms that do not
/// use them) should be all ones. Other values are CONSTRAINED UNPREDICTABLE; the
/// word reached us through a data abort, so the CPU did not treat it as
/// UNDEFINED, and we take the other permitted behaviour: decode as if the field
/// were all ones (the field is ignored). See docs/decoder.md.
fn exclusive(word: u32) -> Option<Insn> {
    let size = bits(word, 31, 30);
    let o2 = bit(word, 23);
    let l = bit(word, 22);
    let o1 = bit(word, 21);
    let s = reg(word, 16);
    let o0 = bit(word, 15);
    let t2 = reg(word, 10);
    let n = reg(word, 5);
    let t = reg(word, 0);
    let base = base_sp(n);
    let gpr = |r: u8| RegSlot::Gpr {
        n: r,
        ext: LoadExt::Zero,
    };

    match (o2, o1) {
        // LDXR/LDAXR/STXR/STLXR (B/H/W/X).
        (false, false) => {
            let bytes = 1u8 << size;
            let op = if l {
                Op::LoadExclusive
            } else {
                // Unpredictable_DATAOVERLAP (s == t) and Unpredictable_BASEOVERLAP
                // (s == n, n != 31): decoded, emulated as Constraint_NONE (data
                // and address are the registers' values before the status is
                // written).
                Op::StoreExclusive { s }
            };
            let mut b = Builder::new(word, Class::Exclusive, op, base, Form::Exclusive);
            b.insn.acquire = l && o0;
            b.insn.release = !l && o0;
            b.insn.align = bytes;
            b.push(0, bytes, gpr(t))?;
            Some(b.insn)
        }
        // LDXP/LDAXP/STXP/STLXP (size = 1x).
        (false, true) if size >= 0b10 => {
            let bytes = if size == 0b11 { 8u8 } else { 4 };
            // LDPOVERLAP (t == t2): Constraint_UNKNOWN; DATAOVERLAP and
            // BASEOVERLAP: Constraint_NONE (see above).
            let op = if l {
                Op::LoadExclusive
            } else {
                Op::StoreExclusive { s }
            };
            let mut b = Builder::new(word, Class::Exclusive, op, base, Form::Exclusive);
            b.insn.acquire = l && o0;
            b.insn.release = !l && o0;
            b.insn.align = bytes.wrapping_mul(2);
            b.push(0, bytes, gpr(t))?;
            b.push(u16::from(bytes), bytes, gpr(t2))?;
            Some(b.insn)
        }
        // CASP/CASPA/CASPL/CASPAL (size = 0x, sz = bit 30).
        (false, true) => {
            // Rs or Rt odd: UNDEFINED (CASP decode).
            // Rt2 is a fixed 11111 here (not a should-be-one field).
            if t2 != 31 || s & 1 == 1 || t & 1 == 1 {
                return None;
            }
            let bytes = if size == 0b01 { 8u8 } else { 4 };
            let mut b = Builder::new(
                word,
                Class::CompareAndSwap,
                Op::CompareAndSwap { s },
                base,
                Form::CompareAndSwap,
            );
            b.insn.acquire = l;
            b.insn.release = o0;
            b.insn.align = bytes.wrapping_mul(2);
            b.push(0, bytes, gpr(t))?;
            b.push(u16::from(bytes), bytes, gpr(t | 1))?;
            Some(b.insn)
        }
        // LDAR/STLR/LDLAR/STLLR (B/H/W/X).
        (true, false) => {
            let bytes = 1u8 << size;
            let op = if l { Op::Load } else { Op::Store };
            let form = if o0 {
                Form::Ordered
            } else {
                Form::LimitedOrdered
            };
            let mut b = Builder::new(word, Class::GprSingle, op, base, form);
            b.insn.acquire = l;
            b.insn.release = !l;
            b.insn.align = bytes;
            b.push(0, bytes, gpr(t))?;
            Some(b.insn)
        }
        // CAS/CASA/CASL/CASAL (B/H/W/X).
        (true, true) => {
            // Rt2 is a fixed 11111 here (not a should-be-one field).
            if t2 != 31 {
                return None;
            }
            let bytes = 1u8 << size;
            let mut b = Builder::new(
                word,
                Class::CompareAndSwap,
                Op::CompareAndSwap { s },
                base,
                Form::CompareAndSwap,
            );
            b.insn.acquire = l;
            b.insn.release = o0;
            b.insn.align = bytes;
            b.push(0, bytes, gpr(t))?;
            Some(b.insn)
        }
    }
}

/// Atomic memory operations (FEAT_LSE) and LDAPR (FEAT_LRCPC):
/// `size 111 0 00 A R 1 Rs o3 opc 00 Rn Rt`.
fn atomic(word: u32) -> Option<Insn> {
    let bytes = 1u8 << bits(word, 31, 30);
    let a = bit(word, 23);
    let r = bit(word, 22);
    let s = reg(word, 16);
    let o3 = bit(word, 15);
    let opc = bits(word, 14, 12);
    let n = reg(word, 5);
    let t = reg(word, 0);
    let gpr = RegSlot::Gpr {
        n: t,
        ext: LoadExt::Zero,
    };

    let aop = match (o3, opc) {
        (false, 0b000) => AtomicOp::Add,
        (false, 0b001) => AtomicOp::Clr,
        (false, 0b010) => AtomicOp::Eor,
        (false, 0b011) => AtomicOp::Set,
        (false, 0b100) => AtomicOp::Smax,
        (false, 0b101) => AtomicOp::Smin,
        (false, 0b110) => AtomicOp::Umax,
        (false, 0b111) => AtomicOp::Umin,
        (true, 0b000) => AtomicOp::Swp,
        // LDAPR/LDAPRB/LDAPRH: A = 1, R = 0, Rs = (1)(1)(1)(1)(1), a
        // should-be-one field ignored as in `exclusive`.
        (true, 0b100) if a && !r => {
            let mut b = Builder::new(
                word,
                Class::GprSingle,
                Op::Load,
                base_sp(n),
                Form::AcquirePc,
            );
            b.insn.acquire = true;
            b.insn.align = bytes;
            b.push(0, bytes, gpr)?;
            return Some(b.insn);
        }
        // LD64B/ST64B*, RCW*, LSE128 and unallocated.
        _ => return None,
    };
    let mut b = Builder::new(
        word,
        Class::Atomic,
        Op::Atomic { op: aop, s },
        base_sp(n),
        Form::Atomic,
    );
    // "AccType ldacctype = if A == '1' && Rt != '11111' then AccType_ORDEREDRW":
    // the acquire is dropped when the loaded value is discarded.
    b.insn.acquire = a && t != 31;
    b.insn.release = r;
    b.insn.align = bytes;
    b.push(0, bytes, gpr)?;
    Some(b.insn)
}

/// Advanced SIMD load/store multiple structures, with and without post-index:
/// `0 Q 0011000 L 000000 opcode size Rn Rt` and
/// `0 Q 0011001 L 0 Rm opcode size Rn Rt` (LD1-LD4/ST1-ST4, decode pseudocode
/// "LD1 (multiple structures)" / `Shared decode for all encodings`).
fn simd_multiple(word: u32) -> Option<Insn> {
    if bit(word, 31) {
        return None;
    }
    let q = bit(word, 30);
    let post = bit(word, 23);
    let load = bit(word, 22);
    let m = reg(word, 16);
    let opcode = bits(word, 15, 12);
    let size = bits(word, 11, 10);
    let n = reg(word, 5);
    let t = reg(word, 0);
    if post {
        if bit(word, 21) {
            return None;
        }
    } else if bits(word, 21, 16) != 0 {
        return None;
    }
    let (rpt, selem): (u8, u8) = match opcode {
        0b0000 => (1, 4),
        0b0010 => (4, 1),
        0b0100 => (1, 3),
        0b0110 => (3, 1),
        0b0111 => (1, 1),
        0b1000 => (1, 2),
        0b1010 => (2, 1),
        _ => return None,
    };
    // size:Q == '110' && selem != 1: ReservedValue().
    if size == 0b11 && !q && selem != 1 {
        return None;
    }
    let ebytes = 1u8 << size;
    let datasize: u8 = if q { 16 } else { 8 };
    let lanes = datasize / ebytes;

    let op = if load { Op::Load } else { Op::Store };
    let mut b = Builder::new(word, Class::SimdMultiple, op, base_sp(n), Form::Structure);
    let mut offs: u16 = 0;
    for r in 0..rpt {
        for e in 0..lanes {
            let mut tt = t.wrapping_add(r) % 32;
            for _ in 0..selem {
                b.push(offs, ebytes, RegSlot::Vec { n: tt, lane: e })?;
                offs = offs.wrapping_add(u16::from(ebytes));
                tt = tt.wrapping_add(1) % 32;
            }
        }
    }
    if post {
        b.insn.writeback = if m == 31 {
            Writeback::PostImm(i64::from(offs))
        } else {
            Writeback::PostReg(m)
        };
    }
    if load {
        b.insn.vec_write = VecWrite::ZeroThenLanes;
    }
    Some(b.insn)
}

/// Advanced SIMD load/store single structure and LD1R-LD4R, with and without
/// post-index: `0 Q 0011010 L R 00000 opcode S size Rn Rt` and
/// `0 Q 0011011 L R Rm opcode S size Rn Rt` (decode pseudocode "LD1 (single
/// structure)" / `Shared decode for all encodings`).
fn simd_single(word: u32) -> Option<Insn> {
    if bit(word, 31) {
        return None;
    }
    let q = bit(word, 30);
    let post = bit(word, 23);
    let load = bit(word, 22);
    let r = bit(word, 21);
    let m = reg(word, 16);
    let opcode = bits(word, 15, 13);
    let s = bit(word, 12);
    let size = bits(word, 11, 10);
    let n = reg(word, 5);
    let t = reg(word, 0);
    if !post && m != 0 {
        return None;
    }
    let selem = (((opcode & 1) << 1) | u32::from(r)) + 1;
    let q = u32::from(q);
    let s_bit = u32::from(s);
    let (scale, index, replicate) = match opcode >> 1 {
        0b11 => {
            if !load || s {
                return None;
            }
            (size, 0, true)
        }
        0b00 => (0, (q << 3) | (s_bit << 2) | size, false),
        0b01 => {
            if size & 1 == 1 {
                return None;
            }
            (1, (q << 2) | (s_bit << 1) | (size >> 1), false)
        }
        _ => {
            if size & 2 == 2 {
                return None;
            }
            if size & 1 == 0 {
                (2, (q << 1) | s_bit, false)
            } else {
                if s {
                    return None;
                }
                (3, q, false)
            }
        }
    };
    let ebytes = 1u8 << scale;
    // The index is at most 15 (4 bits), so the cast cannot truncate.
    let lane = index as u8;

    let op = if load { Op::Load } else { Op::Store };
    let mut b = Builder::new(word, Class::SimdSingle, op, base_sp(n), Form::Structure);
    let mut offs: u16 = 0;
    let mut tt = t;
    for _ in 0..selem {
        b.push(offs, ebytes, RegSlot::Vec { n: tt, lane })?;
        offs = offs.wrapping_add(u16::from(ebytes));
        tt = tt.wrapping_add(1) % 32;
    }
    if post {
        b.insn.writeback = if m == 31 {
            Writeback::PostImm(i64::from(offs))
        } else {
            Writeback::PostReg(m)
        };
    }
    if load {
        b.insn.vec_write = if replicate {
            VecWrite::Replicate {
                bytes: if q == 1 { 16 } else { 8 },
            }
        } else {
            VecWrite::MergeLanes
        };
    }
    Some(b.insn)
}
