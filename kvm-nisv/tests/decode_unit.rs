// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Hand-picked words for every class. The words are assembled by hand from the
//! encoding diagrams of the Arm ARM (DDI 0487, C4.1 "Loads and Stores", C6.2
//! per-instruction pages; the bit layout is spelled out next to each), and the
//! expected fields come from the instruction's decode/operation pseudocode, not
//! from the decoder.

use kvm_nisv::decode::{
    AtomicOp, Base, Class, Element, Extend, Form, Insn, LoadExt, MAX_ELEMENTS, Offset, Op, RegSlot,
    VecWrite, Writeback, decode,
};

/// What a word must decode to; defaults are those of a plain load.
struct Expect {
    class: Class,
    op: Op,
    base: Base,
    offset: Offset,
    writeback: Writeback,
    elements: Vec<Element>,
    vec_write: VecWrite,
    align: u8,
    acquire: bool,
    release: bool,
    unprivileged: bool,
    form: Form,
    text: &'static str,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            class: Class::GprSingle,
            op: Op::Load,
            base: Base::X(1),
            offset: Offset::Imm(0),
            writeback: Writeback::None,
            elements: Vec::new(),
            vec_write: VecWrite::None,
            align: 0,
            acquire: false,
            release: false,
            unprivileged: false,
            form: Form::Plain,
            text: "",
        }
    }
}

fn gpr(n: u8, ext: LoadExt) -> RegSlot {
    RegSlot::Gpr { n, ext }
}

fn x(n: u8) -> RegSlot {
    gpr(n, LoadExt::Zero)
}

fn v(n: u8, lane: u8) -> RegSlot {
    RegSlot::Vec { n, lane }
}

fn el(offset: u16, size: u8, reg: RegSlot) -> Element {
    Element { offset, size, reg }
}

#[track_caller]
fn check(word: u32, e: Expect) {
    let insn: Insn = decode(word).unwrap_or_else(|u| panic!("{word:#010x}: {u}"));
    assert_eq!(insn.word, word);
    assert_eq!(insn.class, e.class, "{word:#010x} class");
    assert_eq!(insn.op, e.op, "{word:#010x} op");
    assert_eq!(insn.base, e.base, "{word:#010x} base");
    assert_eq!(insn.offset, e.offset, "{word:#010x} offset");
    assert_eq!(insn.writeback, e.writeback, "{word:#010x} writeback");
    assert_eq!(
        insn.elements.as_slice(),
        &e.elements[..],
        "{word:#010x} elements"
    );
    assert_eq!(insn.vec_write, e.vec_write, "{word:#010x} vec_write");
    assert_eq!(insn.align, e.align, "{word:#010x} align");
    assert_eq!(insn.acquire, e.acquire, "{word:#010x} acquire");
    assert_eq!(insn.release, e.release, "{word:#010x} release");
    assert_eq!(
        insn.unprivileged, e.unprivileged,
        "{word:#010x} unprivileged"
    );
    assert_eq!(insn.form, e.form, "{word:#010x} form");
    assert_eq!(insn.to_string(), e.text, "{word:#010x} text");
}

#[track_caller]
fn unsupported(word: u32) {
    match decode(word) {
        Err(u) => assert_eq!(u.word, word),
        Ok(i) => panic!("{word:#010x} decoded as `{i}` ({i:?})"),
    }
}

// ---- from /work/shared/arm64-host.md: the words the emulated host ran ----

#[test]
fn host_str_post_index() {
    // STR (immediate) post-index: size=11 111 0 00 opc=00 0 imm9=8 01 Rn=1 Rt=0.
    check(
        0xf800_8420,
        Expect {
            op: Op::Store,
            writeback: Writeback::PostImm(8),
            elements: vec![el(0, 8, x(0))],
            text: "str x0, [x1], #8",
            ..Default::default()
        },
    );
}

#[test]
fn host_ldp_offset() {
    // LDP signed offset: opc=10 101 0 010 L=1 imm7=0 Rt2=3 Rn=1 Rt=2.
    check(
        0xa940_0c22,
        Expect {
            class: Class::GprPair,
            elements: vec![el(0, 8, x(2)), el(8, 8, x(3))],
            form: Form::Pair,
            text: "ldp x2, x3, [x1]",
            ..Default::default()
        },
    );
}

// ---- general-purpose single register ----

#[test]
fn gpr_single_forms() {
    // LDRSB (immediate) pre-index, 32-bit: 00 111 0 00 opc=11 0 imm9=-1 11 Rn=1 Rt=0.
    check(
        0x38df_fc20,
        Expect {
            offset: Offset::Imm(-1),
            writeback: Writeback::Pre,
            elements: vec![el(0, 1, gpr(0, LoadExt::Sign32))],
            text: "ldrsb w0, [x1, #-1]!",
            ..Default::default()
        },
    );
    // LDRSW (immediate) unsigned offset: 10 111 0 01 opc=10 imm12=1 Rn=1 Rt=0;
    // offset = imm12 << 2.
    check(
        0xb980_0420,
        Expect {
            offset: Offset::Imm(4),
            elements: vec![el(0, 4, gpr(0, LoadExt::Sign64))],
            text: "ldrsw x0, [x1, #4]",
            ..Default::default()
        },
    );
    // LDTRH: 01 111 0 00 opc=01 0 imm9=2 10 Rn=1 Rt=0: unprivileged, unscaled.
    check(
        0x7840_2820,
        Expect {
            offset: Offset::Imm(2),
            elements: vec![el(0, 2, x(0))],
            unprivileged: true,
            form: Form::Unprivileged,
            text: "ldtrh w0, [x1, #2]",
            ..Default::default()
        },
    );
    // STURB: 00 111 0 00 opc=00 0 imm9=-256 00 Rn=31(SP) Rt=31(WZR).
    check(
        0x3810_03ff,
        Expect {
            op: Op::Store,
            base: Base::Sp,
            offset: Offset::Imm(-256),
            elements: vec![el(0, 1, x(31))],
            form: Form::Unscaled,
            text: "sturb wzr, [sp, #-256]",
            ..Default::default()
        },
    );
    // LDRH unsigned offset, largest imm12 = 4095, scaled by 2.
    check(
        0x797f_fc20,
        Expect {
            offset: Offset::Imm(8190),
            elements: vec![el(0, 2, x(0))],
            text: "ldrh w0, [x1, #8190]",
            ..Default::default()
        },
    );
    // STR Wt post-index with Rt == Rn: Unpredictable_WBOVERLAPST, emulated as
    // Constraint_NONE (the old register value is stored).
    check(
        0xb801_4421,
        Expect {
            op: Op::Store,
            writeback: Writeback::PostImm(20),
            elements: vec![el(0, 4, x(1))],
            text: "str w1, [x1], #20",
            ..Default::default()
        },
    );
}

#[test]
fn gpr_register_offset() {
    // LDR (register) 64-bit: 11 111 0 00 01 1 Rm=2 option=011 S=0 10 Rn=1 Rt=0.
    check(
        0xf862_6820,
        Expect {
            offset: Offset::Reg {
                m: 2,
                extend: Extend::Lsl,
                shift: 0,
            },
            elements: vec![el(0, 8, x(0))],
            text: "ldr x0, [x1, x2]",
            ..Default::default()
        },
    );
    // LDR (register) 32-bit, option=010 (UXTW), S=1: shift = 2.
    check(
        0xb862_5820,
        Expect {
            offset: Offset::Reg {
                m: 2,
                extend: Extend::Uxtw,
                shift: 2,
            },
            elements: vec![el(0, 4, x(0))],
            text: "ldr w0, [x1, w2, uxtw #2]",
            ..Default::default()
        },
    );
    // LDRB (register), option=011, S=1: the assembler shows `lsl #0`.
    check(
        0x3862_7820,
        Expect {
            offset: Offset::Reg {
                m: 2,
                extend: Extend::Lsl,
                shift: 0,
            },
            elements: vec![el(0, 1, x(0))],
            form: Form::PlainShift0,
            text: "ldrb w0, [x1, x2, lsl #0]",
            ..Default::default()
        },
    );
    // STRH (register), option=111 (SXTX), S=0, Rm = XZR.
    check(
        0x783f_e820,
        Expect {
            op: Op::Store,
            offset: Offset::Reg {
                m: 31,
                extend: Extend::Sxtx,
                shift: 0,
            },
            elements: vec![el(0, 2, x(0))],
            text: "strh w0, [x1, xzr, sxtx]",
            ..Default::default()
        },
    );
}

#[test]
fn literals() {
    // LDR (literal) 64-bit: opc=01 011 0 00 imm19=2 Rt=0: offset = imm19 * 4.
    check(
        0x5800_0040,
        Expect {
            base: Base::Pc,
            offset: Offset::Imm(8),
            elements: vec![el(0, 8, x(0))],
            text: "ldr x0, #8",
            ..Default::default()
        },
    );
    // LDRSW (literal), imm19 = -1.
    check(
        0x98ff_ffe0,
        Expect {
            base: Base::Pc,
            offset: Offset::Imm(-4),
            elements: vec![el(0, 4, gpr(0, LoadExt::Sign64))],
            text: "ldrsw x0, #-4",
            ..Default::default()
        },
    );
    // LDR (literal, SIMD&FP) 128-bit: opc=10 011 1 00 imm19=4 Rt=1.
    check(
        0x9c00_0081,
        Expect {
            class: Class::FpSingle,
            base: Base::Pc,
            offset: Offset::Imm(16),
            elements: vec![el(0, 16, v(1, 0))],
            vec_write: VecWrite::ZeroThenLanes,
            text: "ldr q1, #16",
            ..Default::default()
        },
    );
}

// ---- SIMD&FP single register ----

#[test]
fn fp_single_forms() {
    // LDR (register, SIMD&FP) 128-bit: 00 111 1 00 opc=11 1 Rm=3 option=110 S=1 10 Rn=2 Rt=0.
    check(
        0x3ce3_d840,
        Expect {
            class: Class::FpSingle,
            base: Base::X(2),
            offset: Offset::Reg {
                m: 3,
                extend: Extend::Sxtw,
                shift: 4,
            },
            elements: vec![el(0, 16, v(0, 0))],
            vec_write: VecWrite::ZeroThenLanes,
            text: "ldr q0, [x2, w3, sxtw #4]",
            ..Default::default()
        },
    );
    // LDUR Dt: 11 111 1 00 opc=01 0 imm9=-8 00 Rn=2 Rt=1.
    check(
        0xfc5f_8041,
        Expect {
            class: Class::FpSingle,
            base: Base::X(2),
            offset: Offset::Imm(-8),
            elements: vec![el(0, 8, v(1, 0))],
            vec_write: VecWrite::ZeroThenLanes,
            form: Form::Unscaled,
            text: "ldur d1, [x2, #-8]",
            ..Default::default()
        },
    );
    // STR Ht post-index: 01 111 1 00 opc=00 0 imm9=-2 01 Rn=31 Rt=7.
    check(
        0x7c1f_e7e7,
        Expect {
            class: Class::FpSingle,
            op: Op::Store,
            base: Base::Sp,
            writeback: Writeback::PostImm(-2),
            elements: vec![el(0, 2, v(7, 0))],
            text: "str h7, [sp], #-2",
            ..Default::default()
        },
    );
    // STR Bt unsigned offset 4095: 00 111 1 01 opc=00 imm12=4095 Rn=1 Rt=0.
    check(
        0x3d3f_fc20,
        Expect {
            class: Class::FpSingle,
            op: Op::Store,
            offset: Offset::Imm(4095),
            elements: vec![el(0, 1, v(0, 0))],
            text: "str b0, [x1, #4095]",
            ..Default::default()
        },
    );
}

// ---- pairs ----

#[test]
fn pairs() {
    // STP pre-index: opc=10 101 0 011 L=0 imm7=-2 Rt2=1 Rn=31 Rt=0; offset = -2 * 8.
    check(
        0xa9bf_07e0,
        Expect {
            class: Class::GprPair,
            op: Op::Store,
            base: Base::Sp,
            offset: Offset::Imm(-16),
            writeback: Writeback::Pre,
            elements: vec![el(0, 8, x(0)), el(8, 8, x(1))],
            form: Form::Pair,
            text: "stp x0, x1, [sp, #-16]!",
            ..Default::default()
        },
    );
    // LDPSW post-index: opc=01 101 0 001 L=1 imm7=2 Rt2=1 Rn=2 Rt=0.
    check(
        0x68c1_0440,
        Expect {
            class: Class::GprPair,
            base: Base::X(2),
            writeback: Writeback::PostImm(8),
            elements: vec![
                el(0, 4, gpr(0, LoadExt::Sign64)),
                el(4, 4, gpr(1, LoadExt::Sign64)),
            ],
            form: Form::Pair,
            text: "ldpsw x0, x1, [x2], #8",
            ..Default::default()
        },
    );
    // STNP Qt: opc=10 101 1 000 L=0 imm7=2 Rt2=1 Rn=0 Rt=0; offset = 2 * 16.
    check(
        0xac01_0400,
        Expect {
            class: Class::FpPair,
            op: Op::Store,
            base: Base::X(0),
            offset: Offset::Imm(32),
            elements: vec![el(0, 16, v(0, 0)), el(16, 16, v(1, 0))],
            form: Form::PairNonTemporal,
            text: "stnp q0, q1, [x0, #32]",
            ..Default::default()
        },
    );
    // LDP Wt: opc=00 101 0 010 L=1 imm7=-64 Rt2=4 Rn=5 Rt=3.
    check(
        0x2960_10a3,
        Expect {
            class: Class::GprPair,
            base: Base::X(5),
            offset: Offset::Imm(-256),
            elements: vec![el(0, 4, x(3)), el(4, 4, x(4))],
            form: Form::Pair,
            text: "ldp w3, w4, [x5, #-256]",
            ..Default::default()
        },
    );
}

// ---- SIMD structures ----

#[test]
fn simd_multiple() {
    // LD4 (multiple structures) post-index immediate: 0 Q=1 0011001 L=1 0 Rm=11111
    // opcode=0000 size=00 Rn=1 Rt=0. Element e of structure i: V[i % 4] lane
    // i / 4, at offset i (the pseudocode's r/e/s loop with selem = 4).
    let elements = (0..64u8)
        .map(|i| el(u16::from(i), 1, v(i % 4, i / 4)))
        .collect::<Vec<_>>();
    check(
        0x4cdf_0020,
        Expect {
            class: Class::SimdMultiple,
            writeback: Writeback::PostImm(64),
            elements,
            vec_write: VecWrite::ZeroThenLanes,
            form: Form::Structure,
            text: "ld4 {v0.16b-v3.16b}, [x1], #64",
            ..Default::default()
        },
    );
    // LD1 (multiple structures), two registers: 0 Q=1 0011000 L=1 000000
    // opcode=1010 size=10 Rn=0 Rt=0: v0 lanes 0-3 then v1 lanes 0-3.
    let elements = (0..8u8)
        .map(|i| el(u16::from(i) * 4, 4, v(i / 4, i % 4)))
        .collect::<Vec<_>>();
    check(
        0x4c40_a800,
        Expect {
            class: Class::SimdMultiple,
            base: Base::X(0),
            elements,
            vec_write: VecWrite::ZeroThenLanes,
            form: Form::Structure,
            text: "ld1 {v0.4s, v1.4s}, [x0]",
            ..Default::default()
        },
    );
    // ST2 (multiple structures) .2d, register post-index, registers wrap
    // v31 -> v0: 0 1 0011001 0 0 Rm=3 1000 11 Rn=31 Rt=31.
    check(
        0x4c83_8fff,
        Expect {
            class: Class::SimdMultiple,
            op: Op::Store,
            base: Base::Sp,
            writeback: Writeback::PostReg(3),
            elements: vec![
                el(0, 8, v(31, 0)),
                el(8, 8, v(0, 0)),
                el(16, 8, v(31, 1)),
                el(24, 8, v(0, 1)),
            ],
            form: Form::Structure,
            text: "st2 {v31.2d, v0.2d}, [sp], x3",
            ..Default::default()
        },
    );
}

#[test]
fn simd_single_and_replicate() {
    // ST3 (single structure) B lane 9: 0 Q=1 0011011 L=0 R=0 Rm=11111 opcode=001
    // S=0 size=01 Rn=1 Rt=0; index = Q:S:size = 1001.
    check(
        0x4d9f_2420,
        Expect {
            class: Class::SimdSingle,
            op: Op::Store,
            writeback: Writeback::PostImm(3),
            elements: vec![el(0, 1, v(0, 9)), el(1, 1, v(1, 9)), el(2, 1, v(2, 9))],
            form: Form::Structure,
            text: "st3 {v0.b-v2.b}[9], [x1], #3",
            ..Default::default()
        },
    );
    // LD2 (single structure) D lane 1, register post-index: 0 1 0011011 1 1 Rm=2
    // opcode=100 S=0 size=01 Rn=1 Rt=30.
    check(
        0x4de2_843e,
        Expect {
            class: Class::SimdSingle,
            writeback: Writeback::PostReg(2),
            elements: vec![el(0, 8, v(30, 1)), el(8, 8, v(31, 1))],
            vec_write: VecWrite::MergeLanes,
            form: Form::Structure,
            text: "ld2 {v30.d, v31.d}[1], [x1], x2",
            ..Default::default()
        },
    );
    // LD4R .8h post-index immediate: 0 1 0011011 1 1 11111 111 0 01 Rn=1 Rt=0.
    check(
        0x4dff_e420,
        Expect {
            class: Class::SimdSingle,
            writeback: Writeback::PostImm(8),
            elements: vec![
                el(0, 2, v(0, 0)),
                el(2, 2, v(1, 0)),
                el(4, 2, v(2, 0)),
                el(6, 2, v(3, 0)),
            ],
            vec_write: VecWrite::Replicate { bytes: 16 },
            form: Form::Structure,
            text: "ld4r {v0.8h-v3.8h}, [x1], #8",
            ..Default::default()
        },
    );
    // LD1R .1d (Q=0, size=11): 0 0 0011010 1 0 00000 110 0 11 Rn=1 Rt=0.
    check(
        0x0d40_cc20,
        Expect {
            class: Class::SimdSingle,
            elements: vec![el(0, 8, v(0, 0))],
            vec_write: VecWrite::Replicate { bytes: 8 },
            form: Form::Structure,
            text: "ld1r {v0.1d}, [x1]",
            ..Default::default()
        },
    );
}

// ---- exclusives, ordered, RCpc ----

#[test]
fn exclusives_and_ordered() {
    // LDXR Wt: 10 001000 0 1 0 11111 0 11111 Rn=1 Rt=0.
    check(
        0x885f_7c20,
        Expect {
            class: Class::Exclusive,
            op: Op::LoadExclusive,
            elements: vec![el(0, 4, x(0))],
            align: 4,
            form: Form::Exclusive,
            text: "ldxr w0, [x1]",
            ..Default::default()
        },
    );
    // STLXR Ws=2, Xt=0: 11 001000 0 0 0 Rs=2 1 11111 Rn=1 Rt=0.
    check(
        0xc802_fc20,
        Expect {
            class: Class::Exclusive,
            op: Op::StoreExclusive { s: 2 },
            elements: vec![el(0, 8, x(0))],
            align: 8,
            release: true,
            form: Form::Exclusive,
            text: "stlxr w2, x0, [x1]",
            ..Default::default()
        },
    );
    // LDAXP Xt, Xt2: 11 001000 0 1 1 11111 1 Rt2=1 Rn=2 Rt=0: 16-byte aligned.
    check(
        0xc87f_8440,
        Expect {
            class: Class::Exclusive,
            op: Op::LoadExclusive,
            base: Base::X(2),
            elements: vec![el(0, 8, x(0)), el(8, 8, x(1))],
            align: 16,
            acquire: true,
            form: Form::Exclusive,
            text: "ldaxp x0, x1, [x2]",
            ..Default::default()
        },
    );
    // STLRB: 00 001000 1 0 0 11111 1 11111 Rn=1 Rt=0.
    check(
        0x089f_fc20,
        Expect {
            op: Op::Store,
            elements: vec![el(0, 1, x(0))],
            align: 1,
            release: true,
            form: Form::Ordered,
            text: "stlrb w0, [x1]",
            ..Default::default()
        },
    );
    // LDLARH: 01 001000 1 1 0 11111 0 11111 Rn=31 Rt=3.
    check(
        0x48df_7fe3,
        Expect {
            base: Base::Sp,
            elements: vec![el(0, 2, x(3))],
            align: 2,
            acquire: true,
            form: Form::LimitedOrdered,
            text: "ldlarh w3, [sp]",
            ..Default::default()
        },
    );
    // LDAPR Xt (FEAT_LRCPC): 11 111000 1 0 1 11111 1 100 00 Rn=1 Rt=0.
    check(
        0xf8bf_c020,
        Expect {
            elements: vec![el(0, 8, x(0))],
            align: 8,
            acquire: true,
            form: Form::AcquirePc,
            text: "ldapr x0, [x1]",
            ..Default::default()
        },
    );
    // LDAPURSH Wt (FEAT_LRCPC2): 01 011001 opc=11 0 imm9=-2 00 Rn=1 Rt=0.
    check(
        0x59df_e020,
        Expect {
            offset: Offset::Imm(-2),
            elements: vec![el(0, 2, gpr(0, LoadExt::Sign32))],
            align: 2,
            acquire: true,
            form: Form::AcquirePcUnscaled,
            text: "ldapursh w0, [x1, #-2]",
            ..Default::default()
        },
    );
    // STLUR Xt: 11 011001 opc=00 0 imm9=255 00 Rn=1 Rt=0.
    check(
        0xd90f_f020,
        Expect {
            op: Op::Store,
            offset: Offset::Imm(255),
            elements: vec![el(0, 8, x(0))],
            align: 8,
            release: true,
            form: Form::AcquirePcUnscaled,
            text: "stlur x0, [x1, #255]",
            ..Default::default()
        },
    );
}

// ---- atomics, CAS ----

#[test]
fn atomics() {
    // LDADDAL Xs=1, Xt=2: 11 111000 A=1 R=1 1 Rs=1 o3=0 opc=000 00 Rn=31 Rt=2.
    check(
        0xf8e1_03e2,
        Expect {
            class: Class::Atomic,
            op: Op::Atomic {
                op: AtomicOp::Add,
                s: 1,
            },
            base: Base::Sp,
            elements: vec![el(0, 8, x(2))],
            align: 8,
            acquire: true,
            release: true,
            form: Form::Atomic,
            text: "ldaddal x1, x2, [sp]",
            ..Default::default()
        },
    );
    // STADD Ws=1 (LDADD with Rt = 31, A = 0): 10 111000 0 0 1 Rs=1 0 000 00 Rn=2 Rt=31.
    check(
        0xb821_005f,
        Expect {
            class: Class::Atomic,
            op: Op::Atomic {
                op: AtomicOp::Add,
                s: 1,
            },
            base: Base::X(2),
            elements: vec![el(0, 4, x(31))],
            align: 4,
            form: Form::Atomic,
            text: "stadd w1, [x2]",
            ..Default::default()
        },
    );
    // LDADDAH with Rt = WZR: the acquire is dropped ("A == '1' && Rt != '11111'").
    check(
        0x78a1_005f,
        Expect {
            class: Class::Atomic,
            op: Op::Atomic {
                op: AtomicOp::Add,
                s: 1,
            },
            base: Base::X(2),
            elements: vec![el(0, 2, x(31))],
            align: 2,
            form: Form::Atomic,
            text: "ldaddah w1, wzr, [x2]",
            ..Default::default()
        },
    );
    // SWPLB: 00 111000 0 1 1 Rs=3 1 000 00 Rn=1 Rt=4.
    check(
        0x3863_8024,
        Expect {
            class: Class::Atomic,
            op: Op::Atomic {
                op: AtomicOp::Swp,
                s: 3,
            },
            elements: vec![el(0, 1, x(4))],
            align: 1,
            release: true,
            form: Form::Atomic,
            text: "swplb w3, w4, [x1]",
            ..Default::default()
        },
    );
    // LDUMINA Wt: 10 111000 1 0 1 Rs=5 0 111 00 Rn=1 Rt=6.
    check(
        0xb8a5_7026,
        Expect {
            class: Class::Atomic,
            op: Op::Atomic {
                op: AtomicOp::Umin,
                s: 5,
            },
            elements: vec![el(0, 4, x(6))],
            align: 4,
            acquire: true,
            form: Form::Atomic,
            text: "ldumina w5, w6, [x1]",
            ..Default::default()
        },
    );
}

#[test]
fn compare_and_swap() {
    // CASAL Xs=0, Xt=1: 11 001000 1 1 1 Rs=0 1 11111 Rn=2 Rt=1.
    check(
        0xc8e0_fc41,
        Expect {
            class: Class::CompareAndSwap,
            op: Op::CompareAndSwap { s: 0 },
            base: Base::X(2),
            elements: vec![el(0, 8, x(1))],
            align: 8,
            acquire: true,
            release: true,
            form: Form::CompareAndSwap,
            text: "casal x0, x1, [x2]",
            ..Default::default()
        },
    );
    // CASP Ws=4, Wt=6: 0 0 001000 0 0 1 Rs=4 0 11111 Rn=8 Rt=6: two 4-byte
    // elements (Rt, Rt+1), 8-byte aligned.
    check(
        0x0824_7d06,
        Expect {
            class: Class::CompareAndSwap,
            op: Op::CompareAndSwap { s: 4 },
            base: Base::X(8),
            elements: vec![el(0, 4, x(6)), el(4, 4, x(7))],
            align: 8,
            form: Form::CompareAndSwap,
            text: "casp w4, w5, w6, w7, [x8]",
            ..Default::default()
        },
    );
    // CASB: 00 001000 1 0 1 Rs=2 0 11111 Rn=1 Rt=3.
    check(
        0x08a2_7c23,
        Expect {
            class: Class::CompareAndSwap,
            op: Op::CompareAndSwap { s: 2 },
            elements: vec![el(0, 1, x(3))],
            align: 1,
            form: Form::CompareAndSwap,
            text: "casb w2, w3, [x1]",
            ..Default::default()
        },
    );
}

#[test]
fn dc_zva() {
    // SYS #3, C7, C4, #1, X3.
    check(
        0xd50b_7423,
        Expect {
            class: Class::DcZva,
            op: Op::ZeroBlock,
            base: Base::X(3),
            form: Form::DcZva,
            text: "dc zva, x3",
            ..Default::default()
        },
    );
    // Xt = 31 names XZR.
    check(
        0xd50b_743f,
        Expect {
            class: Class::DcZva,
            op: Op::ZeroBlock,
            base: Base::X(31),
            form: Form::DcZva,
            text: "dc zva, xzr",
            ..Default::default()
        },
    );
}

#[test]
fn unsupported_words() {
    for word in [
        0xf980_0020, // PRFM (immediate): a prefetch cannot fault
        0xf880_0020, // PRFUM
        0xd800_0040, // PRFM (literal)
        0xe900_0400, // STP with opc = 11: unallocated
        0x6900_0400, // opc = 01, L = 0: STGP (FEAT_MTE), not emulated
        0x6840_0400, // LDPSW no-allocate: unallocated
        0x0825_7d06, // CASP with odd Rs: UNDEFINED
        0x0824_7d07, // CASP with odd Rt: UNDEFINED
        0x08a2_0023, // CAS with Rt2 != 11111: not CAS
        0xf862_0820, // LDR (register) option = 000: UNDEFINED
        0xb8c0_0420, // LDRSW post-index size=10 opc=11: unallocated
        0x0c40_8c00, // LD2 .1d: reserved
        0x0d40_8820, // LD1 single structure .s with size = 10: UNDEFINED
        0x0d00_c020, // ST1R does not exist (replicate with L = 0)
        0x0c60_0000, // multiple structures without post-index, bit 21 set
        0xf820_0420, // LDRAA (FEAT_PAuth)
        0x3c20_0020, // atomic space with V = 1: unallocated
        0xf83f_d020, // LD64B-space (o3=1, opc=101)
        0xd503_201f, // NOP
        0xd50b_7e20, // DC CIVAC (cannot be trapped as a data abort to emulate)
        0x0000_0000, // UDF #0
        0xffff_ffff,
    ] {
        unsupported(word);
    }
}

#[test]
fn constrained_unpredictable_words_are_decoded() {
    // The CONSTRAINED UNPREDICTABLE overlaps decode to the instruction; the
    // emulator then takes a permitted behaviour other than UNDEFINED
    // (docs/decoder.md, "CONSTRAINED UNPREDICTABLE encodings").
    for (word, text) in [
        (0xf840_8421u32, "ldr x1, [x1], #8"),   // WBOVERLAPLD
        (0xa8c1_0422, "ldp x2, x1, [x1], #16"), // WBOVERLAPLD
        (0xa940_0822, "ldp x2, x2, [x1]"),      // LDPOVERLAP
        (0x887f_0020, "ldxp w0, w0, [x1]"),     // LDPOVERLAP
        (0x8800_7c20, "stxr w0, w0, [x1]"),     // DATAOVERLAP
        (0x8801_7c20, "stxr w1, w0, [x1]"),     // BASEOVERLAP
    ] {
        let d = decode(word).map(|i| i.to_string());
        assert_eq!(d.as_deref(), Ok(text), "{word:#010x}");
    }
}

#[test]
fn sbo_fields_are_ignored() {
    // LDXR with Rs = 0 and Rt2 = 0 instead of the should-be-one 11111: decoded
    // as LDXR (the CPU did not take it as UNDEFINED: it took a data abort).
    let a = decode(0x8840_0020).map(|i| i.to_string());
    assert_eq!(a.as_deref(), Ok("ldxr w0, [x1]"));
    // LDAPR with Rs != 11111.
    let b = decode(0xf8a0_c020).map(|i| i.to_string());
    assert_eq!(b.as_deref(), Ok("ldapr x0, [x1]"));
}

#[test]
fn element_capacity_is_enough() {
    // LD1 {v0.16b-v3.16b} and LD4 .16b are the largest: 64 one-byte elements.
    for word in [0x4c40_2000u32, 0x4c40_0000] {
        let insn = decode(word).expect("LD1/LD4 .16b");
        assert_eq!(insn.elements.len(), MAX_ELEMENTS);
        assert_eq!(insn.elements.total_bytes(), 64);
    }
}

/// Never a panic: a strided walk over all 2^32 words (stride 251, about 17
/// million words; 251 is odd, so every residue class of the low bits is hit),
/// rendering every decoded word too.
#[test]
fn strided_walk_never_panics() {
    let mut decoded = 0u64;
    let mut text = String::new();
    let mut word: u32 = 0;
    loop {
        if let Ok(insn) = decode(word) {
            decoded += 1;
            text.clear();
            use std::fmt::Write as _;
            write!(text, "{insn}").expect("Display");
            assert!(!text.is_empty());
            assert!(insn.elements.len() <= MAX_ELEMENTS);
        }
        match word.checked_add(251) {
            Some(w) => word = w,
            None => break,
        }
    }
    // About 2^32 / 251 words, of which the load/store space (a quarter of all
    // words) holds several hundred thousand valid ones.
    assert!(decoded > 500_000, "only {decoded} decoded");
}
