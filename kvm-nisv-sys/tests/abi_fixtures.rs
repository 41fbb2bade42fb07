// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The cross-version ABI guarantee.
//!
//! `tests/fixtures/linux-<version>.txt` are written by `gen/` from each kernel's
//! uapi headers (values evaluated by libclang for aarch64; `absent` where a kernel
//! does not define an item). These tests check that (1) no item changes or
//! disappears from one kernel version to the next (items a later kernel adds, and
//! padding or reserved space that a later kernel carves a new field out of, are
//! reported, not failures), and (2) the public bindings (generated from the Linux 7.2
//! headers) and the hand-written helpers produce exactly that version's fixture
//! values, measured with `size_of`/`offset_of!` on the real Rust types. The Rust-side
//! table (`tests/generated/rust_items.rs`) is generated from the same item list as
//! the fixtures.

#![allow(clippy::undocumented_unsafe_blocks)]

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};

use kvm_nisv_sys::*;

/// (version label, fixture text), oldest first.
const FIXTURES: &[(&str, &str)] = &[
    ("5.10", include_str!("fixtures/linux-5.10.txt")),
    ("6.1", include_str!("fixtures/linux-6.1.txt")),
    ("6.12", include_str!("fixtures/linux-6.12.txt")),
    ("7.2", include_str!("fixtures/linux-7.2.txt")),
    ("7.3-rc", include_str!("fixtures/linux-7.3-rc.txt")),
];

/// The version the public bindings are generated from.
const BINDINGS_VERSION: &str = "7.2";
const BINDINGS_FIXTURE: &str = include_str!("fixtures/linux-7.2.txt");

/// An item's value in one kernel version: `None` if the kernel does not define it.
type Items = BTreeMap<String, Option<u64>>;

fn parse(text: &str) -> Result<Items, String> {
    let mut items = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("line {}: `{line}` is not `item value`", n + 1))?;
        let value = if value == "absent" {
            None
        } else {
            Some(
                match value.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => value.parse(),
                }
                .map_err(|e| format!("line {}: `{line}`: {e}", n + 1))?,
            )
        };
        if items.insert(name.to_string(), value).is_some() {
            return Err(format!("line {}: duplicate item `{name}`", n + 1));
        }
    }
    Ok(items)
}

/// The values a fixture defines (absent items dropped).
fn defined(items: &Items) -> BTreeMap<String, u64> {
    items
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
        .collect()
}

/// A readable list of the differences between two item maps (empty if equal).
fn diff(
    a_name: &str,
    a: &BTreeMap<String, u64>,
    b_name: &str,
    b: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, va) in a {
        match b.get(k) {
            None => out.push(format!("  {k}: {a_name} = {va:#x}, missing in {b_name}")),
            Some(vb) if vb != va => out.push(format!(
                "  {k}: {a_name} = {va} ({va:#x}), {b_name} = {vb} ({vb:#x})"
            )),
            Some(_) => {}
        }
    }
    for (k, vb) in b {
        if !a.contains_key(k) {
            out.push(format!("  {k}: missing in {a_name}, {b_name} = {vb:#x}"));
        }
    }
    out
}

/// Whether a layout item names padding or reserved space (`pad`, `padding1`,
/// `reserved`, `__reserved`, ...).
fn is_padding(field: &str) -> bool {
    let last = field.rsplit('.').next().unwrap_or(field);
    let last = last.trim_start_matches('_');
    last.starts_with("pad") || last.starts_with("reserved")
}

/// What changed from `old` to `new` (two consecutive kernel versions).
#[derive(Debug, Default)]
struct Compat {
    /// Items the newer kernel defines and the older does not.
    added: Vec<String>,
    /// Padding/reserved fields that shrank because a new field was carved out of them.
    padding: Vec<String>,
    /// Anything else: an item removed, a value or layout changed. Must be empty.
    broken: Vec<String>,
}

/// The byte range `[offset, offset + size)` of a layout field in one version.
fn range(m: &Items, field: &str) -> Option<(u64, u64)> {
    let off = m.get(&format!("offset:{field}")).copied().flatten()?;
    let size = m.get(&format!("size:{field}")).copied().flatten()?;
    Some((off, off + size))
}

/// Why a layout change of `field` (`TYPE.path`) is compatible, if it is: padding that
/// shrank inside its old range (a later kernel carved a field out of it), or a field
/// that kept its offset and grew only into the old range of padding or reserved
/// space of the same type (e.g. `kvm_run.system_event` growing into the 256-byte
/// `padding` of the exit union in 5.18).
fn reserved_change(field: &str, old: &Items, new: &Items) -> Option<String> {
    let (os, oe) = range(old, field)?;
    let (ns, ne) = range(new, field)?;
    if is_padding(field) && ns >= os && ne <= oe {
        return Some(format!(
            "{field} is now bytes {ns}..{ne}, was {os}..{oe}: a new field was carved out of it"
        ));
    }
    let ty = field.split('.').next()?;
    if ns != os || is_padding(field) {
        return None;
    }
    old.keys()
        .filter_map(|k| k.strip_prefix("offset:"))
        .filter(|p| p.split('.').next() == Some(ty) && is_padding(p))
        .find_map(|p| {
            let (ps, pe) = range(old, p)?;
            (ns >= ps && ne <= pe).then(|| {
                format!(
                    "{field} grew to bytes {ns}..{ne} inside {p} ({ps}..{pe}) of the older kernel"
                )
            })
        })
}

fn compare(old_name: &str, old: &Items, new_name: &str, new: &Items) -> Compat {
    let mut c = Compat::default();
    for (k, vn) in new {
        let vo = old.get(k).copied().flatten();
        match (vo, *vn) {
            (None, Some(v)) => c.added.push(format!("{k} = {v:#x} (new in {new_name})")),
            (Some(v), None) => c
                .broken
                .push(format!("{k}: {old_name} = {v:#x}, absent in {new_name}")),
            (Some(a), Some(b)) if a != b => {
                let field = k.split_once(':').map_or(k.as_str(), |(_, f)| f);
                match reserved_change(field, old, new) {
                    Some(why) => c
                        .padding
                        .push(format!("{k}: {old_name} = {a}, {new_name} = {b} ({why})")),
                    None => c.broken.push(format!(
                        "{k}: {old_name} = {a} ({a:#x}), {new_name} = {b} ({b:#x})"
                    )),
                }
            }
            _ => {}
        }
    }
    for (k, vo) in old {
        if let (Some(v), false) = (vo, new.contains_key(k)) {
            c.broken.push(format!(
                "{k}: {old_name} = {v:#x}, not listed in {new_name}"
            ));
        }
    }
    c
}

#[test]
fn diff_reports_every_kind_of_difference() {
    let a = defined(&parse("x 1\ny 0x10\nz 3\n").unwrap());
    let b = defined(&parse("# comment\nx 1\ny 17\nw 4\nq absent\n").unwrap());
    let d = diff("A", &a, "B", &b);
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(
        d.iter()
            .any(|l| l.contains("y: A = 16 (0x10), B = 17 (0x11)"))
    );
    assert!(d.iter().any(|l| l.contains("z: A = 0x3, missing in B")));
    assert!(d.iter().any(|l| l.contains("w: missing in A, B = 0x4")));
    assert!(diff("A", &a, "A", &a).is_empty());
    assert!(parse("x 1\nx 2\n").is_err());
    assert!(parse("novalue\n").is_err());
    assert!(parse("x 0xZZ\n").is_err());
}

#[test]
fn compare_allows_additions_and_carved_padding_only() {
    // A later kernel carves `flag` (byte 3) out of `pad[5]` (bytes 3..8).
    let old = parse(
        "offset:s.pad 3\nsize:s.pad 5\noffset:s.flag absent\nsize:s.flag absent\n\
         K_NEW absent\nK_OLD 7\n",
    )
    .unwrap();
    let new =
        parse("offset:s.pad 4\nsize:s.pad 4\noffset:s.flag 3\nsize:s.flag 1\nK_NEW 9\nK_OLD 7\n")
            .unwrap();
    let c = compare("1.0", &old, "2.0", &new);
    assert!(c.broken.is_empty(), "{c:?}");
    assert_eq!(c.added.len(), 3, "{c:?}");
    assert_eq!(c.padding.len(), 2, "{c:?}");
    // Padding that grows past its old end, a changed value and a removed item break.
    let grown = parse(
        "offset:s.pad 3\nsize:s.pad 6\noffset:s.flag absent\nsize:s.flag absent\n\
         K_NEW absent\nK_OLD 8\n",
    )
    .unwrap();
    let c = compare("1.0", &old, "2.0", &grown);
    assert_eq!(c.broken.len(), 2, "{c:?}");
    let removed = parse("offset:s.pad 3\nsize:s.pad 5\nK_OLD absent\n").unwrap();
    let c = compare("1.0", &old, "2.0", &removed);
    assert!(c.broken.iter().any(|l| l.contains("K_OLD")), "{c:?}");
    // A non-padding field may not shrink.
    let a = parse("offset:s.data 0\nsize:s.data 8\n").unwrap();
    let b = parse("offset:s.data 0\nsize:s.data 4\n").unwrap();
    assert_eq!(compare("1.0", &a, "2.0", &b).broken.len(), 1);
    // A union member may grow into the union's padding, not past it, and not move.
    let a = parse("offset:u.m 0\nsize:u.m 16\noffset:u.padding 0\nsize:u.padding 256\n").unwrap();
    let b = parse("offset:u.m 0\nsize:u.m 136\noffset:u.padding 0\nsize:u.padding 256\n").unwrap();
    let c = compare("1.0", &a, "2.0", &b);
    assert!(c.broken.is_empty() && c.padding.len() == 1, "{c:?}");
    let b = parse("offset:u.m 0\nsize:u.m 300\noffset:u.padding 0\nsize:u.padding 256\n").unwrap();
    assert_eq!(compare("1.0", &a, "2.0", &b).broken.len(), 1);
    let b = parse("offset:u.m 8\nsize:u.m 16\noffset:u.padding 0\nsize:u.padding 256\n").unwrap();
    assert_eq!(compare("1.0", &a, "2.0", &b).broken.len(), 1);
}

#[test]
fn no_item_changes_or_disappears_across_kernel_versions() {
    let parsed: Vec<(&str, Items)> = FIXTURES
        .iter()
        .map(|(v, text)| {
            (
                *v,
                parse(text).unwrap_or_else(|e| panic!("linux-{v}.txt: {e}")),
            )
        })
        .collect();
    let (_, base) = &parsed[0];
    // The fixtures must cover the NISV essentials from the oldest kernel on (a
    // sanity floor, not the full list).
    for key in [
        "KVM_EXIT_ARM_NISV",
        "KVM_CAP_ARM_NISV_TO_USER",
        "KVM_CAP_ARM_INJECT_EXT_DABT",
        "offset:kvm_run.arm_nisv.esr_iss",
        "offset:kvm_run.arm_nisv.fault_ipa",
        "offset:kvm_vcpu_events.exception.ext_dabt_pending",
        "ioctl:KVM_SET_VCPU_EVENTS",
    ] {
        assert!(
            matches!(base.get(key), Some(Some(_))),
            "the oldest fixture lacks {key}"
        );
    }
    let mut broken = Vec::new();
    for pair in parsed.windows(2) {
        let (old_name, old) = &pair[0];
        let (new_name, new) = &pair[1];
        let c = compare(old_name, old, new_name, new);
        for line in c.added.iter().chain(&c.padding) {
            // Reported, not a failure (visible with --nocapture).
            println!("Linux {old_name} -> {new_name}: {line}");
        }
        if !c.broken.is_empty() {
            broken.push(format!("Linux {old_name} -> {new_name}:"));
            broken.extend(c.broken.iter().map(|l| format!("  {l}")));
        }
    }
    assert!(
        broken.is_empty(),
        "ABI items changed or disappeared across kernel versions:\n{}",
        broken.join("\n")
    );
}

fn size_of_target<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// The size of the field `$ty.$path`.
macro_rules! field_size {
    ($ty:ident, $($p:tt)+) => {
        // SAFETY: the closure is never called; it only names the field's type
        // (reading a union field needs `unsafe` even there).
        size_of_target(|v: &$ty| unsafe { &v.$($p)+ }) as u64
    };
}

fn core_reg_id(name: &str, offset: usize, size: usize) -> u64 {
    kvm_core_reg_id(offset, size)
        .unwrap_or_else(|| panic!("kvm_core_reg_id refused {name} ({offset}, {size})"))
}

fn sys_reg_id(name: &str, [op0, op1, crn, crm, op2]: [u8; 5]) -> u64 {
    kvm_sysreg_id(op0, op1, crn, crm, op2).unwrap_or_else(|| panic!("kvm_sysreg_id refused {name}"))
}

// `fn rust_items() -> Vec<(&'static str, u64)>`: every item of the bindings
// version's fixture, as Rust expressions over the public API.
include!("generated/rust_items.rs");

#[test]
fn bindings_match_their_fixture() {
    let fixture = defined(&parse(BINDINGS_FIXTURE).expect("bindings fixture parses"));
    let mut rust = BTreeMap::new();
    for (k, val) in rust_items() {
        assert!(
            rust.insert(k.to_string(), val).is_none(),
            "duplicate Rust item {k}"
        );
    }
    // Without the `ioctls` feature the request numbers cannot be checked here.
    let fixture: BTreeMap<String, u64> = fixture
        .into_iter()
        .filter(|(k, _)| cfg!(feature = "ioctls") || !k.starts_with("ioctl:"))
        .collect();
    let d = diff(
        &format!("fixture linux-{BINDINGS_VERSION}"),
        &fixture,
        "Rust bindings",
        &rust,
    );
    assert!(
        d.is_empty(),
        "the bindings disagree with tests/fixtures/linux-{BINDINGS_VERSION}.txt \
         (regenerate with scripts/regen-bindings):\n{}",
        d.join("\n")
    );
}

#[test]
fn nisv_payload_is_where_the_kernel_writes_it() {
    // Independent of the fixture: the values docs/abi.md states.
    assert_eq!(KVM_EXIT_ARM_NISV, 28);
    assert_eq!(KVM_CAP_ARM_NISV_TO_USER, 177);
    assert_eq!(KVM_CAP_ARM_INJECT_EXT_DABT, 178);
    assert_eq!(offset_of!(kvm_run, exit_reason), 8);
    assert_eq!(offset_of!(kvm_run, __bindgen_anon_1.arm_nisv.esr_iss), 32);
    assert_eq!(offset_of!(kvm_run, __bindgen_anon_1.arm_nisv.fault_ipa), 40);
    assert_eq!(offset_of!(kvm_vcpu_events, exception.ext_dabt_pending), 2);
    assert_eq!(size_of::<kvm_vcpu_events>(), 64);

    // A kvm_run as the kernel fills it for the exit measured on the emulated host
    // (`str x0, [x1], #8` to 0x1000_0000): write the bytes at the fixture offsets
    // and read them back through the typed union member.
    let fixture = defined(&parse(BINDINGS_FIXTURE).unwrap());
    let off = |k: &str| fixture[k] as usize;
    let mut bytes = vec![0u8; size_of::<kvm_run>()];
    bytes[off("offset:kvm_run.exit_reason")..][..4].copy_from_slice(&28u32.to_ne_bytes());
    bytes[off("offset:kvm_run.arm_nisv.esr_iss")..][..8].copy_from_slice(&0x45u64.to_ne_bytes());
    bytes[off("offset:kvm_run.arm_nisv.fault_ipa")..][..8]
        .copy_from_slice(&0x1000_0000u64.to_ne_bytes());
    // SAFETY: kvm_run is plain repr(C) data for which every bit pattern is valid,
    // and `bytes` holds exactly size_of::<kvm_run>() bytes (read_unaligned copes
    // with the Vec's alignment).
    let run: kvm_run = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    assert_eq!(run.exit_reason, KVM_EXIT_ARM_NISV);
    // SAFETY: exit_reason says arm_nisv is the active member.
    let nisv = unsafe { run.__bindgen_anon_1.arm_nisv };
    assert_eq!(nisv.esr_iss, 0x45);
    assert_eq!(nisv.fault_ipa, 0x1000_0000);
}

#[test]
fn newer_arm64_exits_come_from_the_headers() {
    // The numbers docs/abi.md states, checked against the fixture libclang
    // evaluated from the Linux 7.2 headers and against the generated constants.
    let fixture = defined(&parse(BINDINGS_FIXTURE).unwrap());
    let want: &[(&str, u64, u64)] = &[
        ("KVM_EXIT_ARM_SEA", KVM_EXIT_ARM_SEA.into(), 41),
        ("KVM_EXIT_ARM_LDST64B", KVM_EXIT_ARM_LDST64B.into(), 42),
        (
            "KVM_CAP_ARM_SEA_TO_USER",
            KVM_CAP_ARM_SEA_TO_USER.into(),
            245,
        ),
        (
            "KVM_EXIT_ARM_SEA_FLAG_GPA_VALID",
            KVM_EXIT_ARM_SEA_FLAG_GPA_VALID.into(),
            1,
        ),
        (
            "offset:kvm_run.arm_sea.flags",
            offset_of!(kvm_run, __bindgen_anon_1.arm_sea.flags) as u64,
            32,
        ),
        (
            "offset:kvm_run.arm_sea.esr",
            offset_of!(kvm_run, __bindgen_anon_1.arm_sea.esr) as u64,
            40,
        ),
        (
            "offset:kvm_run.arm_sea.gva",
            offset_of!(kvm_run, __bindgen_anon_1.arm_sea.gva) as u64,
            48,
        ),
        (
            "offset:kvm_run.arm_sea.gpa",
            offset_of!(kvm_run, __bindgen_anon_1.arm_sea.gpa) as u64,
            56,
        ),
    ];
    for (name, rust, value) in want {
        assert_eq!(fixture.get(*name), Some(value), "fixture {name}");
        assert_eq!(rust, value, "generated {name}");
    }
    // The older kernels do not define them (the fixtures say `absent`), and
    // LDST64B reuses the arm_nisv payload.
    for (v, text) in &FIXTURES[..3] {
        let items = parse(text).unwrap();
        assert_eq!(items.get("KVM_EXIT_ARM_SEA"), Some(&None), "Linux {v}");
        assert_eq!(
            items.get("KVM_CAP_ARM_SEA_TO_USER"),
            Some(&None),
            "Linux {v}"
        );
    }
    assert_eq!(
        offset_of!(kvm_run, __bindgen_anon_1.arm_nisv.esr_iss),
        fixture["offset:kvm_run.arm_nisv.esr_iss"] as usize
    );
}
