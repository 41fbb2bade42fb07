// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Exit accounting: how many MMIO and NISV exits each device saw, per guest
//! phase and per instruction class, and how long the VMM took to handle them.
//!
//! **What is timed**: the VMM's share of one exit, from `KVM_RUN` returning to
//! the handler being done (the next `KVM_RUN` follows at once). The kernel's
//! own exit and entry path is not included: it cannot be separated from guest
//! execution from userspace.
//!
//! **Phases**: a guest names what it is doing by writing up to 8 ASCII bytes to
//! the test device's `PHASE` register (docs/guest-interface.md); every exit is
//! counted under the phase current when it is recorded. Before the first write
//! the phase is `boot`. A phase's wall time runs from its first exit to the
//! first exit of the next phase (or to the time the table is made).
//!
//! The run loop calls [`record`] once per MMIO or NISV exit; the NISV handler
//! reports the class of the instruction it decoded with [`note_class`] and the
//! instruction it emulated with [`note_insn`] (thread-locals, so vCPU threads
//! never mix them up). NISV exits are also counted per instruction *form*: the
//! disassembly with registers reduced to their kind and immediates to `#imm`
//! (`ldp x, x, [x], #imm`), which tells a post-index pair from an offset one.
//! The table goes to stderr at exit ([`ExitStats::table`]).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kvm_nisv::decode::{Class, Insn};

/// The kind of exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitKind {
    /// `KVM_EXIT_MMIO` (the kernel decoded the access from its syndrome).
    Mmio,
    /// `KVM_EXIT_ARM_NISV` (no syndrome: kvm-nisv decoded the instruction).
    Nisv,
}

impl ExitKind {
    fn name(self) -> &'static str {
        match self {
            ExitKind::Mmio => "mmio",
            ExitKind::Nisv => "nisv",
        }
    }
}

/// What one row of the table counts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExitKey {
    /// The guest's phase tag (see [`phase_name`]).
    pub phase: u64,
    /// MMIO or NISV.
    pub kind: ExitKind,
    /// The device whose window holds the address, or `-`.
    pub device: String,
    /// For NISV exits, the decoded class (`None`: not decoded).
    pub class: Option<Class>,
}

/// Count and total handling time of one row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCount {
    /// Exits.
    pub count: u64,
    /// Sum of the VMM's handling times.
    pub total: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    rows: BTreeMap<ExitKey, ExitCount>,
    /// NISV exits per (phase, device, instruction form).
    forms: BTreeMap<(u64, String, String), u64>,
    /// Phases in order of first appearance, with their wall time so far.
    phases: Vec<(u64, Duration)>,
    /// The phase of the last exit and when it became current.
    current: Option<(u64, Instant)>,
}

/// The counters.
#[derive(Debug, Default)]
pub struct ExitStats {
    phase: Arc<AtomicU64>,
    inner: Mutex<Inner>,
}

thread_local! {
    static LAST_CLASS: Cell<Option<Class>> = const { Cell::new(None) };
    static LAST_FORM: Cell<Option<String>> = const { Cell::new(None) };
}

static GLOBAL: OnceLock<ExitStats> = OnceLock::new();

/// Make `stats` the process-wide counters [`record`] updates (once; later calls
/// are ignored and return `false`).
pub fn install(stats: ExitStats) -> bool {
    GLOBAL.set(stats).is_ok()
}

/// The process-wide counters, if installed.
pub fn global() -> Option<&'static ExitStats> {
    GLOBAL.get()
}

/// The NISV handler decoded an instruction of `class` on this thread.
pub fn note_class(class: Class) {
    LAST_CLASS.with(|c| c.set(Some(class)));
}

/// The NISV handler emulated `insn` on this thread.
pub fn note_insn(insn: &Insn) {
    let form = insn_form(&insn.to_string());
    LAST_FORM.with(|c| c.set(Some(form)));
}

/// Count one exit in the installed counters (no-op if none are installed).
/// For NISV exits, the class and instruction noted on this thread since the
/// last record are used and forgotten.
pub fn record(kind: ExitKind, device: Option<&str>, elapsed: Duration) {
    let class = LAST_CLASS.with(Cell::take);
    let form = LAST_FORM.with(Cell::take);
    if let Some(s) = global() {
        let nisv = kind == ExitKind::Nisv;
        s.add(kind, device, class.filter(|_| nisv), elapsed);
        if let (true, Some(f)) = (nisv, form) {
            s.add_form(device, f);
        }
    }
}

/// An instruction's assembler text with registers reduced to their kind
/// (`x`, `w`, `q`, `d`, `s`, `h`, `b`, `v.16b`; `sp`, `xzr`, `wzr` kept) and
/// immediates to `#imm`: `ldp x3, x4, [x1], #16` -> `ldp x, x, [x], #imm`.
pub fn insn_form(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut first = true;
    while i < b.len() {
        let c = b[i];
        if c == b'#' {
            out.push_str("#imm");
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-') {
                i += 1;
            }
        } else if c.is_ascii_alphanumeric() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            let word = &text[start..i];
            if first {
                out.push_str(word); // the mnemonic
                first = false;
            } else {
                out.push_str(&register_kind(word));
            }
        } else {
            out.push(char::from(c));
            i += 1;
        }
    }
    out
}

fn register_kind(w: &str) -> String {
    let (head, arrangement) = match w.split_once('.') {
        Some((h, a)) => (h, Some(a)),
        None => (w, None),
    };
    let mut chars = head.chars();
    let kind = chars.next();
    let num = chars.as_str();
    let is_reg = matches!(kind, Some('x' | 'w' | 'q' | 'd' | 's' | 'h' | 'b' | 'v'))
        && !num.is_empty()
        && num.bytes().all(|d| d.is_ascii_digit())
        && num.parse::<u8>().is_ok_and(|n| n < 32);
    match (is_reg, kind, arrangement) {
        (true, Some(k), Some(a)) => format!("{k}.{a}"),
        (true, Some(k), None) => k.to_string(),
        _ => w.to_string(),
    }
}

/// The phase tag as text: its bytes in address order (little-endian), up to the
/// first NUL; bytes outside printable ASCII and spaces are shown as `?`.
/// Tag 0 is `boot`.
pub fn phase_name(tag: u64) -> String {
    if tag == 0 {
        return "boot".to_string();
    }
    tag.to_le_bytes()
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

impl ExitStats {
    /// Counters that read the current phase from `phase` (the test device's
    /// `PHASE` register).
    pub fn new(phase: Arc<AtomicU64>) -> Self {
        ExitStats {
            phase,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count one exit.
    pub fn add(
        &self,
        kind: ExitKind,
        device: Option<&str>,
        class: Option<Class>,
        elapsed: Duration,
    ) {
        let key = ExitKey {
            phase: self.phase.load(Ordering::Relaxed),
            kind,
            device: device.unwrap_or("-").to_string(),
            class,
        };
        let now = Instant::now();
        let mut g = self.lock();
        let inner = &mut *g;
        match inner.current {
            Some((p, _)) if p == key.phase => {}
            prev => {
                if let Some((p, since)) = prev
                    && let Some(e) = inner.phases.iter_mut().find(|(t, _)| *t == p)
                {
                    e.1 += now.saturating_duration_since(since);
                }
                if !inner.phases.iter().any(|(t, _)| *t == key.phase) {
                    inner.phases.push((key.phase, Duration::ZERO));
                }
                inner.current = Some((key.phase, now));
            }
        }
        let row = inner.rows.entry(key).or_default();
        row.count += 1;
        row.total += elapsed;
    }

    /// Count one NISV exit of instruction form `form` on `device` in the
    /// current phase.
    pub fn add_form(&self, device: Option<&str>, form: String) {
        let phase = self.phase.load(Ordering::Relaxed);
        let key = (phase, device.unwrap_or("-").to_string(), form);
        *self.lock().forms.entry(key).or_insert(0) += 1;
    }

    /// NISV exits per (phase, device, instruction form).
    pub fn forms(&self) -> BTreeMap<(u64, String, String), u64> {
        self.lock().forms.clone()
    }

    /// Every row.
    pub fn rows(&self) -> BTreeMap<ExitKey, ExitCount> {
        self.lock().rows.clone()
    }

    /// The phases in order of first appearance, with their wall time (the
    /// current phase up to now).
    pub fn phases(&self) -> Vec<(u64, Duration)> {
        let g = self.lock();
        let mut v = g.phases.clone();
        if let Some((p, since)) = g.current
            && let Some(e) = v.iter_mut().find(|(t, _)| *t == p)
        {
            e.1 += since.elapsed();
        }
        v
    }

    /// NISV exits per class over all phases and devices.
    pub fn nisv_per_class(&self) -> BTreeMap<Option<Class>, ExitCount> {
        let mut out: BTreeMap<Option<Class>, ExitCount> = BTreeMap::new();
        for (k, v) in self.rows() {
            if k.kind == ExitKind::Nisv {
                let e = out.entry(k.class).or_default();
                e.count += v.count;
                e.total += v.total;
            }
        }
        out
    }

    /// The table printed at exit: one line per phase, kind, device and class
    /// (columns separated by spaces, `-` for none; phases in the order the guest
    /// entered them), then per phase its wall time and exits, the NISV exits per
    /// instruction form and the NISV totals per class. Every line starts with
    /// `prefix`; the rows of the four sections then with `exits`, `phase`,
    /// `form` and `class`, so that they can be told apart by their first word.
    pub fn table(&self, prefix: &str) -> String {
        let rows = self.rows();
        let phases = self.phases();
        let order = |p: u64| {
            phases
                .iter()
                .position(|(t, _)| *t == p)
                .unwrap_or(usize::MAX)
        };
        let mut sorted: Vec<(&ExitKey, &ExitCount)> = rows.iter().collect();
        sorted.sort_by_key(|(k, _)| (order(k.phase), k.kind, k.device.clone(), k.class));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{prefix}exits by guest phase, device and class (VMM handling time: KVM_RUN return to re-entry)"
        );
        let _ = writeln!(
            s,
            "{prefix}exits  {:<8} {:<4} {:<14} {:<15} {:>9} {:>11} {:>9}",
            "phase", "exit", "device", "class", "count", "total ms", "mean us"
        );
        for (k, v) in sorted {
            let _ = writeln!(s, "{prefix}exits  {}", line(&phase_name(k.phase), k, v));
        }
        let _ = writeln!(
            s,
            "{prefix}guest phases (wall time from the phase's first exit to the next phase's)"
        );
        let _ = writeln!(
            s,
            "{prefix}phase  {:<8} {:>9} {:>9} {:>9} {:>11}",
            "phase", "wall s", "mmio", "nisv", "vmm ms"
        );
        for (p, wall) in &phases {
            let (mut mmio, mut nisv, mut vmm) = (0u64, 0u64, Duration::ZERO);
            for (k, v) in rows.iter().filter(|(k, _)| k.phase == *p) {
                match k.kind {
                    ExitKind::Mmio => mmio += v.count,
                    ExitKind::Nisv => nisv += v.count,
                }
                vmm += v.total;
            }
            let _ = writeln!(
                s,
                "{prefix}phase  {:<8} {:>9.2} {mmio:>9} {nisv:>9} {:>11.1}",
                phase_name(*p),
                wall.as_secs_f64(),
                ms(vmm)
            );
        }
        let mut forms: Vec<_> = self.forms().into_iter().collect();
        forms
            .sort_by_key(|((p, d, f), n)| (order(*p), d.clone(), std::cmp::Reverse(*n), f.clone()));
        let _ = writeln!(s, "{prefix}NISV exits per instruction form");
        for ((p, d, f), n) in forms {
            let _ = writeln!(s, "{prefix}form   {:<8} {d:<14} {n:>9}  {f}", phase_name(p));
        }
        let _ = writeln!(
            s,
            "{prefix}NISV exits per class, all phases (count, total ms, mean us)"
        );
        for (class, v) in self.nisv_per_class() {
            let _ = writeln!(
                s,
                "{prefix}class  {:<15} {:>9} {:>11.1} {:>9.1}",
                class_name(class),
                v.count,
                ms(v.total),
                mean_us(&v)
            );
        }
        s
    }
}

fn class_name(c: Option<Class>) -> String {
    c.map_or_else(|| "-".to_string(), |c| format!("{c:?}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mean_us(v: &ExitCount) -> f64 {
    if v.count == 0 {
        0.0
    } else {
        v.total.as_secs_f64() * 1e6 / v.count as f64
    }
}

fn line(phase: &str, k: &ExitKey, v: &ExitCount) -> String {
    format!(
        "{phase:<8} {:<4} {:<14} {:<15} {:>9} {:>11.1} {:>9.1}",
        k.kind.name(),
        k.device,
        class_name(k.class),
        v.count,
        ms(v.total),
        mean_us(v)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names() {
        assert_eq!(phase_name(0), "boot");
        assert_eq!(phase_name(u64::from_le_bytes(*b"rs-devm\0")), "rs-devm");
        assert_eq!(phase_name(u64::from_le_bytes(*b"fb-user1")), "fb-user1");
        assert_eq!(phase_name(u64::from_le_bytes(*b"a b\x01\0xyz")), "a?b?");
    }

    #[test]
    fn rows_per_phase_kind_device_class() {
        let phase = Arc::new(AtomicU64::new(0));
        let s = ExitStats::new(phase.clone());
        let us = Duration::from_micros;
        s.add(ExitKind::Mmio, Some("uart"), None, us(10));
        s.add(ExitKind::Mmio, Some("uart"), None, us(30));
        phase.store(u64::from_le_bytes(*b"work\0\0\0\0"), Ordering::Relaxed);
        s.add(
            ExitKind::Nisv,
            Some("testdev-data"),
            Some(Class::FpPair),
            us(100),
        );
        s.add(
            ExitKind::Nisv,
            Some("testdev-data"),
            Some(Class::FpPair),
            us(300),
        );
        s.add(
            ExitKind::Nisv,
            Some("testdev-data"),
            Some(Class::GprPair),
            us(50),
        );
        s.add(ExitKind::Nisv, None, None, us(1));
        let rows = s.rows();
        assert_eq!(rows.len(), 4);
        let uart = &rows[&ExitKey {
            phase: 0,
            kind: ExitKind::Mmio,
            device: "uart".into(),
            class: None,
        }];
        assert_eq!((uart.count, uart.total), (2, us(40)));
        let per = s.nisv_per_class();
        assert_eq!(per[&Some(Class::FpPair)].count, 2);
        assert_eq!(per[&Some(Class::FpPair)].total, us(400));
        assert_eq!(per[&None].count, 1);
        let phases = s.phases();
        assert_eq!(
            phases
                .iter()
                .map(|(p, _)| phase_name(*p))
                .collect::<Vec<_>>(),
            ["boot", "work"]
        );
        s.add_form(Some("testdev-data"), "ldp x, x, [x], #imm".into());
        let t = s.table("p: ");
        assert!(t.lines().all(|l| l.starts_with("p: ")), "{t}");
        // Phases in order of appearance: boot's rows before work's.
        let boot_at = t.find("boot     mmio").unwrap();
        let work_at = t.find("work     nisv").unwrap();
        assert!(boot_at < work_at, "{t}");
        let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        assert!(
            t.lines().any(|l| words(l)
                == [
                    "p:",
                    "phase",
                    "work",
                    words(l)[3].as_str(),
                    "0",
                    "4",
                    words(l)[6].as_str()
                ]),
            "phase summary: {t}"
        );
        assert!(
            t.lines().any(|l| words(l)
                == [
                    "p:",
                    "form",
                    "work",
                    "testdev-data",
                    "1",
                    "ldp",
                    "x,",
                    "x,",
                    "[x],",
                    "#imm"
                ]),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| words(l) == ["p:", "class", "FpPair", "2", "0.4", "200.0"]),
            "{t}"
        );
        assert!(
            t.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "p:",
                    "exits",
                    "work",
                    "nisv",
                    "testdev-data",
                    "FpPair",
                    "2",
                    "0.4",
                    "200.0"
                ]),
            "{t}"
        );
        assert!(
            t.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "p:", "exits", "boot", "mmio", "uart", "-", "2", "0.0", "20.0"
                ]),
            "{t}"
        );
    }

    #[test]
    fn instruction_forms() {
        for (text, form) in [
            ("ldp x3, x4, [x1], #16", "ldp x, x, [x], #imm"),
            ("stp q0, q1, [x2, #-32]!", "stp q, q, [x, #imm]!"),
            ("strh w0, [x1, xzr, sxtx]", "strh w, [x, xzr, sxtx]"),
            (
                "st1 {v0.16b, v1.16b}, [sp], x3",
                "st1 {v.16b, v.16b}, [sp], x",
            ),
            ("ldr d31, [x30, #0x18]", "ldr d, [x, #imm]"),
            ("dc zva, x5", "dc zva, x"),
            ("ldaxr w8, [x21]", "ldaxr w, [x]"),
            ("ld1 {v2.s}[3], [x0]", "ld1 {v.s}[3], [x]"),
            ("", ""),
        ] {
            assert_eq!(insn_form(text), form, "{text}");
        }
        // A real instruction through kvm-nisv's Display.
        let i = kvm_nisv::decode::decode(0xa8c1_0c22).unwrap(); // ldp x2, x3, [x1], #16
        assert_eq!(insn_form(&i.to_string()), "ldp x, x, [x], #imm");
    }

    #[test]
    fn record_uses_the_noted_class_once() {
        // No counters installed in this test process by default: record is a no-op,
        // but the noted class is consumed either way.
        note_class(Class::Atomic);
        record(ExitKind::Mmio, None, Duration::ZERO);
        assert_eq!(LAST_CLASS.with(Cell::get), None);
    }
}
