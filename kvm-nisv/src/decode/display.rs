// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Arm assembly syntax for [`Insn`].
//!
//! The text is derived from the decoded fields (operation, elements, base, offset,
//! writeback, ordering), not re-decoded from the word: comparing it with an
//! independent disassembler therefore checks the semantics the emulator uses.
//! Only [`Form`] (and, for the LSE atomics, the A/R bits whose acquire effect the
//! architecture drops when Rt is XZR) come from the encoding.
//!
//! Immediates are decimal; register lists of more than two consecutive registers
//! use the range syntax `{v0.16b-v3.16b}` (as GNU objdump prints them); literal
//! loads show the PC-relative offset as `#imm`.

use core::fmt::{self, Display, Formatter, Write};

use super::types::*;

/// A general-purpose register name: `x<n>`/`w<n>`, 31 = `xzr`/`wzr`.
struct Gpr {
    n: u8,
    x: bool,
}

impl Display for Gpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match (self.n, self.x) {
            (31, true) => f.write_str("xzr"),
            (31, false) => f.write_str("wzr"),
            (n, true) => write!(f, "x{n}"),
            (n, false) => write!(f, "w{n}"),
        }
    }
}

/// The scalar SIMD&FP register prefix for an access size.
fn fp_prefix(size: u8) -> char {
    match size {
        1 => 'b',
        2 => 'h',
        4 => 's',
        8 => 'd',
        _ => 'q',
    }
}

/// The lane-size letter of a vector arrangement.
fn lane_letter(size: u8) -> char {
    match size {
        1 => 'b',
        2 => 'h',
        4 => 's',
        _ => 'd',
    }
}

/// Name of a transfer register as the assembler shows it.
fn slot_name(e: &Element, f: &mut Formatter<'_>) -> fmt::Result {
    match e.reg {
        RegSlot::Gpr { n, ext } => Gpr {
            n,
            x: e.size == 8 || ext == LoadExt::Sign64,
        }
        .fmt(f),
        RegSlot::Vec { n, .. } => write!(f, "{}{n}", fp_prefix(e.size)),
    }
}

/// Whether GPR transfers of this element use X registers.
fn is_x(e: &Element) -> bool {
    matches!(
        e.reg,
        RegSlot::Gpr {
            ext: LoadExt::Sign64,
            ..
        }
    ) || e.size == 8
}

/// The register number of an element.
fn slot_reg(e: &Element) -> u8 {
    match e.reg {
        RegSlot::Gpr { n, .. } | RegSlot::Vec { n, .. } => n,
    }
}

/// `b`/`h`/`sb`/`sh`/`sw`/`` suffix of the single GPR mnemonics.
fn gpr_suffix(e: &Element, load: bool) -> &'static str {
    let sign = matches!(
        e.reg,
        RegSlot::Gpr {
            ext: LoadExt::Sign32 | LoadExt::Sign64,
            ..
        }
    );
    match (e.size, load && sign) {
        (1, false) => "b",
        (2, false) => "h",
        (1, true) => "sb",
        (2, true) => "sh",
        (4, true) => "sw",
        _ => "",
    }
}

/// `b`/`h` size suffix of the exclusive, ordered and atomic mnemonics.
fn bh_suffix(size: u8) -> &'static str {
    match size {
        1 => "b",
        2 => "h",
        _ => "",
    }
}

/// The `a`/`l`/`al` ordering suffix.
fn order_suffix(acquire: bool, release: bool) -> &'static str {
    match (acquire, release) {
        (false, false) => "",
        (true, false) => "a",
        (false, true) => "l",
        (true, true) => "al",
    }
}

fn base_name(base: Base, f: &mut Formatter<'_>) -> fmt::Result {
    match base {
        Base::Sp => f.write_str("sp"),
        Base::X(n) => Gpr { n, x: true }.fmt(f),
        Base::Pc => f.write_str("pc"),
    }
}

impl Insn {
    fn first(&self) -> Element {
        self.elements
            .as_slice()
            .first()
            .copied()
            .unwrap_or(Element {
                offset: 0,
                size: 8,
                reg: RegSlot::Gpr {
                    n: 31,
                    ext: LoadExt::Zero,
                },
            })
    }

    fn second(&self) -> Element {
        self.elements
            .as_slice()
            .get(1)
            .copied()
            .unwrap_or_else(|| self.first())
    }

    fn is_load(&self) -> bool {
        matches!(self.op, Op::Load | Op::LoadExclusive)
    }

    /// The address operand, including post-index.
    fn fmt_address(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.base == Base::Pc {
            return match self.offset {
                Offset::Imm(i) => write!(f, "#{i}"),
                Offset::Reg { .. } => f.write_str("<invalid>"),
            };
        }
        f.write_char('[')?;
        base_name(self.base, f)?;
        match self.offset {
            Offset::Imm(0) if self.writeback != Writeback::Pre => {}
            Offset::Imm(i) => write!(f, ", #{i}")?,
            Offset::Reg { m, extend, shift } => {
                let x = matches!(extend, Extend::Lsl | Extend::Sxtx);
                write!(f, ", {}", Gpr { n: m, x })?;
                let show = shift != 0 || self.form == Form::PlainShift0;
                match extend {
                    Extend::Lsl if show => write!(f, ", lsl #{shift}")?,
                    Extend::Lsl => {}
                    _ => {
                        let name = match extend {
                            Extend::Uxtw => "uxtw",
                            Extend::Sxtw => "sxtw",
                            _ => "sxtx",
                        };
                        write!(f, ", {name}")?;
                        if show {
                            write!(f, " #{shift}")?;
                        }
                    }
                }
            }
        }
        f.write_char(']')?;
        match self.writeback {
            Writeback::None => Ok(()),
            Writeback::Pre => f.write_char('!'),
            Writeback::PostImm(i) => write!(f, ", #{i}"),
            Writeback::PostReg(m) => write!(f, ", {}", Gpr { n: m, x: true }),
        }
    }

    /// Register list `{v0.16b, v1.16b}` / `{v0.16b-v3.16b}` with an optional lane.
    fn fmt_vec_list(
        &self,
        f: &mut Formatter<'_>,
        regs: &[u8],
        arrangement: (u8, char),
        lane: Option<u8>,
    ) -> fmt::Result {
        let arr = |f: &mut Formatter<'_>| -> fmt::Result {
            if arrangement.0 != 0 {
                write!(f, ".{}{}", arrangement.0, arrangement.1)
            } else {
                write!(f, ".{}", arrangement.1)
            }
        };
        f.write_char('{')?;
        let consecutive = regs.windows(2).all(|w| match w {
            [a, b] => a.wrapping_add(1) == *b,
            _ => true,
        });
        match (regs.first(), regs.last()) {
            (Some(first), Some(last)) if regs.len() > 2 && consecutive => {
                write!(f, "v{first}")?;
                arr(f)?;
                write!(f, "-v{last}")?;
                arr(f)?;
            }
            _ => {
                for (i, r) in regs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "v{r}")?;
                    arr(f)?;
                }
            }
        }
        f.write_char('}')?;
        if let Some(lane) = lane {
            write!(f, "[{lane}]")?;
        }
        Ok(())
    }

    fn fmt_structure(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let elems = self.elements.as_slice();
        let first = self.first();
        // Distinct registers in order of first use (at most four).
        let mut regs = [0u8; 4];
        let mut nregs = 0usize;
        for e in elems {
            let r = slot_reg(e);
            if !regs.iter().take(nregs).any(|&x| x == r)
                && let Some(slot) = regs.get_mut(nregs)
            {
                *slot = r;
                nregs += 1;
            }
        }
        let regs = regs.get(..nregs).unwrap_or(&[]);
        let dir = if self.is_load() { "ld" } else { "st" };
        let letter = lane_letter(first.size);
        match self.class {
            Class::SimdMultiple => {
                // LD1 of several registers fills one register after the other;
                // LDn (n > 1) interleaves, so the second element is in another
                // register.
                let interleaved = elems
                    .get(1)
                    .is_some_and(|e| slot_reg(e) != slot_reg(&first));
                let per_reg = elems.len().checked_div(nregs).unwrap_or(0);
                // With one lane per register (.1d) LD1 of n registers and LDn
                // would coincide; LDn of .1d is reserved, so it is LD1.
                let selem = if interleaved && per_reg > 1 { nregs } else { 1 };
                let lanes = u8::try_from(per_reg).unwrap_or(0);
                write!(f, "{dir}{selem} ")?;
                self.fmt_vec_list(f, regs, (lanes, letter), None)?;
            }
            _ => {
                if let VecWrite::Replicate { bytes } = self.vec_write {
                    let lanes = bytes.checked_div(first.size).unwrap_or(0);
                    write!(f, "{dir}{}r ", elems.len())?;
                    self.fmt_vec_list(f, regs, (lanes, letter), None)?;
                } else {
                    let lane = match first.reg {
                        RegSlot::Vec { lane, .. } => lane,
                        RegSlot::Gpr { .. } => 0,
                    };
                    write!(f, "{dir}{} ", elems.len())?;
                    self.fmt_vec_list(f, regs, (0, letter), Some(lane))?;
                }
            }
        }
        f.write_str(", ")?;
        self.fmt_address(f)
    }
}

impl Display for Insn {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let e = self.first();
        let load = self.is_load();
        let ld = if load { "ld" } else { "st" };
        match self.form {
            Form::DcZva => {
                f.write_str("dc zva, ")?;
                return base_name(self.base, f);
            }
            Form::Structure => return self.fmt_structure(f),
            Form::Plain | Form::PlainShift0 | Form::Unscaled | Form::Unprivileged => {
                let mid = match self.form {
                    Form::Unscaled => "u",
                    Form::Unprivileged => "t",
                    _ => "",
                };
                let suffix = match e.reg {
                    RegSlot::Gpr { .. } => gpr_suffix(&e, load),
                    RegSlot::Vec { .. } => "",
                };
                write!(f, "{ld}{mid}r{suffix} ")?;
                slot_name(&e, f)?;
            }
            Form::Pair | Form::PairNonTemporal => {
                let nt = if self.form == Form::PairNonTemporal {
                    "n"
                } else {
                    ""
                };
                let sw = if matches!(
                    e.reg,
                    RegSlot::Gpr {
                        ext: LoadExt::Sign64,
                        ..
                    }
                ) {
                    "sw"
                } else {
                    ""
                };
                write!(f, "{ld}{nt}p{sw} ")?;
                slot_name(&e, f)?;
                f.write_str(", ")?;
                slot_name(&self.second(), f)?;
            }
            Form::Exclusive => {
                let pair = self.elements.len() == 2;
                let order = if load {
                    if self.acquire { "a" } else { "" }
                } else if self.release {
                    "l"
                } else {
                    ""
                };
                let kind = if pair { "p" } else { "r" };
                let bh = if pair { "" } else { bh_suffix(e.size) };
                write!(f, "{ld}{order}x{kind}{bh} ")?;
                if let Op::StoreExclusive { s } = self.op {
                    write!(f, "{}, ", Gpr { n: s, x: false })?;
                }
                slot_name(&e, f)?;
                if pair {
                    f.write_str(", ")?;
                    slot_name(&self.second(), f)?;
                }
            }
            Form::Ordered | Form::LimitedOrdered | Form::AcquirePc => {
                let name = match (self.form, load) {
                    (Form::Ordered, true) => "ldar",
                    (Form::Ordered, false) => "stlr",
                    (Form::LimitedOrdered, true) => "ldlar",
                    (Form::LimitedOrdered, false) => "stllr",
                    _ => "ldapr",
                };
                write!(f, "{name}{} ", bh_suffix(e.size))?;
                slot_name(&e, f)?;
            }
            Form::AcquirePcUnscaled => {
                let name = if load { "ldapur" } else { "stlur" };
                write!(f, "{name}{} ", gpr_suffix(&e, load))?;
                slot_name(&e, f)?;
            }
            Form::Atomic => {
                let (op, s) = match self.op {
                    Op::Atomic { op, s } => (op, s),
                    _ => (AtomicOp::Swp, 31),
                };
                let name = match op {
                    AtomicOp::Add => "add",
                    AtomicOp::Clr => "clr",
                    AtomicOp::Eor => "eor",
                    AtomicOp::Set => "set",
                    AtomicOp::Smax => "smax",
                    AtomicOp::Smin => "smin",
                    AtomicOp::Umax => "umax",
                    AtomicOp::Umin => "umin",
                    AtomicOp::Swp => "swp",
                };
                // The encoding's A bit: `acquire` is A && Rt != 31.
                let a = self.word & (1 << 23) != 0;
                let x = is_x(&e);
                let bh = bh_suffix(e.size);
                let t = slot_reg(&e);
                if op != AtomicOp::Swp && !a && t == 31 {
                    // ST<op> alias (Arm ARM: "STADD ... LDADD with Rt = 31, A = 0").
                    write!(f, "st{name}{}{bh} ", order_suffix(false, self.release))?;
                    Gpr { n: s, x }.fmt(f)?;
                } else {
                    let pre = if op == AtomicOp::Swp { "" } else { "ld" };
                    write!(f, "{pre}{name}{}{bh} ", order_suffix(a, self.release))?;
                    write!(f, "{}, {}", Gpr { n: s, x }, Gpr { n: t, x })?;
                }
            }
            Form::CompareAndSwap => {
                let s = match self.op {
                    Op::CompareAndSwap { s } => s,
                    _ => 31,
                };
                let x = is_x(&e);
                let order = order_suffix(self.acquire, self.release);
                if self.elements.len() == 2 {
                    let s2 = s.wrapping_add(1) % 32;
                    write!(f, "casp{order} {}, {}, ", Gpr { n: s, x }, Gpr { n: s2, x })?;
                    slot_name(&e, f)?;
                    f.write_str(", ")?;
                    slot_name(&self.second(), f)?;
                } else {
                    write!(f, "cas{order}{} {}, ", bh_suffix(e.size), Gpr { n: s, x })?;
                    slot_name(&e, f)?;
                }
            }
        }
        f.write_str(", ")?;
        self.fmt_address(f)
    }
}
