// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! An A64 integer interpreter: the data-processing and branch instructions
//! that run-ahead emulation ([`crate::runahead`]) executes between two
//! loads/stores.
//!
//! [`decode`] recognises exactly these encodings (Arm ARM DDI 0487, C4.1
//! "A64 instruction set encoding", sections "Data Processing -- Immediate",
//! "Data Processing -- Register" and "Branches, Exception Generating and
//! System instructions"):
//!
//! * add/subtract: immediate, shifted register, extended register, with carry
//!   (ADD, ADDS, SUB, SUBS, ADC, ADCS, SBC, SBCS and their aliases CMP, CMN,
//!   NEG, NEGS, NGC, MOV to/from SP);
//! * logical: immediate (with `DecodeBitMasks`) and shifted register (AND,
//!   ANDS, ORR, EOR, BIC, BICS, ORN, EON; aliases MOV, MVN, TST);
//! * move wide (MOVZ, MOVN, MOVK), ADR, ADRP;
//! * bitfield (SBFM, BFM, UBFM: ASR, LSL, LSR, SXTB/H/W, UXTB/H, SBFX, UBFX,
//!   SBFIZ, UBFIZ, BFI, BFXIL, BFC) and EXTR (ROR immediate);
//! * conditional select and compare (CSEL, CSINC, CSINV, CSNEG, CCMP, CCMN,
//!   register and immediate; aliases CSET, CSETM, CINC, CINV, CNEG);
//! * shifts by register (LSLV, LSRV, ASRV, RORV), UDIV, SDIV;
//! * RBIT, REV16, REV32, REV, CLZ, CLS;
//! * multiply (MADD, MSUB, SMADDL, SMSUBL, UMADDL, UMSUBL, SMULH, UMULH; MUL,
//!   MNEG, SMULL, UMULL...);
//! * branches: B, BL, B.cond, CBZ, CBNZ, TBZ, TBNZ, RET.
//!
//! Everything else is `None`: unallocated encodings inside these groups, the
//! optional extensions that share them (FEAT_MTE ADDG/SUBG/SUBP/IRG/GMI,
//! FEAT_FlagM RMIF/SETF, FEAT_CSSC, FEAT_CRC32, FEAT_PAuth, BC.cond), indirect
//! branches other than RET (BR and BLR set PSTATE.BTYPE), and every other
//! instruction. [`barrier`] recognises DMB, DSB and ISB separately.
//!
//! [`execute`] runs a decoded instruction on a [`Cpu`], with NZCV exactly as
//! the pseudocode's `AddWithCarry`, `ConditionHolds` and the logical
//! instructions set it. It changes nothing and returns `Ok(None)` when a
//! branch target's top byte is not the sign extension of bit 55 (so
//! `AArch64.BranchAddr` would rewrite it, depending on TCR_EL1.TBI/TBID): the
//! caller leaves that branch to the CPU.
//!
//! No allocation, no panics on any word or register value.

mod exec;

pub use exec::{Cpu, IntState, condition_holds, decode_bit_masks, execute};

/// A general-purpose register operand, after the encoding's rule for
/// register number 31 (stack pointer or zero register).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gpr {
    /// X0..=X30 (W0..=W30).
    X(u8),
    /// XZR/WZR: reads zero, writes are discarded.
    Zr,
    /// SP/WSP: the current stack pointer.
    Sp,
}

impl Gpr {
    fn zr(n: u32) -> Gpr {
        if n == 31 { Gpr::Zr } else { Gpr::X(n as u8) }
    }

    fn sp(n: u32) -> Gpr {
        if n == 31 { Gpr::Sp } else { Gpr::X(n as u8) }
    }
}

/// Shift of a shifted-register operand (`DecodeShift`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShiftKind {
    /// Logical shift left.
    Lsl,
    /// Logical shift right.
    Lsr,
    /// Arithmetic shift right.
    Asr,
    /// Rotate right.
    Ror,
}

impl ShiftKind {
    fn from_bits(b: u32) -> ShiftKind {
        match b & 3 {
            0 => ShiftKind::Lsl,
            1 => ShiftKind::Lsr,
            2 => ShiftKind::Asr,
            _ => ShiftKind::Ror,
        }
    }
}

/// Extension of an extended-register operand (`DecodeRegExtend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtendKind {
    /// UXTB.
    Uxtb,
    /// UXTH.
    Uxth,
    /// UXTW.
    Uxtw,
    /// UXTX (LSL).
    Uxtx,
    /// SXTB.
    Sxtb,
    /// SXTH.
    Sxth,
    /// SXTW.
    Sxtw,
    /// SXTX.
    Sxtx,
}

impl ExtendKind {
    fn from_bits(b: u32) -> ExtendKind {
        match b & 7 {
            0 => ExtendKind::Uxtb,
            1 => ExtendKind::Uxth,
            2 => ExtendKind::Uxtw,
            3 => ExtendKind::Uxtx,
            4 => ExtendKind::Sxtb,
            5 => ExtendKind::Sxth,
            6 => ExtendKind::Sxtw,
            _ => ExtendKind::Sxtx,
        }
    }
}

/// The second operand of an arithmetic or logical instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// An immediate (already shifted or expanded).
    Imm(u64),
    /// `Rm, <shift> #amount`.
    Shifted {
        /// The register.
        rm: Gpr,
        /// The shift.
        kind: ShiftKind,
        /// The amount, below the data size.
        amount: u8,
    },
    /// `Rm, <extend> #shift`.
    Extended {
        /// The register.
        rm: Gpr,
        /// The extension.
        ext: ExtendKind,
        /// Left shift after extension, 0..=4.
        shift: u8,
    },
}

/// Logical operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogicOp {
    /// AND (ANDS with `setflags`).
    And,
    /// ORR.
    Orr,
    /// EOR.
    Eor,
}

/// Move-wide operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MoveOp {
    /// MOVN: the inverted immediate.
    N,
    /// MOVZ: the immediate.
    Z,
    /// MOVK: insert 16 bits, keep the rest.
    K,
}

/// Bitfield operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BitfieldOp {
    /// SBFM.
    Sbfm,
    /// BFM.
    Bfm,
    /// UBFM.
    Ubfm,
}

/// Conditional select operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SelectOp {
    /// CSEL: Rm.
    Csel,
    /// CSINC: Rm + 1.
    Csinc,
    /// CSINV: NOT Rm.
    Csinv,
    /// CSNEG: -Rm.
    Csneg,
}

/// One-source data-processing operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// Reverse the bits.
    Rbit,
    /// Reverse the bytes in each halfword.
    Rev16,
    /// Reverse the bytes in each word (64-bit only).
    Rev32,
    /// Reverse the bytes.
    Rev,
    /// Count leading zeros.
    Clz,
    /// Count leading sign bits.
    Cls,
}

/// A decoded integer instruction. `sf` selects 64-bit (true) or 32-bit
/// (false) operation; 32-bit results are zero-extended into the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntInsn {
    /// ADD/ADDS/SUB/SUBS (immediate, shifted or extended register).
    AddSub {
        /// 64-bit.
        sf: bool,
        /// Subtract.
        sub: bool,
        /// Set NZCV.
        setflags: bool,
        /// Destination.
        rd: Gpr,
        /// First operand.
        rn: Gpr,
        /// Second operand.
        op2: Operand,
    },
    /// ADC/ADCS/SBC/SBCS.
    AddSubCarry {
        /// 64-bit.
        sf: bool,
        /// Subtract.
        sub: bool,
        /// Set NZCV.
        setflags: bool,
        /// Destination.
        rd: Gpr,
        /// First operand.
        rn: Gpr,
        /// Second operand.
        rm: Gpr,
    },
    /// AND/ORR/EOR/ANDS, immediate or shifted register, optionally with the
    /// second operand inverted (BIC, ORN, EON, BICS).
    Logical {
        /// 64-bit.
        sf: bool,
        /// The operation.
        op: LogicOp,
        /// Set NZCV (ANDS/BICS).
        setflags: bool,
        /// Invert the second operand.
        invert: bool,
        /// Destination.
        rd: Gpr,
        /// First operand.
        rn: Gpr,
        /// Second operand.
        op2: Operand,
    },
    /// MOVN/MOVZ/MOVK.
    MoveWide {
        /// 64-bit.
        sf: bool,
        /// The operation.
        op: MoveOp,
        /// Destination.
        rd: Gpr,
        /// The 16-bit immediate.
        imm16: u16,
        /// Its position: 0, 16, 32 or 48.
        shift: u8,
    },
    /// ADR/ADRP.
    Adr {
        /// Destination.
        rd: Gpr,
        /// The offset (for ADRP, already multiplied by 4096).
        offset: i64,
        /// ADRP: relative to the PC's 4 KiB page.
        page: bool,
    },
    /// SBFM/BFM/UBFM with the masks `DecodeBitMasks` gives.
    Bitfield {
        /// 64-bit.
        sf: bool,
        /// The operation.
        op: BitfieldOp,
        /// Destination.
        rd: Gpr,
        /// Source.
        rn: Gpr,
        /// Rotation (immr).
        immr: u8,
        /// The source bit copied into the extension (imms).
        imms: u8,
        /// `wmask`.
        wmask: u64,
        /// `tmask`.
        tmask: u64,
    },
    /// EXTR.
    Extract {
        /// 64-bit.
        sf: bool,
        /// Destination.
        rd: Gpr,
        /// High half of the concatenation.
        rn: Gpr,
        /// Low half.
        rm: Gpr,
        /// Lowest bit extracted.
        lsb: u8,
    },
    /// CSEL/CSINC/CSINV/CSNEG.
    CondSelect {
        /// 64-bit.
        sf: bool,
        /// The operation.
        op: SelectOp,
        /// Destination.
        rd: Gpr,
        /// Chosen when the condition holds.
        rn: Gpr,
        /// Chosen (after the operation) otherwise.
        rm: Gpr,
        /// The condition.
        cond: u8,
    },
    /// CCMP/CCMN, register or immediate.
    CondCompare {
        /// 64-bit.
        sf: bool,
        /// CCMN (add) rather than CCMP (subtract).
        cmn: bool,
        /// First operand.
        rn: Gpr,
        /// Second operand: an immediate 0..=31 or a register (no shift).
        op2: Operand,
        /// NZCV when the condition fails.
        nzcv: u8,
        /// The condition.
        cond: u8,
    },
    /// LSLV/LSRV/ASRV/RORV.
    ShiftReg {
        /// 64-bit.
        sf: bool,
        /// The shift.
        kind: ShiftKind,
        /// Destination.
        rd: Gpr,
        /// Value.
        rn: Gpr,
        /// Amount (modulo the data size).
        rm: Gpr,
    },
    /// UDIV/SDIV.
    Div {
        /// 64-bit.
        sf: bool,
        /// SDIV.
        signed: bool,
        /// Destination.
        rd: Gpr,
        /// Dividend.
        rn: Gpr,
        /// Divisor.
        rm: Gpr,
    },
    /// RBIT/REV16/REV32/REV/CLZ/CLS.
    Unary {
        /// 64-bit.
        sf: bool,
        /// The operation.
        op: UnaryOp,
        /// Destination.
        rd: Gpr,
        /// Source.
        rn: Gpr,
    },
    /// MADD/MSUB: `ra +/- rn * rm`.
    MulAdd {
        /// 64-bit.
        sf: bool,
        /// MSUB.
        sub: bool,
        /// Destination.
        rd: Gpr,
        /// Multiplicand.
        rn: Gpr,
        /// Multiplier.
        rm: Gpr,
        /// Addend.
        ra: Gpr,
    },
    /// SMADDL/SMSUBL/UMADDL/UMSUBL: `Xa +/- Wn * Wm` (64-bit).
    MulAddLong {
        /// Signed (SMADDL/SMSUBL).
        signed: bool,
        /// Subtract.
        sub: bool,
        /// Destination.
        rd: Gpr,
        /// Multiplicand (32 bits).
        rn: Gpr,
        /// Multiplier (32 bits).
        rm: Gpr,
        /// Addend (64 bits).
        ra: Gpr,
    },
    /// SMULH/UMULH: the high 64 bits of the 128-bit product.
    MulHigh {
        /// SMULH.
        signed: bool,
        /// Destination.
        rd: Gpr,
        /// Multiplicand.
        rn: Gpr,
        /// Multiplier.
        rm: Gpr,
    },
    /// B/BL.
    Branch {
        /// BL: X30 = PC + 4.
        link: bool,
        /// Offset from the PC.
        offset: i64,
    },
    /// B.cond.
    BranchCond {
        /// The condition.
        cond: u8,
        /// Offset from the PC.
        offset: i64,
    },
    /// CBZ/CBNZ.
    CompareBranch {
        /// Test the whole X register rather than W.
        sf: bool,
        /// CBNZ.
        nonzero: bool,
        /// The register tested.
        rt: Gpr,
        /// Offset from the PC.
        offset: i64,
    },
    /// TBZ/TBNZ.
    TestBranch {
        /// TBNZ.
        nonzero: bool,
        /// The register tested.
        rt: Gpr,
        /// The bit tested, 0..=63.
        bit: u8,
        /// Offset from the PC.
        offset: i64,
    },
    /// RET Xn (PSTATE.BTYPE becomes 0, as for every non-BR/BLR instruction).
    Ret {
        /// The register holding the target.
        rn: Gpr,
    },
}

/// A memory barrier run-ahead can honour with a host fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Barrier {
    /// DMB (any domain and type).
    Dmb,
    /// DSB (any domain and type, including SSBB and PSSBB; not the FEAT_XS
    /// `nXS` forms).
    Dsb,
    /// ISB.
    Isb,
}

/// Bits `[hi:lo]` of `w`.
fn bits(w: u32, hi: u32, lo: u32) -> u32 {
    (w >> lo) & ((1u32 << (hi - lo + 1)) - 1)
}

fn bit(w: u32, n: u32) -> bool {
    (w >> n) & 1 != 0
}

/// Sign-extend the low `n` bits of `v`.
fn sext(v: u64, n: u32) -> i64 {
    let sh = 64 - n;
    ((v << sh) as i64) >> sh
}

/// Recognise DMB, DSB and ISB (Arm ARM C6.2 DMB/DSB/ISB: `1101 0101 0000 0011
/// 0011 CRm 1 op2 11111` with op2 = 101, 100, 110).
pub fn barrier(word: u32) -> Option<Barrier> {
    match word & 0xffff_f0ff {
        0xd503_30bf => Some(Barrier::Dmb),
        0xd503_309f => Some(Barrier::Dsb),
        0xd503_30df => Some(Barrier::Isb),
        _ => None,
    }
}

/// Decode `word` if it is one of the integer instructions the interpreter
/// executes (see the module documentation); `None` otherwise.
pub fn decode(word: u32) -> Option<IntInsn> {
    let op0 = bits(word, 28, 25);
    match op0 {
        0b1000 | 0b1001 => dp_immediate(word),
        0b1010 | 0b1011 => branch(word),
        0b0101 | 0b1101 => dp_register(word),
        _ => None,
    }
}

fn dp_immediate(w: u32) -> Option<IntInsn> {
    let sf = bit(w, 31);
    let rd = bits(w, 4, 0);
    let rn = bits(w, 9, 5);
    match bits(w, 25, 23) {
        0b000 | 0b001 => {
            let imm = (bits(w, 23, 5) << 2) | bits(w, 30, 29);
            let page = bit(w, 31);
            let offset = if page {
                sext(u64::from(imm), 21) << 12
            } else {
                sext(u64::from(imm), 21)
            };
            Some(IntInsn::Adr {
                rd: Gpr::zr(rd),
                offset,
                page,
            })
        }
        0b010 => {
            let sub = bit(w, 30);
            let setflags = bit(w, 29);
            let imm12 = u64::from(bits(w, 21, 10));
            let imm = if bit(w, 22) { imm12 << 12 } else { imm12 };
            Some(IntInsn::AddSub {
                sf,
                sub,
                setflags,
                rd: if setflags { Gpr::zr(rd) } else { Gpr::sp(rd) },
                rn: Gpr::sp(rn),
                op2: Operand::Imm(imm),
            })
        }
        0b100 => {
            let n = bit(w, 22);
            if !sf && n {
                return None;
            }
            let (imm, _) = decode_bit_masks(
                n,
                bits(w, 15, 10) as u8,
                bits(w, 21, 16) as u8,
                true,
                if sf { 64 } else { 32 },
            )?;
            let (op, setflags) = match bits(w, 30, 29) {
                0 => (LogicOp::And, false),
                1 => (LogicOp::Orr, false),
                2 => (LogicOp::Eor, false),
                _ => (LogicOp::And, true),
            };
            Some(IntInsn::Logical {
                sf,
                op,
                setflags,
                invert: false,
                rd: if setflags { Gpr::zr(rd) } else { Gpr::sp(rd) },
                rn: Gpr::zr(rn),
                op2: Operand::Imm(imm),
            })
        }
        0b101 => {
            let hw = bits(w, 22, 21);
            if !sf && hw >= 2 {
                return None;
            }
            let op = match bits(w, 30, 29) {
                0 => MoveOp::N,
                2 => MoveOp::Z,
                3 => MoveOp::K,
                _ => return None,
            };
            Some(IntInsn::MoveWide {
                sf,
                op,
                rd: Gpr::zr(rd),
                imm16: bits(w, 20, 5) as u16,
                shift: (hw * 16) as u8,
            })
        }
        0b110 => {
            let n = bit(w, 22);
            let immr = bits(w, 21, 16);
            let imms = bits(w, 15, 10);
            if sf != n || (!sf && (immr >= 32 || imms >= 32)) {
                return None;
            }
            let op = match bits(w, 30, 29) {
                0 => BitfieldOp::Sbfm,
                1 => BitfieldOp::Bfm,
                2 => BitfieldOp::Ubfm,
                _ => return None,
            };
            let (wmask, tmask) =
                decode_bit_masks(n, imms as u8, immr as u8, false, if sf { 64 } else { 32 })?;
            Some(IntInsn::Bitfield {
                sf,
                op,
                rd: Gpr::zr(rd),
                rn: Gpr::zr(rn),
                immr: immr as u8,
                imms: imms as u8,
                wmask,
                tmask,
            })
        }
        0b111 => {
            // Extract: sf op21 100111 N o0 Rm imms Rn Rd; only EXTR
            // (op21 = 00, o0 = 0, N = sf) is allocated.
            let imms = bits(w, 15, 10);
            if bits(w, 30, 29) != 0 || bit(w, 21) || bit(w, 22) != sf || (!sf && imms >= 32) {
                return None;
            }
            Some(IntInsn::Extract {
                sf,
                rd: Gpr::zr(rd),
                rn: Gpr::zr(rn),
                rm: Gpr::zr(bits(w, 20, 16)),
                lsb: imms as u8,
            })
        }
        // 011: add/subtract (immediate, with tags; FEAT_MTE) and min/max
        // (immediate; FEAT_CSSC).
        _ => None,
    }
}

fn dp_register(w: u32) -> Option<IntInsn> {
    let sf = bit(w, 31);
    let rd = bits(w, 4, 0);
    let rn = bits(w, 9, 5);
    let rm = bits(w, 20, 16);
    let op1 = bit(w, 28);
    let op2 = bits(w, 24, 21);
    let op3 = bits(w, 15, 10);
    if !op1 {
        if op2 & 0b1000 == 0 {
            // Logical (shifted register).
            let imm6 = bits(w, 15, 10);
            if !sf && imm6 >= 32 {
                return None;
            }
            let (op, setflags) = match bits(w, 30, 29) {
                0 => (LogicOp::And, false),
                1 => (LogicOp::Orr, false),
                2 => (LogicOp::Eor, false),
                _ => (LogicOp::And, true),
            };
            return Some(IntInsn::Logical {
                sf,
                op,
                setflags,
                invert: bit(w, 21),
                rd: Gpr::zr(rd),
                rn: Gpr::zr(rn),
                op2: Operand::Shifted {
                    rm: Gpr::zr(rm),
                    kind: ShiftKind::from_bits(bits(w, 23, 22)),
                    amount: imm6 as u8,
                },
            });
        }
        let sub = bit(w, 30);
        let setflags = bit(w, 29);
        if op2 & 1 == 0 {
            // Add/subtract (shifted register).
            let shift = bits(w, 23, 22);
            let imm6 = bits(w, 15, 10);
            if shift == 3 || (!sf && imm6 >= 32) {
                return None;
            }
            return Some(IntInsn::AddSub {
                sf,
                sub,
                setflags,
                rd: Gpr::zr(rd),
                rn: Gpr::zr(rn),
                op2: Operand::Shifted {
                    rm: Gpr::zr(rm),
                    kind: ShiftKind::from_bits(shift),
                    amount: imm6 as u8,
                },
            });
        }
        // Add/subtract (extended register).
        let imm3 = bits(w, 12, 10);
        if bits(w, 23, 22) != 0 || imm3 > 4 {
            return None;
        }
        return Some(IntInsn::AddSub {
            sf,
            sub,
            setflags,
            rd: if setflags { Gpr::zr(rd) } else { Gpr::sp(rd) },
            rn: Gpr::sp(rn),
            op2: Operand::Extended {
                rm: Gpr::zr(rm),
                ext: ExtendKind::from_bits(bits(w, 15, 13)),
                shift: imm3 as u8,
            },
        });
    }
    match op2 {
        0b0000 => {
            // Add/subtract with carry; op3 != 0 is FEAT_FlagM (RMIF, SETF).
            if op3 != 0 {
                return None;
            }
            Some(IntInsn::AddSubCarry {
                sf,
                sub: bit(w, 30),
                setflags: bit(w, 29),
                rd: Gpr::zr(rd),
                rn: Gpr::zr(rn),
                rm: Gpr::zr(rm),
            })
        }
        0b0010 => {
            // Conditional compare: sf op 1 11010010 Rm|imm5 cond imm o2 Rn o3 nzcv.
            if !bit(w, 29) || bit(w, 10) || bit(w, 4) {
                return None;
            }
            let op2 = if bit(w, 11) {
                Operand::Imm(u64::from(rm))
            } else {
                Operand::Shifted {
                    rm: Gpr::zr(rm),
                    kind: ShiftKind::Lsl,
                    amount: 0,
                }
            };
            Some(IntInsn::CondCompare {
                sf,
                cmn: !bit(w, 30),
                rn: Gpr::zr(rn),
                op2,
                nzcv: bits(w, 3, 0) as u8,
                cond: bits(w, 15, 12) as u8,
            })
        }
        0b0100 => {
            // Conditional select: sf op S 11010100 Rm cond op2 Rn Rd.
            if bit(w, 29) || bit(w, 11) {
                return None;
            }
            let op = match (bit(w, 30), bit(w, 10)) {
                (false, false) => SelectOp::Csel,
                (false, true) => SelectOp::Csinc,
                (true, false) => SelectOp::Csinv,
                (true, true) => SelectOp::Csneg,
            };
            Some(IntInsn::CondSelect {
                sf,
                op,
                rd: Gpr::zr(rd),
                rn: Gpr::zr(rn),
                rm: Gpr::zr(rm),
                cond: bits(w, 15, 12) as u8,
            })
        }
        0b0110 => {
            if bit(w, 29) {
                return None; // S = 1: SUBPS (FEAT_MTE) or unallocated.
            }
            if !bit(w, 30) {
                // Data-processing (2 source).
                let (rd, rn, rm) = (Gpr::zr(rd), Gpr::zr(rn), Gpr::zr(rm));
                match op3 {
                    0b000010 | 0b000011 => Some(IntInsn::Div {
                        sf,
                        signed: op3 == 0b000011,
                        rd,
                        rn,
                        rm,
                    }),
                    0b001000..=0b001011 => Some(IntInsn::ShiftReg {
                        sf,
                        kind: ShiftKind::from_bits(op3),
                        rd,
                        rn,
                        rm,
                    }),
                    _ => None,
                }
            } else {
                // Data-processing (1 source): opcode2 = 00000 only (00001 is PAuth).
                if rm != 0 {
                    return None;
                }
                let op = match (op3, sf) {
                    (0b000000, _) => UnaryOp::Rbit,
                    (0b000001, _) => UnaryOp::Rev16,
                    (0b000010, false) => UnaryOp::Rev,
                    (0b000010, true) => UnaryOp::Rev32,
                    (0b000011, true) => UnaryOp::Rev,
                    (0b000100, _) => UnaryOp::Clz,
                    (0b000101, _) => UnaryOp::Cls,
                    _ => return None,
                };
                Some(IntInsn::Unary {
                    sf,
                    op,
                    rd: Gpr::zr(rd),
                    rn: Gpr::zr(rn),
                })
            }
        }
        0b1000..=0b1111 => {
            // Data-processing (3 source): sf op54 11011 op31 Rm o0 Ra Rn Rd.
            if bits(w, 30, 29) != 0 {
                return None;
            }
            let o0 = bit(w, 15);
            let ra = bits(w, 14, 10);
            let (rd, rn, rm) = (Gpr::zr(rd), Gpr::zr(rn), Gpr::zr(rm));
            match (bits(w, 23, 21), sf) {
                (0b000, _) => Some(IntInsn::MulAdd {
                    sf,
                    sub: o0,
                    rd,
                    rn,
                    rm,
                    ra: Gpr::zr(ra),
                }),
                (0b001, true) | (0b101, true) => Some(IntInsn::MulAddLong {
                    signed: !bit(w, 23),
                    sub: o0,
                    rd,
                    rn,
                    rm,
                    ra: Gpr::zr(ra),
                }),
                // SMULH/UMULH: Ra is should-be-one (11111); o0 must be 0.
                (0b010, true) | (0b110, true) if !o0 && ra == 31 => Some(IntInsn::MulHigh {
                    signed: !bit(w, 23),
                    rd,
                    rn,
                    rm,
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

fn branch(w: u32) -> Option<IntInsn> {
    // B/BL: op 00101 imm26.
    if bits(w, 30, 26) == 0b00101 {
        return Some(IntInsn::Branch {
            link: bit(w, 31),
            offset: sext(u64::from(bits(w, 25, 0)), 26) << 2,
        });
    }
    // B.cond: 0101010 0 imm19 0 cond (bit 4 set is BC.cond, FEAT_HBC).
    if bits(w, 31, 24) == 0b0101_0100 && !bit(w, 4) {
        return Some(IntInsn::BranchCond {
            cond: bits(w, 3, 0) as u8,
            offset: sext(u64::from(bits(w, 23, 5)), 19) << 2,
        });
    }
    // CBZ/CBNZ: sf 011010 op imm19 Rt.
    if bits(w, 30, 25) == 0b011010 {
        return Some(IntInsn::CompareBranch {
            sf: bit(w, 31),
            nonzero: bit(w, 24),
            rt: Gpr::zr(bits(w, 4, 0)),
            offset: sext(u64::from(bits(w, 23, 5)), 19) << 2,
        });
    }
    // TBZ/TBNZ: b5 011011 op b40 imm14 Rt.
    if bits(w, 30, 25) == 0b011011 {
        return Some(IntInsn::TestBranch {
            nonzero: bit(w, 24),
            rt: Gpr::zr(bits(w, 4, 0)),
            bit: ((bits(w, 31, 31) << 5) | bits(w, 23, 19)) as u8,
            offset: sext(u64::from(bits(w, 18, 5)), 14) << 2,
        });
    }
    // RET: 1101011 0 0 10 11111 000000 Rn 00000.
    if w & 0xffff_fc1f == 0xd65f_0000 {
        return Some(IntInsn::Ret {
            rn: Gpr::zr(bits(w, 9, 5)),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_few_known_words() {
        // add x0, x1, #1
        assert_eq!(
            decode(0x9100_0420),
            Some(IntInsn::AddSub {
                sf: true,
                sub: false,
                setflags: false,
                rd: Gpr::X(0),
                rn: Gpr::X(1),
                op2: Operand::Imm(1)
            })
        );
        // subs x2, x2, #1
        assert!(matches!(
            decode(0xf100_0442),
            Some(IntInsn::AddSub {
                sub: true,
                setflags: true,
                ..
            })
        ));
        // b.ne .-8
        assert_eq!(
            decode(0x54ff_ffc1),
            Some(IntInsn::BranchCond {
                cond: 1,
                offset: -8
            })
        );
        // ret
        assert_eq!(decode(0xd65f_03c0), Some(IntInsn::Ret { rn: Gpr::X(30) }));
        // Not ours: str x0, [x1], #8; nop; svc #0; br x0; mrs x0, tpidr_el0.
        for w in [
            0xf800_8420,
            0xd503_201f,
            0xd400_0001,
            0xd61f_0000,
            0xd53b_d040,
        ] {
            assert_eq!(decode(w), None, "{w:#x}");
        }
        assert_eq!(barrier(0xd503_3bbf), Some(Barrier::Dmb)); // dmb ish
        assert_eq!(barrier(0xd503_3f9f), Some(Barrier::Dsb)); // dsb sy
        assert_eq!(barrier(0xd503_3fdf), Some(Barrier::Isb)); // isb
        assert_eq!(barrier(0xd503_201f), None);
    }
}
