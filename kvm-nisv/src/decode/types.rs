// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The decoder's output: a typed description of an instruction's memory accesses.
//!
//! The model, shared by the decoder and the emulator:
//!
//! 1. The **address** is `base + offset` (`offset` is zero for post-indexed forms).
//!    `base` is Xn, SP, XZR (DC ZVA only) or the PC (literal loads).
//! 2. The instruction performs its [`Element`] accesses, in the order listed
//!    (which is the architectural order), at `address + element.offset`.
//! 3. Loads write each element to its [`RegSlot`]; SIMD&FP destinations are then
//!    completed according to [`Insn::vec_write`].
//! 4. Base [`Writeback`] is applied, then PC advances by 4.
//!
//! [`Op`] says what kind of access the elements are (plain load/store, exclusive,
//! atomic read-modify-write, compare-and-swap, cache-block zeroing).

/// The base register of the address computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Base {
    /// X0..=X30, or 31 meaning XZR (only DC ZVA can name XZR as its address).
    X(u8),
    /// The current stack pointer (SP_EL0 or SP_EL1 according to PSTATE).
    Sp,
    /// The address of the instruction itself (LDR literal).
    Pc,
}

/// How an index register is extended before it is shifted and added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Extend {
    /// UXTW: the low 32 bits, zero-extended.
    Uxtw,
    /// LSL / UXTX: all 64 bits.
    Lsl,
    /// SXTW: the low 32 bits, sign-extended.
    Sxtw,
    /// SXTX: all 64 bits (same value as LSL; kept for display).
    Sxtx,
}

/// The offset added to the base to form the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Offset {
    /// A signed immediate, already scaled (zero for post-indexed forms).
    Imm(i64),
    /// `extend(Xm or Wm) << shift`. `m == 31` reads as zero (XZR).
    Reg {
        /// Index register number.
        m: u8,
        /// Extension applied to the index register.
        extend: Extend,
        /// Left shift applied after extension (0..=4).
        shift: u8,
    },
}

/// Base register writeback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Writeback {
    /// No writeback.
    None,
    /// Pre-index: the base register becomes the address.
    Pre,
    /// Post-index by an immediate: the base register becomes `base + imm`.
    PostImm(i64),
    /// Post-index by a register (SIMD&FP structure forms, `m != 31`): the base
    /// register becomes `base + Xm`.
    PostReg(u8),
}

/// How a loaded value fills a general-purpose register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoadExt {
    /// Zero-extend to 64 bits (X destinations, and W destinations whose upper
    /// half the architecture clears).
    Zero,
    /// Sign-extend to 32 bits, then zero bits 63:32 (LDRSB/LDRSH into Wt).
    Sign32,
    /// Sign-extend to 64 bits (LDRSB/LDRSH/LDRSW/LDPSW into Xt).
    Sign64,
}

/// Where an element's data comes from (store) or goes to (load).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegSlot {
    /// General-purpose register Xn/Wn; `n == 31` is the zero register (reads
    /// zero, writes are discarded). Stores use the low `size` bytes.
    Gpr {
        /// Register number, 0..=31.
        n: u8,
        /// Extension of a loaded value.
        ext: LoadExt,
    },
    /// Lane `lane` of SIMD&FP register Vn, the lane being the element's size.
    Vec {
        /// Register number, 0..=31.
        n: u8,
        /// Lane index in units of the element size.
        lane: u8,
    },
}

/// One memory access of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Element {
    /// Byte offset from the instruction's address.
    pub offset: u16,
    /// Size in bytes: 1, 2, 4, 8 or 16.
    pub size: u8,
    /// The register it is transferred to or from.
    pub reg: RegSlot,
}

/// How SIMD&FP destination registers are completed after a load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VecWrite {
    /// No SIMD&FP destination.
    None,
    /// Destination registers start as zero and the loaded lanes are written in
    /// (scalar B/H/S/D/Q loads, LDP of SIMD&FP, multiple-structure loads; with
    /// Q=0 the upper 64 bits stay zero).
    ZeroThenLanes,
    /// The loaded lanes are merged into the old register value (single-structure loads).
    MergeLanes,
    /// LDnR: each register's element 0 is replicated to every lane of the low
    /// `bytes` bytes (8 or 16); the rest is zero.
    Replicate {
        /// 8 (Q=0) or 16 (Q=1).
        bytes: u8,
    },
}

/// The operation performed on each element of [`Insn::elements`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AtomicOp {
    /// LDADD: `new = old + s`.
    Add,
    /// LDCLR: `new = old & !s`.
    Clr,
    /// LDEOR: `new = old ^ s`.
    Eor,
    /// LDSET: `new = old | s`.
    Set,
    /// LDSMAX: signed maximum at the access size.
    Smax,
    /// LDSMIN: signed minimum.
    Smin,
    /// LDUMAX: unsigned maximum.
    Umax,
    /// LDUMIN: unsigned minimum.
    Umin,
    /// SWP: `new = s`.
    Swp,
}

/// What kind of access the instruction makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Read each element into its register.
    Load,
    /// Write each element from its register.
    Store,
    /// LDXR/LDAXR/LDXP/LDAXP: a load that also arms the exclusive monitor.
    LoadExclusive,
    /// STXR/STLXR/STXP/STLXP: a store whose status (0 = success, 1 = failure)
    /// is written to Ws as a 32-bit value.
    StoreExclusive {
        /// The status register Ws.
        s: u8,
    },
    /// `LD<op>`/`ST<op>`/SWP: read the element, write `op(old, Rs)`, and load the
    /// old value into the element's register (Rt; XZR discards it). Exactly one element.
    Atomic {
        /// The operation.
        op: AtomicOp,
        /// The operand register Rs (31 = zero register).
        s: u8,
    },
    /// CAS/CASP: compare memory with Rs (and Rs+1 for pairs); if equal, write the
    /// elements' registers (Rt, Rt+1); the old memory value is always loaded into
    /// Rs (and Rs+1). One element, or two for CASP.
    CompareAndSwap {
        /// The compare/result register Rs (the first of the pair for CASP).
        s: u8,
    },
    /// DC ZVA: zero the naturally aligned block (size from DCZID_EL0) that
    /// contains the address. No elements.
    ZeroBlock,
}

/// A coarse instruction class, for counters, tests and documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Class {
    /// Single general-purpose register, immediate/register/literal, any indexing,
    /// including unscaled, unprivileged and acquire/release single forms.
    GprSingle,
    /// LDP/STP/LDPSW/LDNP/STNP of W or X registers.
    GprPair,
    /// Single SIMD&FP register (B/H/S/D/Q) including literal.
    FpSingle,
    /// LDP/STP/LDNP/STNP of S, D or Q registers.
    FpPair,
    /// LD1-LD4/ST1-ST4 multiple structures.
    SimdMultiple,
    /// LD1-LD4/ST1-ST4 single structure (one lane) and LD1R-LD4R.
    SimdSingle,
    /// Load/store exclusive (single register or pair), and the acquire/release
    /// forms LDAR/STLR/LDAPR... live in [`Class::GprSingle`].
    Exclusive,
    /// LSE atomic memory operations and SWP.
    Atomic,
    /// CAS and CASP.
    CompareAndSwap,
    /// DC ZVA.
    DcZva,
}

/// A decoded load/store instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insn {
    /// The instruction word.
    pub word: u32,
    /// The coarse class.
    pub class: Class,
    /// The operation.
    pub op: Op,
    /// Base of the address.
    pub base: Base,
    /// Offset added to the base (zero for post-index).
    pub offset: Offset,
    /// Base writeback.
    pub writeback: Writeback,
    /// Element accesses in architectural order (at most 64).
    pub elements: Elements,
    /// Completion of SIMD&FP destinations after a load.
    pub vec_write: VecWrite,
    /// Bytes to which the address must be aligned, whatever the memory type
    /// (exclusives, atomics, acquire/release: the whole access size); 0 or 1
    /// when only the normal rules apply (SCTLR_EL1.A, Device memory).
    pub align: u8,
    /// Load-acquire semantics.
    pub acquire: bool,
    /// Store-release semantics.
    pub release: bool,
    /// LDTR/STTR: at EL1 the access is checked as if made from EL0.
    pub unprivileged: bool,
    /// The assembler form, for [`core::fmt::Display`] only: everything else the
    /// text shows is derived from the fields above.
    pub form: Form,
}

/// Which family of assembler mnemonics an [`Insn`] belongs to.
///
/// This is what the other fields cannot tell apart (LDR vs LDUR vs LDTR with the
/// same access, LDP vs LDNP, LDAR vs LDAPR, ...). It does not change the
/// semantics, which the other fields carry completely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Form {
    /// LDR/STR (B/H/SB/SH/SW, SIMD&FP): unsigned offset, pre/post-index, register
    /// offset or literal.
    Plain,
    /// As [`Form::Plain`], register offset of a byte access with S = 1: the
    /// assembler shows the shift amount `#0` explicitly.
    PlainShift0,
    /// LDUR/STUR family (unscaled signed 9-bit offset).
    Unscaled,
    /// LDTR/STTR family.
    Unprivileged,
    /// LDP/STP/LDPSW.
    Pair,
    /// LDNP/STNP.
    PairNonTemporal,
    /// LDXR/LDAXR/STXR/STLXR and the pair forms LDXP/LDAXP/STXP/STLXP.
    Exclusive,
    /// LDAR/STLR family.
    Ordered,
    /// LDLAR/STLLR family (FEAT_LOR).
    LimitedOrdered,
    /// LDAPR family (FEAT_LRCPC).
    AcquirePc,
    /// LDAPUR/STLUR family (FEAT_LRCPC2).
    AcquirePcUnscaled,
    /// `LD<op>`/`ST<op>`/SWP; the ordering suffix is taken from the encoding's A/R bits.
    Atomic,
    /// CAS/CASP.
    CompareAndSwap,
    /// LD1-LD4/ST1-ST4 (multiple structures, single structure) and LD1R-LD4R.
    Structure,
    /// DC ZVA.
    DcZva,
}

/// The maximum number of elements of one instruction (LD4/ST4 of 16 bytes each,
/// four registers of 16 one-byte lanes).
pub const MAX_ELEMENTS: usize = 64;

/// A fixed-capacity list of [`Element`]s: decoding never allocates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Elements {
    len: u8,
    items: [Element; MAX_ELEMENTS],
}

impl Elements {
    const EMPTY: Element = Element {
        offset: 0,
        size: 0,
        reg: RegSlot::Gpr {
            n: 31,
            ext: LoadExt::Zero,
        },
    };

    /// An empty list.
    pub const fn new() -> Self {
        Elements {
            len: 0,
            items: [Self::EMPTY; MAX_ELEMENTS],
        }
    }

    /// Append an element. Returns `false` (and changes nothing) when full.
    pub fn push(&mut self, e: Element) -> bool {
        match self.items.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = e;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The elements as a slice.
    pub fn as_slice(&self) -> &[Element] {
        &self.items[..usize::from(self.len)]
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total bytes transferred.
    pub fn total_bytes(&self) -> u64 {
        self.as_slice().iter().map(|e| u64::from(e.size)).sum()
    }
}

impl Default for Elements {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Elements {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<'a> IntoIterator for &'a Elements {
    type Item = &'a Element;
    type IntoIter = core::slice::Iter<'a, Element>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// An instruction word the decoder does not handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("unsupported instruction {word:#010x}")]
pub struct Unsupported {
    /// The instruction word.
    pub word: u32,
}
