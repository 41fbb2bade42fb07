// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Differential decoding against bad64 (Binary Ninja's A64 disassembler, its
//! decoder generated from the Arm ARM's ASL; see docs/decoder.md for the choice).
//!
//! For every word both decoders must agree on whether it is a load/store this
//! crate handles and, if so, on the full assembler text: mnemonic (operation,
//! size, sign extension, ordering, exclusive/atomic kind), every register, the
//! lane arrangement and count, base, offset/extend/shift, writeback and its
//! amount. Our text is rendered from the decoded fields (not from the word), so
//! text agreement is agreement on the semantics the emulator uses. Structural
//! invariants of the [`Insn`] are checked on top.
//!
//! * `random_load_store_words`: seeded random words from the load/store space
//!   (bits 27 = 1, 25 = 0) and the DC ZVA family. `KVM_NISV_DECODE_SEED` and
//!   `KVM_NISV_DECODE_COUNT` override the seed and the count (10 million).
//! * `exhaustive_small_classes`: every word of the exclusive/ordered/CAS,
//!   atomic, LRCPC2, SIMD single-structure and literal classes.
//! * `exhaustive_load_store_space` (ignored; `scripts/decode-exhaustive`): all
//!   2^30 words of the load/store space, on two threads.

// The reference decoders are not built for musl (see Cargo.toml).
#![cfg(not(target_env = "musl"))]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kvm_nisv::decode::{Class, Form, Insn, Op, VecWrite, Writeback, decode};

/// Mnemonics (after alias normalisation) of the instructions the crate handles.
fn handled_mnemonic(m: &str) -> bool {
    const EXACT: &[&str] = &[
        "ldr", "str", "ldrb", "strb", "ldrh", "strh", "ldrsb", "ldrsh", "ldrsw", "ldur", "stur",
        "ldurb", "sturb", "ldurh", "sturh", "ldursb", "ldursh", "ldursw", "ldtr", "sttr", "ldtrb",
        "sttrb", "ldtrh", "sttrh", "ldtrsb", "ldtrsh", "ldtrsw", "ldp", "stp", "ldpsw", "ldnp",
        "stnp", "ld1", "ld2", "ld3", "ld4", "st1", "st2", "st3", "st4", "ld1r", "ld2r", "ld3r",
        "ld4r", "ldxp", "stxp", "ldaxp", "stlxp", "casp", "caspa", "caspl", "caspal",
    ];
    if EXACT.contains(&m) {
        return true;
    }
    let bh = |rest: &str| matches!(rest, "" | "b" | "h");
    for p in [
        "ldxr", "stxr", "ldaxr", "stlxr", "ldar", "stlr", "ldlar", "stllr", "ldapr",
    ] {
        if let Some(rest) = m.strip_prefix(p)
            && bh(rest)
        {
            return true;
        }
    }
    for p in ["ldapur", "stlur"] {
        if let Some(rest) = m.strip_prefix(p)
            && matches!(rest, "" | "b" | "h" | "sb" | "sh" | "sw")
        {
            return true;
        }
    }
    for p in [
        "stadd", "stclr", "steor", "stset", "stsmax", "stsmin", "stumax", "stumin",
    ] {
        if let Some(rest) = m.strip_prefix(p)
            && (bh(rest) || bh(rest.strip_prefix('l').unwrap_or("-")))
        {
            return true;
        }
    }
    for p in [
        "ldadd", "ldclr", "ldeor", "ldset", "ldsmax", "ldsmin", "ldumax", "ldumin", "swp", "cas",
    ] {
        if let Some(rest) = m.strip_prefix(p) {
            for o in ["", "a", "l", "al"] {
                if let Some(r2) = rest.strip_prefix(o)
                    && bh(r2)
                {
                    return true;
                }
            }
        }
    }
    false
}

/// Normalise a disassembler's text: lower case, single spaces, no padding in
/// braces, hexadecimal immediates to signed decimal (`#0xfffffffffffffff0` and
/// `#-0x10` both become `#-16`), bare literal targets (the PC is 0) to
/// `#offset`, and `fp`/`lr` to `x29`/`x30`.
fn normalise(raw: &str) -> String {
    let mut squeezed = String::with_capacity(raw.len());
    for ch in raw.trim().chars() {
        let ch = if ch == '\t' {
            ' '
        } else {
            ch.to_ascii_lowercase()
        };
        if !(ch == ' ' && squeezed.ends_with(' ')) {
            squeezed.push(ch);
        }
    }
    // Lane indices without `#` (capstone prints `[#3]`), and no optional `#0`
    // after the extend of a byte access (Arm ARM syntax `<extend> {<amount>}`:
    // LLVM prints it, bad64 does not).
    let mut squeezed = squeezed.replace("{ ", "{").replace(" }", "}");
    for ext in ["uxtw", "sxtw", "sxtx"] {
        squeezed = squeezed.replace(&format!("{ext} #0]"), &format!("{ext}]"));
    }
    let mut out = String::with_capacity(squeezed.len());
    let mut rest = squeezed.as_str();
    while let Some(pos) = rest.find("0x") {
        let (head, tail) = rest.split_at(pos);
        let hex = &tail[2..];
        let digits = hex
            .find(|c: char| !c.is_ascii_hexdigit())
            .map_or(hex, |end| &hex[..end]);
        out.push_str(head);
        match u64::from_str_radix(digits, 16) {
            Ok(v) => {
                if !head.ends_with('#') && !head.ends_with("#-") {
                    out.push('#');
                }
                if head.ends_with('-') {
                    let _ = write!(out, "{v}");
                } else {
                    let _ = write!(out, "{}", v as i64);
                }
            }
            Err(_) => out.push_str("0x"),
        }
        rest = &hex[digits.len()..];
    }
    out.push_str(rest);
    out.replace("[#", "[")
        .split(' ')
        .map(|tok| {
            let (core, tail) = tok.split_at(tok.find([',', ']', '}']).unwrap_or(tok.len()));
            let (lead, name) = core.split_at(if core.starts_with('[') { 1 } else { 0 });
            match name {
                "fp" => format!("{lead}x29{tail}"),
                "lr" => format!("{lead}x30{tail}"),
                _ => tok.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A reference decoder.
#[derive(Clone, Copy)]
struct Reference {
    /// `None` if it rejects the word, else whether it is an instruction we
    /// handle (cheap: no text formatting where the decoder can avoid it).
    handled: fn(u32) -> Option<bool>,
    /// The normalised text, `None` if it rejects the word.
    text: fn(u32) -> Option<String>,
    /// Whether this is capstone (for its known errors).
    is_capstone: bool,
}

const BAD64: Reference = Reference {
    handled: bad64_handled,
    text: bad64_text,
    is_capstone: false,
};

const CAPSTONE_REF: Reference = Reference {
    handled: capstone_handled,
    text: capstone_text,
    is_capstone: true,
};

fn text_handled(t: &str) -> bool {
    handled_mnemonic(mnemonic_of(t)) || t.starts_with("dc zva, ")
}

fn bad64_handled(word: u32) -> Option<bool> {
    bad64_view(word, false).map(|(handled, _)| handled)
}

/// One bad64 decode: whether it is handled, and its text when handled and
/// `want_text` (the common agreeing case formats exactly once).
fn bad64_view(word: u32, want_text: bool) -> Option<(bool, Option<String>)> {
    let insn = bad64::decode(word, 0).ok()?;
    let mnemonic = insn.op().mnem();
    if mnemonic == "dc" {
        let text = normalise(&insn.to_string());
        return Some((text_handled(&text), Some(text)));
    }
    let handled = handled_mnemonic(mnemonic);
    let text = (handled && want_text).then(|| normalise(&insn.to_string()));
    Some((handled, text))
}

fn capstone_handled(word: u32) -> Option<bool> {
    capstone_text(word).map(|t| text_handled(&t))
}

/// Words a reference rejects although the Arm ARM allocates them (its known
/// errors, each explained in docs/decoder.md).
fn reference_rejects_valid(reference: Reference, word: u32) -> Option<&'static str> {
    if reference.is_capstone {
        let (n, t) = ((word >> 5) & 0x1f, word & 0x1f);
        // LDTR* (size 111 0 00 opc 0 imm9 10 Rn Rt, opc != 00) with Rn == Rt:
        // LDTR has no writeback (its decode sets wback = FALSE), so no
        // Unpredictable_WBOVERLAPLD applies.
        if word & 0x3f20_0c00 == 0x3800_0800 && (word >> 22) & 3 != 0 && n == t && n != 31 {
            return Some("capstone rejects LDTR* with Rn == Rt (no writeback: valid)");
        }
    }
    None
}

/// The primary reference, bad64.
fn bad64_text(word: u32) -> Option<String> {
    let insn = bad64::decode(word, 0).ok()?;
    Some(normalise(&insn.to_string()))
}

thread_local! {
    static CAPSTONE: capstone::Capstone = {
        use capstone::prelude::*;
        capstone::Capstone::new()
            .arm64()
            .mode(capstone::arch::arm64::ArchMode::Arm)
            .build()
            .expect("capstone")
    };
}

/// The secondary reference, capstone (LLVM's AArch64 tables).
fn capstone_text(word: u32) -> Option<String> {
    CAPSTONE.with(|cs| {
        let insns = cs.disasm_count(&word.to_le_bytes(), 0, 1).ok()?;
        let insn = insns.iter().next()?;
        let text = format!(
            "{} {}",
            insn.mnemonic().unwrap_or(""),
            insn.op_str().unwrap_or("")
        );
        Some(normalise(&text))
    })
}

/// Our text in the references' conventions: register ranges expanded, then the
/// same normalisation as theirs.
fn our_text(insn: &Insn) -> String {
    let mut text = insn.to_string();
    if text.contains('-') && text.contains('{') {
        text = expand_ranges(&text);
    }
    if text.contains(" #0]") {
        text = normalise(&text);
    }
    text
}

/// `{v0.16b-v3.16b}` -> `{v0.16b, v1.16b, v2.16b, v3.16b}`.
fn expand_ranges(text: &str) -> String {
    let (Some(open), Some(close)) = (text.find('{'), text.find('}')) else {
        return text.to_string();
    };
    let list = &text[open + 1..close];
    let Some((a, b)) = list.split_once('-') else {
        return text.to_string();
    };
    let parse = |s: &str| -> Option<(u32, String)> {
        let s = s.strip_prefix('v')?;
        let (n, arr) = s.split_once('.')?;
        Some((n.parse().ok()?, arr.to_string()))
    };
    let (Some((first, arr)), Some((last, _))) = (parse(a), parse(b)) else {
        return text.to_string();
    };
    let mut out = String::new();
    for (i, r) in (first..=last).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "v{r}.{arr}");
    }
    format!("{}{{{out}}}{}", &text[..open], &text[close + 1..])
}

/// Structural invariants every decoded instruction satisfies.
fn check_invariants(insn: &Insn) -> Result<(), String> {
    let elems = insn.elements.as_slice();
    let mut expect = 0u32;
    for e in elems {
        if u32::from(e.offset) != expect {
            return Err(format!("element offsets not contiguous: {elems:?}"));
        }
        if !matches!(e.size, 1 | 2 | 4 | 8 | 16) {
            return Err(format!("bad element size {}", e.size));
        }
        expect += u32::from(e.size);
    }
    if let Writeback::PostImm(_) | Writeback::PostReg(_) = insn.writeback
        && insn.offset != kvm_nisv::decode::Offset::Imm(0)
    {
        return Err("post-index with a non-zero offset".into());
    }
    match insn.class {
        Class::SimdMultiple | Class::SimdSingle => {
            if let Writeback::PostImm(i) = insn.writeback
                && i != i64::from(expect)
            {
                return Err(format!("post-index {i} != total bytes {expect}"));
            }
        }
        Class::DcZva => {
            if !elems.is_empty() || insn.op != Op::ZeroBlock {
                return Err("DC ZVA with elements".into());
            }
        }
        _ => {
            if elems.is_empty() {
                return Err("no elements".into());
            }
        }
    }
    // Fields the text does not show.
    let has_vec = elems
        .iter()
        .any(|e| matches!(e.reg, kvm_nisv::decode::RegSlot::Vec { .. }));
    let expect_vec_write = match (insn.op, has_vec, insn.class) {
        (Op::Load, true, Class::SimdSingle) => {
            let replicate = elems
                .iter()
                .all(|e| matches!(e.reg, kvm_nisv::decode::RegSlot::Vec { lane: 0, .. }))
                && insn
                    .to_string()
                    .split(' ')
                    .next()
                    .is_some_and(|m| m.ends_with('r'));
            if replicate {
                insn.vec_write
            } else {
                VecWrite::MergeLanes
            }
        }
        (Op::Load, true, _) => VecWrite::ZeroThenLanes,
        _ => VecWrite::None,
    };
    if insn.vec_write != expect_vec_write
        || matches!(insn.vec_write, VecWrite::Replicate { bytes } if bytes != 8 && bytes != 16)
    {
        return Err(format!("vec_write {:?}", insn.vec_write));
    }
    if insn.unprivileged != (insn.form == Form::Unprivileged) {
        return Err("unprivileged flag".into());
    }
    let load = matches!(insn.op, Op::Load | Op::LoadExclusive);
    match insn.form {
        Form::Ordered | Form::LimitedOrdered | Form::AcquirePc | Form::AcquirePcUnscaled
            if insn.acquire != load || insn.release == load =>
        {
            return Err("ordering of an acquire/release form".into());
        }
        Form::Atomic => {
            // "A == '1' && Rt != '11111'" (LD<op>/SWP decode).
            let a = insn.word & (1 << 23) != 0;
            let rt31 = insn.word & 0x1f == 0x1f;
            if insn.acquire != (a && !rt31) || insn.release != (insn.word & (1 << 22) != 0) {
                return Err("atomic ordering".into());
            }
        }
        _ => {}
    }
    let needs_align = matches!(
        insn.class,
        Class::Exclusive | Class::Atomic | Class::CompareAndSwap
    ) || insn.acquire
        || insn.release;
    let aligned = if needs_align { expect } else { 0 };
    if u32::from(insn.align) != aligned {
        return Err(format!("align {} expected {aligned}", insn.align));
    }
    Ok(())
}

/// The CONSTRAINED UNPREDICTABLE cases for which we decode the word and take a
/// permitted behaviour other than UNDEFINED (docs/decoder.md): a reference may
/// reject them (LLVM rejects some). Computed from the encoding fields,
/// independently of both decoders.
fn constrained_unpredictable(word: u32) -> Option<&'static str> {
    let field = |lo: u32| (word >> lo) & 0x1f;
    let bit = |n: u32| (word >> n) & 1 == 1;
    let (s, t2, n, t) = (field(16), field(10), field(5), field(0));
    // Load/store exclusive: size 001000 o2 L o1 Rs o0 Rt2 Rn Rt.
    if word & 0x3f00_0000 == 0x0800_0000 && !bit(23) {
        let pair = bit(21) && bit(31);
        let single = !bit(21);
        if !bit(22) && (pair || single) && (s == t || (pair && s == t2) || (s == n && n != 31)) {
            return Some("STXR/STXP status register overlaps Rt/Rt2/Rn (DATAOVERLAP/BASEOVERLAP)");
        }
        if bit(22) && pair && t == t2 {
            return Some("LDXP/LDAXP with Rt == Rt2 (LDPOVERLAP)");
        }
    }
    // Load/store pair, L = 1: opc 101 V 0 mode L imm7 Rt2 Rn Rt.
    if word & 0x3a40_0000 == 0x2840_0000 {
        if t == t2 {
            return Some("LDP/LDNP/LDPSW with Rt == Rt2 (LDPOVERLAP)");
        }
        let wback = bit(23);
        if wback && !bit(26) && (n == t || n == t2) && n != 31 {
            return Some("LDP/LDPSW writeback with Rn == Rt or Rt2 (WBOVERLAPLD)");
        }
    }
    // Load register pre/post-index, GPR: size 111 0 00 opc 0 imm9 x1 Rn Rt, opc != 00.
    if word & 0x3f20_0400 == 0x3800_0400 && (word >> 22) & 3 != 0 && n == t && n != 31 {
        return Some("LDR pre/post-index with Rn == Rt (WBOVERLAPLD)");
    }
    None
}

/// Words we decode that a reference may reject: the CONSTRAINED UNPREDICTABLE
/// cases where we take a permitted behaviour other than UNDEFINED
/// (docs/decoder.md). LLVM (capstone) rejects them; bad64 accepts them.
fn documented_accepted(word: u32) -> Option<&'static str> {
    if let Some(why) = constrained_unpredictable(word) {
        return Some(why);
    }
    let field = |lo: u32| (word >> lo) & 0x1f;
    let bit = |n: u32| (word >> n) & 1 == 1;
    let (s, t2, n, t) = (field(16), field(10), field(5), field(0));
    // Store with writeback, GPR, Rn == Rt: STR* pre/post-index
    // (size 111 0 00 opc=00 0 imm9 x1 Rn Rt) and STP pre/post-index.
    let str_wb = word & 0x3fe0_0400 == 0x3800_0400;
    let stp_wb = word & 0x3e40_0000 == 0x2800_0000 && bit(23) && !bit(26);
    if (str_wb && n == t || stp_wb && (n == t || n == t2)) && n != 31 {
        return Some("store writeback with Rn == Rt/Rt2 (WBOVERLAPST): Constraint_NONE");
    }
    // Should-be-one fields of the exclusive/ordered forms and LDAPR.
    if word & 0x3f00_0000 == 0x0800_0000 && !(bit(21) && (bit(23) || !bit(31))) {
        let pair = bit(21);
        let rs_sbo = bit(22) || bit(23);
        if (rs_sbo && s != 31) || (!pair && t2 != 31) {
            return Some("should-be-one Rs/Rt2 field not all ones: decoded as if ones");
        }
    }
    if word & 0x3fe0_fc00 == 0x38a0_c000 && s != 31 {
        return Some("should-be-one Rs field not all ones: decoded as if ones");
    }
    None
}

/// The outcome of comparing one word.
enum Outcome {
    /// Both say "not ours".
    Neither,
    /// Both decode it, identically; the class.
    Agree(Class),
    /// A deliberate, documented difference (the reason).
    Documented(&'static str),
    /// A disagreement: a grouping key and a description.
    Disagree((String, String)),
}

fn mnemonic_of(text: &str) -> &str {
    text.split(' ').next().unwrap_or("")
}

fn compare(word: u32, reference: Reference) -> Outcome {
    let ours = decode(word);
    let (ref_handled, early_text) = if reference.is_capstone {
        ((reference.handled)(word) == Some(true), None)
    } else {
        bad64_view(word, ours.is_ok()).map_or((false, None), |(h, t)| (h, t))
    };
    let theirs = || {
        early_text
            .clone()
            .or_else(|| (reference.text)(word))
            .unwrap_or_else(|| "undefined".to_string())
    };
    match (ours, ref_handled) {
        (Err(_), false) => Outcome::Neither,
        (Err(_), true) => {
            let theirs = theirs();
            Outcome::Disagree((
                format!("unsupported/{}", mnemonic_of(&theirs)),
                format!("{word:#010x}: ours Unsupported, reference `{theirs}`"),
            ))
        }
        (Ok(_), false) if documented_accepted(word).is_some() => {
            Outcome::Documented(documented_accepted(word).unwrap_or_default())
        }
        (Ok(_), false) if reference_rejects_valid(reference, word).is_some() => {
            Outcome::Documented(reference_rejects_valid(reference, word).unwrap_or_default())
        }
        (Ok(insn), false) => {
            let theirs = theirs();
            Outcome::Disagree((
                format!(
                    "{}/not-handled:{}",
                    mnemonic_of(&our_text(&insn)),
                    mnemonic_of(&theirs)
                ),
                format!("{word:#010x}: ours `{insn}`, reference `{theirs}` (not handled)"),
            ))
        }
        (Ok(insn), true) => {
            let mine = our_text(&insn);
            let theirs = theirs();
            if let Err(e) = check_invariants(&insn) {
                return Outcome::Disagree((
                    format!("invariant/{}", mnemonic_of(&mine)),
                    format!("{word:#010x}: `{insn}`: {e}"),
                ));
            }
            if insn.word != word {
                return Outcome::Disagree((
                    "word".to_string(),
                    format!("{word:#010x}: word field {:#x}", insn.word),
                ));
            }
            if mine == theirs {
                Outcome::Agree(insn.class)
            } else {
                Outcome::Disagree((
                    format!("text/{}/{}", mnemonic_of(&mine), mnemonic_of(&theirs)),
                    format!("{word:#010x}: ours `{mine}`, reference `{theirs}`"),
                ))
            }
        }
    }
}

/// Per-class agreement counts and the disagreements (first few kept).
struct Tally {
    reference: Reference,
    words: u64,
    neither: u64,
    agree: BTreeMap<Class, u64>,
    documented: BTreeMap<&'static str, u64>,
    disagree: u64,
    /// Disagreements grouped by (our mnemonic, reference mnemonic): count and
    /// the first example.
    samples: BTreeMap<String, (u64, String)>,
}

impl Tally {
    fn new(reference: Reference) -> Self {
        Tally {
            reference,
            words: 0,
            neither: 0,
            agree: BTreeMap::new(),
            documented: BTreeMap::new(),
            disagree: 0,
            samples: BTreeMap::new(),
        }
    }

    fn add(&mut self, word: u32) {
        self.words += 1;
        match compare(word, self.reference) {
            Outcome::Neither => self.neither += 1,
            Outcome::Agree(c) => *self.agree.entry(c).or_default() += 1,
            Outcome::Documented(why) => *self.documented.entry(why).or_default() += 1,
            Outcome::Disagree((key, d)) => {
                self.disagree += 1;
                let e = self.samples.entry(key).or_insert((0, d));
                e.0 += 1;
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.words += other.words;
        self.neither += other.neither;
        for (k, v) in other.agree {
            *self.agree.entry(k).or_default() += v;
        }
        for (k, v) in other.documented {
            *self.documented.entry(k).or_default() += v;
        }
        self.disagree += other.disagree;
        for (k, (n, d)) in other.samples {
            self.samples.entry(k).or_insert((0, d)).0 += n;
        }
    }

    fn report(&self, what: &str) -> String {
        let mut s = format!(
            "{what}: {} words, {} unsupported by both, {} disagreements\n",
            self.words, self.neither, self.disagree
        );
        for (k, v) in &self.agree {
            let _ = writeln!(s, "  {:<16} {v}", format!("{k:?}"));
        }
        for (k, v) in &self.documented {
            let _ = writeln!(s, "  documented difference: {k}: {v}");
        }
        for (k, (n, d)) in &self.samples {
            let _ = writeln!(s, "  DISAGREE {k} x{n}: e.g. {d}");
        }
        s
    }
}

/// SplitMix64: a small, well-known seeded generator (no extra dependency).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// `count` seeded random words from the load/store space and the DC ZVA family.
fn random_words(reference: Reference, seed: u64, count: u64) -> Tally {
    let mut rng = SplitMix64(seed);
    let mut tally = Tally::new(reference);
    for i in 0..count {
        let r = rng.next();
        // One word in 256 from the DC ZVA family (any Rt) and its neighbours
        // in the SYS space; the rest from the load/store space.
        let word = if i % 256 == 0 {
            0xd50b_7420 ^ ((r as u32) & 0x0000_f0ff)
        } else {
            ((r as u32) | 0x0800_0000) & !0x0200_0000
        };
        tally.add(word);
    }
    tally
}

fn seed() -> u64 {
    env_u64("KVM_NISV_DECODE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x6b76_6d2d_6e69_7376)
    })
}

#[test]
fn random_load_store_words() {
    let seed = seed();
    let count = env_u64("KVM_NISV_DECODE_COUNT").unwrap_or(10_000_000);
    eprintln!("random_load_store_words: KVM_NISV_DECODE_SEED={seed:#x} count={count}");
    let start = std::time::Instant::now();
    let tally = random_words(BAD64, seed, count);
    let report = tally.report(&format!("random vs bad64 (seed {seed:#x})"));
    eprintln!("{report}elapsed: {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(tally.disagree, 0, "{report}");
    assert!(tally.agree.len() >= 9, "too few classes seen: {report}");
}

/// The secondary reference, capstone, on a smaller random sample (it is about
/// twice as slow per word as bad64): a second, independent opinion (LLVM's
/// tables rather than the Arm ASL).
#[test]
fn random_load_store_words_capstone() {
    let seed = seed() ^ 0x5eed;
    let count = env_u64("KVM_NISV_DECODE_COUNT").map_or(1_000_000, |c| c / 10);
    eprintln!("random_load_store_words_capstone: seed {seed:#x} count={count}");
    let start = std::time::Instant::now();
    let tally = random_words(CAPSTONE_REF, seed, count);
    let report = tally.report(&format!("random vs capstone (seed {seed:#x})"));
    eprintln!("{report}elapsed: {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(tally.disagree, 0, "{report}");
}

/// Every word matching `pattern` under `mask` (the free bits enumerated).
fn enumerate(mask: u32, pattern: u32, tally: &mut Tally) {
    let free = !mask;
    // Walk the subsets of `free` (Gosper-free subset enumeration).
    let mut sub: u32 = 0;
    loop {
        tally.add(pattern | sub);
        if sub == free {
            break;
        }
        sub = (sub.wrapping_sub(free)) & free;
    }
}

#[test]
fn exhaustive_small_classes() {
    // (name, mask, pattern): the fixed bits of each class; the rest enumerated.
    let classes: &[(&str, u32, u32)] = &[
        // size 001000 o2 L o1 Rs o0 Rt2 Rn Rt: exclusives, ordered, CAS/CASP
        // with Rn fixed to x2 (Rn only names the base) -> 2^22 words.
        ("exclusive/ordered/cas", 0x3f00_03e0, 0x0800_0040),
        // size 111000 A R 1 Rs o3 opc 00 Rn Rt with Rn = sp: atomics and LDAPR.
        ("atomic/ldapr", 0x3f20_0fe0, 0x3820_03e0),
        // size 011001 opc 0 imm9 00 Rn Rt with Rt = x3: LDAPUR/STLUR.
        ("ldapur/stlur", 0x3f20_0c1f, 0x1900_0003),
        // 0 Q 0011010 L R 00000 opcode S size Rn Rt with Rn = x1: single
        // structure and LDnR, no offset.
        ("simd single", 0xbf80_03e0, 0x0d00_0020),
        // 0 Q 0011011 L R Rm opcode S size Rn Rt with Rn = x1, Rt = v30.
        ("simd single post", 0xbf80_03ff, 0x0d80_003e),
        // 0 Q 0011000 L 000000 opcode size Rn Rt with Rn = sp: multiple
        // structures, no offset.
        ("simd multiple", 0xbf80_03e0, 0x0c00_03e0),
        // 0 Q 0011001 L 0 Rm opcode size Rn Rt with Rn = x7.
        ("simd multiple post", 0xbf80_03e0, 0x0c80_00e0),
        // opc 011 V 00 imm19 Rt with Rt = x5: literals.
        ("literal", 0x3b00_001f, 0x1800_0005),
    ];
    let mut total = Tally::new(BAD64);
    let mut report = String::new();
    for &(name, mask, pattern) in classes {
        let mut t = Tally::new(BAD64);
        enumerate(mask, pattern, &mut t);
        report.push_str(&t.report(name));
        total.merge(t);
    }
    // DC ZVA and every other register of the same SYS encoding family.
    let mut t = Tally::new(BAD64);
    enumerate(0xffff_ffe0 & !0x0000_f000, 0xd50b_7420, &mut t);
    report.push_str(&t.report("dc zva / sys c7, cX"));
    total.merge(t);
    eprintln!("{report}");
    assert_eq!(total.disagree, 0, "{report}");
}

#[test]
#[ignore = "walks 2^30 words; run by scripts/decode-exhaustive"]
fn exhaustive_load_store_space() {
    let threads: u32 = env_u64("KVM_NISV_DECODE_THREADS").map_or(2, |t| t.clamp(1, 64) as u32);
    let start = std::time::Instant::now();
    // The load/store space: bit 27 = 1, bit 25 = 0, the other 30 bits free.
    let spread = |i: u32| -> u32 {
        (i & 0x01ff_ffff) | ((i & 0x0200_0000) << 1) | ((i >> 26) << 28) | 0x0800_0000
    };
    let chunks: u32 = 1024;
    let next = std::sync::atomic::AtomicU32::new(0);
    let tally = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut t = Tally::new(BAD64);
                    loop {
                        let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if c >= chunks {
                            break;
                        }
                        let per = (1u32 << 30) / chunks;
                        for i in c * per..(c + 1) * per {
                            t.add(spread(i));
                        }
                        if c % 64 == 63 {
                            eprintln!(
                                "  chunk {}/{chunks} done, {:.0} s, {} disagreements so far",
                                c + 1,
                                start.elapsed().as_secs_f64(),
                                t.disagree
                            );
                        }
                    }
                    t
                })
            })
            .collect();
        let mut all = Tally::new(BAD64);
        for h in handles {
            all.merge(h.join().expect("worker"));
        }
        all
    });
    let report = tally.report("exhaustive load/store space");
    eprintln!("{report}elapsed: {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(tally.words, 1 << 30);
    assert_eq!(tally.disagree, 0, "{report}");
}
