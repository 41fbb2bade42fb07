// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `kvm-nisv-gen`: regenerates the generated parts of `kvm-nisv-sys`.
//!
//! Input: one or more arm64 uapi include directories, the `usr/include` of Debian's
//! `linux-libc-dev:arm64` (the kernel's `make headers_install` output, with the asm
//! headers in `aarch64-linux-gnu/`) or an `INSTALL_HDR_PATH/include` of
//! `make headers_install ARCH=arm64` (see `scripts/regen-bindings`, which downloads
//! the packages through the private apt configuration). Output, below `--out`
//! (default: the repository root):
//!
//! * `kvm-nisv-sys/src/arm64/bindings.rs`: bindgen output for `<linux/kvm.h>` from
//!   ONE version (`--bindings`, default the newest that is not a release candidate).
//! * `kvm-nisv-sys/tests/fixtures/linux-<version>.txt`: for EVERY version, the
//!   NISV-relevant ABI subset (values, sizes, field offsets, ioctl numbers, register
//!   ids) as evaluated by libclang for `aarch64-unknown-linux-gnu`, one `item value`
//!   per line (`item absent` where that kernel does not define it).
//! * `kvm-nisv-sys/tests/generated/rust_items.rs`: the same item list written as Rust
//!   expressions over the public bindings (`include!`d by `tests/abi_fixtures.rs`), so
//!   the Rust-side table is never a hand-kept copy.
//! * `docs/abi.md`: the section between the generated-table markers is replaced by a
//!   cross-version table built from the fixtures (the rest of the file is copied from
//!   `--repo`).
//!
//! Everything is deterministic: items are emitted in a fixed order, no timestamps or
//! host paths are written, and the Rust output is formatted with the toolchain's
//! `rustfmt` (the same tool `cargo fmt --check` runs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// Must match the `=` pin in `gen/Cargo.toml`; written into generated headers.
const BINDGEN_VERSION: &str = "0.73.2";

/// Clang target: the layouts must be arm64's even when generating on x86_64.
const CLANG_TARGET: &str = "aarch64-unknown-linux-gnu";

/// Markers delimiting the generated table in `docs/abi.md`.
const TABLE_BEGIN: &str =
    "<!-- BEGIN GENERATED ABI TABLE: scripts/regen-bindings rewrites this section, do not edit -->";
const TABLE_END: &str = "<!-- END GENERATED ABI TABLE -->";

/// Prefix of the C variables the fixture wrapper declares (libclang evaluates them).
const FIXTURE_VAR: &str = "kvm_nisv_fixture_";

const LICENSE_HEADER: &str = "// Copyright 2026 The kvm-nisv Authors.\n// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause\n";

/// A kernel version label: `major.minor`, or `major.minor-rc` for a release
/// candidate (ordered after every release of an earlier `major.minor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Version(u32, u32, bool);

impl Version {
    fn is_rc(self) -> bool {
        self.2
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}{}",
            self.0,
            self.1,
            if self.2 { "-rc" } else { "" }
        )
    }
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (num, rc) = match s.strip_suffix("-rc") {
            Some(n) => (n, true),
            None => (s, false),
        };
        let (a, b) = num
            .split_once('.')
            .ok_or_else(|| format!("version `{s}` is not major.minor[-rc]"))?;
        let major = a.parse().map_err(|e| format!("version `{s}`: {e}"))?;
        let minor = b.parse().map_err(|e| format!("version `{s}`: {e}"))?;
        Ok(Version(major, minor, rc))
    }
}

struct Args {
    /// (version, include directory) pairs, sorted by version.
    headers: Vec<(Version, PathBuf)>,
    /// The version the public bindings are generated from.
    bindings: Version,
    /// Where `docs/abi.md` is read from.
    repo: PathBuf,
    /// Where generated files are written (the repo itself, or a temp dir for --check).
    out: PathBuf,
}

fn usage() -> String {
    "usage: kvm-nisv-gen --headers <major.minor[-rc]>=<include dir> [--headers ...] \
     [--bindings <version>] [--repo DIR] [--out DIR]"
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let default_repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("generator has no parent directory")?
        .to_path_buf();
    let mut headers = Vec::new();
    let mut repo = None;
    let mut out = None;
    let mut bindings = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--headers" => {
                let v = value()?;
                let (ver, path) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--headers `{v}`: expected VERSION=PATH"))?;
                headers.push((ver.parse::<Version>()?, PathBuf::from(path)));
            }
            "--bindings" => bindings = Some(value()?.parse::<Version>()?),
            "--repo" => repo = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(usage()),
            _ => return Err(format!("unknown argument `{arg}`\n{}", usage())),
        }
    }
    if headers.is_empty() {
        return Err(usage());
    }
    headers.sort();
    if headers.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("the same version was given twice".into());
    }
    let bindings = match bindings {
        Some(b) => b,
        None => headers
            .iter()
            .rev()
            .map(|(v, _)| *v)
            .find(|v| !v.is_rc())
            .ok_or("every version is a release candidate: pass --bindings")?,
    };
    if !headers.iter().any(|(v, _)| *v == bindings) {
        return Err(format!("--bindings {bindings}: no --headers for it"));
    }
    let repo = repo.unwrap_or(default_repo);
    let out = out.unwrap_or_else(|| repo.clone());
    Ok(Args {
        headers,
        bindings,
        repo,
        out,
    })
}

/// The asm headers of a multiarch `linux-libc-dev` live in `aarch64-linux-gnu/asm`;
/// a `make headers_install` tree has them in `asm/` directly.
fn clang_args(inc: &Path) -> Vec<String> {
    let mut args = vec![
        format!("--target={CLANG_TARGET}"),
        // Only the installed uapi headers: nothing from the host's /usr/include.
        "-nostdinc".into(),
        format!("-I{}", inc.display()),
    ];
    let multiarch = inc.join("aarch64-linux-gnu");
    if multiarch.join("asm/kvm.h").is_file() {
        args.push(format!("-I{}", multiarch.display()));
    }
    args
}

/// `<linux/kvm.h>` of an include directory.
fn kvm_h(inc: &Path) -> PathBuf {
    inc.join("linux/kvm.h")
}

// ---------------------------------------------------------------------------
// Public bindings (newest version only)
// ---------------------------------------------------------------------------

fn generate_bindings(hdr: &Path, version: Version) -> Result<String, String> {
    let target = bindgen::RustTarget::stable(85, 0).map_err(|e| e.to_string())?;
    let bindings = bindgen::Builder::default()
        .header_contents("kvm-nisv-bindings.h", "#include <linux/kvm.h>\n")
        .clang_args(clang_args(hdr))
        // linux/kvm.h plus the arm64 headers it pulls in; the types those items use
        // (`__u64`, ...) are added transitively.
        .allowlist_file(
            r".*/include/(aarch64-linux-gnu/)?(linux/kvm|asm/kvm|asm/ptrace|asm/sve_context)\.h",
        )
        .blocklist_item("^__UAPI_DEF_.*")
        .use_core()
        .ctypes_prefix("::core::ffi")
        .rust_target(target)
        .rust_edition(bindgen::RustEdition::Edition2024)
        .derive_default(true)
        .derive_debug(true)
        .impl_debug(true)
        .derive_partialeq(true)
        .impl_partialeq(true)
        .derive_eq(true)
        .layout_tests(true)
        .generate_comments(false)
        .sort_semantically(true)
        .disable_header_comment()
        .formatter(bindgen::Formatter::None)
        .generate()
        .map_err(|e| format!("bindgen failed for {version}: {e}"))?;
    let code = rustfmt(&bindings.to_string())?;
    let clang = bindgen::clang_version();
    let clang = clang
        .parsed
        .map_or_else(|| clang.full.clone(), |(a, b)| format!("{a}.{b}"));
    let mut out = String::new();
    out.push_str(LICENSE_HEADER);
    let _ = write!(
        out,
        "\n// @generated by kvm-nisv-gen (gen/) with bindgen {BINDGEN_VERSION} and libclang {clang}\n\
         // from the Linux {version} arm64 uapi headers (Debian linux-libc-dev:arm64, the\n\
         // kernel's `make headers_install` output), clang target {CLANG_TARGET}.\n\
         // Do not edit: run scripts/regen-bindings.\n\n"
    );
    out.push_str(&code);
    Ok(out)
}

fn rustfmt(code: &str) -> Result<String, String> {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run rustfmt: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("rustfmt stdin")?;
    let input = code.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("rustfmt: {e}"))?;
    writer
        .join()
        .map_err(|_| "rustfmt writer panicked")?
        .map_err(|e| format!("rustfmt stdin: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rustfmt failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("rustfmt output: {e}"))
}

// ---------------------------------------------------------------------------
// ABI fixtures (every version)
// ---------------------------------------------------------------------------

/// How a fixture value is printed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Radix {
    Dec,
    Hex,
}

/// How the Rust side computes an item from the public bindings
/// (`kvm-nisv-sys/tests/generated/rust_items.rs`).
enum RustExpr {
    /// A generated constant (`pub const NAME`), cast to `u64`.
    Const(String),
    /// A hand-written constant of kvm-nisv-sys (for a function-like C macro bindgen
    /// cannot evaluate), cast to `u64`.
    HandConst(String),
    /// `size_of::<TYPE>()`.
    Size(String),
    /// `offset_of!(TYPE, PATH)` (the bindgen path, through anonymous unions).
    Offset(String, String),
    /// The size of the field at `TYPE.PATH`.
    FieldSize(String, String),
    /// An ioctl request number (`kvm_nisv_sys::NAME()`, feature `ioctls`).
    Ioctl(String),
    /// `kvm_core_reg_id(offset, bytes)` with `offset` a Rust expression.
    CoreReg(String, u32),
    /// `kvm_sysreg_id(op0, op1, crn, crm, op2)`.
    SysReg([u8; 5]),
}

/// One fixture item: its name in the fixture file, the C expression libclang
/// evaluates for it, the macros a header must define for the item to exist there,
/// and the Rust expression that must give the same value.
struct Item {
    group: &'static str,
    name: String,
    expr: String,
    radix: Radix,
    requires: Vec<String>,
    rust: RustExpr,
}

fn konst(group: &'static str, name: &str, radix: Radix) -> Item {
    Item {
        group,
        name: name.to_string(),
        expr: name.to_string(),
        radix,
        requires: vec![name.to_string()],
        rust: RustExpr::Const(name.to_string()),
    }
}

fn size(ty: &str) -> Item {
    Item {
        group: "layout",
        name: format!("size:{ty}"),
        expr: format!("sizeof(struct {ty})"),
        radix: Radix::Dec,
        requires: Vec::new(),
        rust: RustExpr::Size(ty.to_string()),
    }
}

/// Members of `struct kvm_run` outside its anonymous exit union.
const KVM_RUN_NAMED: &[&str] = &[
    "request_interrupt_window",
    "immediate_exit",
    "padding1",
    "exit_reason",
    "ready_for_interrupt_injection",
    "if_flag",
    "flags",
    "cr8",
    "apic_base",
    "kvm_valid_regs",
    "kvm_dirty_regs",
    "padding2",
    "s",
];

/// The bindgen path of a C field path: anonymous unions become `__bindgen_anon_1`,
/// Rust keywords get bindgen's `_` suffix.
fn rust_field_path(ty: &str, path: &str) -> String {
    let comps: Vec<&str> = path.split('.').collect();
    let first = comps.first().copied().unwrap_or_default();
    let anon = match ty {
        "kvm_run" => !KVM_RUN_NAMED.contains(&first),
        "kvm_irq_level" => first == "irq",
        _ => false,
    };
    let mut out: Vec<String> = Vec::new();
    if anon {
        out.push("__bindgen_anon_1".into());
    }
    for c in comps {
        out.push(if c == "type" {
            "type_".into()
        } else {
            c.to_string()
        });
    }
    let joined = out.join(".");
    // Nested anonymous unions.
    for (from, to) in [
        (
            "__bindgen_anon_1.system_event.flags",
            "__bindgen_anon_1.system_event.__bindgen_anon_1.flags",
        ),
        (
            "__bindgen_anon_1.system_event.data",
            "__bindgen_anon_1.system_event.__bindgen_anon_1.data",
        ),
    ] {
        if ty == "kvm_run" && joined == from {
            return to.to_string();
        }
    }
    joined
}

/// Offset and size of `ty.path` (path may go through anonymous unions). The field
/// exists only where every macro in `requires` is defined (a field that a later
/// kernel added).
fn field_if(ty: &str, path: &str, requires: &[&str]) -> [Item; 2] {
    let requires: Vec<String> = requires.iter().map(|r| (*r).to_string()).collect();
    let rpath = rust_field_path(ty, path);
    [
        Item {
            group: "layout",
            name: format!("offset:{ty}.{path}"),
            expr: format!("__builtin_offsetof(struct {ty}, {path})"),
            radix: Radix::Dec,
            requires: requires.clone(),
            rust: RustExpr::Offset(ty.to_string(), rpath.clone()),
        },
        Item {
            group: "layout",
            name: format!("size:{ty}.{path}"),
            expr: format!("sizeof(((struct {ty} *)0)->{path})"),
            radix: Radix::Dec,
            requires,
            rust: RustExpr::FieldSize(ty.to_string(), rpath),
        },
    ]
}

fn field(ty: &str, path: &str) -> [Item; 2] {
    field_if(ty, path, &[])
}

fn ioctl(name: &str) -> Item {
    Item {
        group: "ioctl",
        name: format!("ioctl:{name}"),
        expr: name.to_string(),
        radix: Radix::Hex,
        requires: vec![name.to_string()],
        rust: RustExpr::Ioctl(name.to_string()),
    }
}

/// A core register id, computed the way `arch/arm64/include/uapi/asm/kvm.h`
/// documents it (`KVM_REG_ARM_CORE_REG(name)` = offset in `struct kvm_regs` / 4).
fn core_reg(path: &str, size_macro: &str, bytes: u32) -> Item {
    // `a.b[n]`: the Rust side adds n elements to the offset of `a.b`.
    let (base, index) = match path.split_once('[') {
        Some((base, rest)) => (base, rest.trim_end_matches(']').parse::<u32>().unwrap_or(0)),
        None => (path, 0),
    };
    let mut offset = format!("offset_of!(kvm_regs, {base})");
    if index != 0 {
        let _ = write!(offset, " + {index} * {bytes}");
    }
    Item {
        group: "regid",
        name: format!("regid:core.{path}"),
        expr: format!(
            "KVM_REG_ARM64 | {size_macro} | KVM_REG_ARM_CORE | KVM_REG_ARM_CORE_REG({path})"
        ),
        radix: Radix::Hex,
        requires: Vec::new(),
        rust: RustExpr::CoreReg(offset, bytes),
    }
}

fn sysreg(name: &str, enc: [u8; 5]) -> Item {
    let [op0, op1, crn, crm, op2] = enc;
    Item {
        group: "regid",
        name: format!("regid:sys.{name}"),
        expr: format!("ARM64_SYS_REG({op0}, {op1}, {crn}, {crm}, {op2})"),
        radix: Radix::Hex,
        requires: Vec::new(),
        rust: RustExpr::SysReg(enc),
    }
}

/// `#define NAME <decimal>` lines of a header.
fn numeric_defines(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("#define") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        if let Ok(v) = value.parse::<u64>() {
            out.push((name.to_string(), v));
        }
    }
    out
}

/// Exit reasons (`KVM_EXIT_*`) and arm64 capabilities (`KVM_CAP_ARM_*`) that a
/// header defines, in header order. Sub-codes that share the `KVM_EXIT_` prefix but
/// are not exit reasons (`KVM_EXIT_IO_IN`, `KVM_EXIT_HYPERV_SYNIC`, ...) are left out.
fn exits_and_arm_caps(inc: &Path) -> Result<(Vec<String>, Vec<String>), String> {
    let path = kvm_h(inc);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut exits = Vec::new();
    let mut caps = Vec::new();
    for (name, _) in numeric_defines(&text) {
        let sub_code = ["KVM_EXIT_IO_", "KVM_EXIT_HYPERV_", "KVM_EXIT_XEN_"]
            .iter()
            .any(|p| name.starts_with(p));
        if name.starts_with("KVM_EXIT_") && !sub_code {
            exits.push(name);
        } else if name.starts_with("KVM_CAP_ARM_") {
            caps.push(name);
        }
    }
    Ok((exits, caps))
}

/// The NISV-relevant subset: every exit reason and `KVM_CAP_ARM_*` that ANY of the
/// versions defines (oldest header first, then what later ones add, so an item never
/// disappears silently), plus a fixed list. Items a version lacks are recorded as
/// absent there.
fn fixture_items(headers: &[(Version, PathBuf)]) -> Result<Vec<Item>, String> {
    use Radix::{Dec, Hex};
    let mut exits: Vec<String> = Vec::new();
    let mut arm_caps: Vec<String> = Vec::new();
    for (_, inc) in headers {
        let (e, c) = exits_and_arm_caps(inc)?;
        for n in e {
            if !exits.contains(&n) {
                exits.push(n);
            }
        }
        for n in c {
            if !arm_caps.contains(&n) {
                arm_caps.push(n);
            }
        }
    }
    let mut items = Vec::new();
    items.extend(exits.iter().map(|n| konst("exit", n, Dec)));
    items.push(konst("exit", "KVM_EXIT_ARM_SEA_FLAG_GPA_VALID", Hex));
    items.extend(arm_caps.iter().map(|n| konst("cap", n, Dec)));
    for cap in [
        "KVM_CAP_USER_MEMORY",
        "KVM_CAP_SET_GUEST_DEBUG",
        "KVM_CAP_VCPU_EVENTS",
        "KVM_CAP_IRQFD",
        "KVM_CAP_ONE_REG",
        "KVM_CAP_READONLY_MEM",
        "KVM_CAP_DEVICE_CTRL",
        "KVM_CAP_IMMEDIATE_EXIT",
    ] {
        items.push(konst("cap", cap, Dec));
    }
    for c in ["KVMIO", "KVM_API_VERSION", "KVM_VM_TYPE_ARM_IPA_SIZE_MASK"] {
        items.push(konst("const", c, Hex));
    }
    for c in [
        "KVM_ARM_VCPU_POWER_OFF",
        "KVM_ARM_VCPU_EL1_32BIT",
        "KVM_ARM_VCPU_PSCI_0_2",
        "KVM_ARM_VCPU_PMU_V3",
        "KVM_ARM_VCPU_SVE",
        "KVM_ARM_VCPU_PTRAUTH_ADDRESS",
        "KVM_ARM_VCPU_PTRAUTH_GENERIC",
        "KVM_SYSTEM_EVENT_SHUTDOWN",
        "KVM_SYSTEM_EVENT_RESET",
        "KVM_SYSTEM_EVENT_CRASH",
        "KVM_SYSTEM_EVENT_WAKEUP",
        "KVM_SYSTEM_EVENT_SUSPEND",
    ] {
        items.push(konst("const", c, Dec));
    }
    // An enumerator, not a macro: bindgen names it after its enum.
    items.push(Item {
        group: "const",
        name: "KVM_DEV_TYPE_ARM_VGIC_V3".into(),
        expr: "KVM_DEV_TYPE_ARM_VGIC_V3".into(),
        radix: Dec,
        requires: Vec::new(),
        rust: RustExpr::Const("kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3".into()),
    });
    for c in [
        "KVM_DEV_ARM_VGIC_GRP_ADDR",
        "KVM_DEV_ARM_VGIC_GRP_DIST_REGS",
        "KVM_DEV_ARM_VGIC_GRP_NR_IRQS",
        "KVM_DEV_ARM_VGIC_GRP_CTRL",
        "KVM_DEV_ARM_VGIC_GRP_REDIST_REGS",
        "KVM_DEV_ARM_VGIC_CTRL_INIT",
        "KVM_VGIC_V3_ADDR_TYPE_DIST",
        "KVM_VGIC_V3_ADDR_TYPE_REDIST",
        "KVM_ARM_IRQ_TYPE_SHIFT",
        "KVM_ARM_IRQ_TYPE_SPI",
        "KVM_ARM_IRQ_VCPU_SHIFT",
        "KVM_ARM_IRQ_NUM_SHIFT",
        "KVM_MEM_LOG_DIRTY_PAGES",
        "KVM_MEM_READONLY",
        "KVM_IRQFD_FLAG_DEASSIGN",
    ] {
        items.push(konst("const", c, Dec));
    }
    for c in [
        "KVM_REG_ARM64",
        "KVM_REG_SIZE_SHIFT",
        "KVM_REG_SIZE_MASK",
        "KVM_REG_SIZE_U8",
        "KVM_REG_SIZE_U16",
        "KVM_REG_SIZE_U32",
        "KVM_REG_SIZE_U64",
        "KVM_REG_SIZE_U128",
        "KVM_REG_SIZE_U256",
        "KVM_REG_SIZE_U512",
        "KVM_REG_SIZE_U1024",
        "KVM_REG_SIZE_U2048",
        "KVM_REG_ARM_COPROC_MASK",
        "KVM_REG_ARM_COPROC_SHIFT",
        "KVM_REG_ARM_CORE",
        "KVM_REG_ARM64_SYSREG",
        "KVM_REG_ARM64_SYSREG_OP0_MASK",
        "KVM_REG_ARM64_SYSREG_OP0_SHIFT",
        "KVM_REG_ARM64_SYSREG_OP1_MASK",
        "KVM_REG_ARM64_SYSREG_OP1_SHIFT",
        "KVM_REG_ARM64_SYSREG_CRN_MASK",
        "KVM_REG_ARM64_SYSREG_CRN_SHIFT",
        "KVM_REG_ARM64_SYSREG_CRM_MASK",
        "KVM_REG_ARM64_SYSREG_CRM_SHIFT",
        "KVM_REG_ARM64_SYSREG_OP2_MASK",
        "KVM_REG_ARM64_SYSREG_OP2_SHIFT",
    ] {
        items.push(konst("regid", c, Hex));
    }
    // `ARM64_SYS_REG(...)` macros: kvm-nisv-sys writes these by hand (reg_id.rs).
    for c in [
        "KVM_REG_ARM_TIMER_CTL",
        "KVM_REG_ARM_TIMER_CNT",
        "KVM_REG_ARM_TIMER_CVAL",
    ] {
        let mut item = konst("regid", c, Hex);
        item.rust = RustExpr::HandConst(c.to_string());
        items.push(item);
    }
    for (path, size, bytes) in [
        ("regs.regs[0]", "KVM_REG_SIZE_U64", 8),
        ("regs.regs[1]", "KVM_REG_SIZE_U64", 8),
        ("regs.regs[30]", "KVM_REG_SIZE_U64", 8),
        ("regs.sp", "KVM_REG_SIZE_U64", 8),
        ("regs.pc", "KVM_REG_SIZE_U64", 8),
        ("regs.pstate", "KVM_REG_SIZE_U64", 8),
        ("sp_el1", "KVM_REG_SIZE_U64", 8),
        ("elr_el1", "KVM_REG_SIZE_U64", 8),
        ("spsr[0]", "KVM_REG_SIZE_U64", 8),
        ("fp_regs.vregs[0]", "KVM_REG_SIZE_U128", 16),
        ("fp_regs.vregs[31]", "KVM_REG_SIZE_U128", 16),
        ("fp_regs.fpsr", "KVM_REG_SIZE_U32", 4),
        ("fp_regs.fpcr", "KVM_REG_SIZE_U32", 4),
    ] {
        items.push(core_reg(path, size, bytes));
    }
    for (name, enc) in [
        ("MPIDR_EL1", [3, 0, 0, 0, 5]),
        ("ID_AA64MMFR0_EL1", [3, 0, 0, 7, 0]),
        ("SCTLR_EL1", [3, 0, 1, 0, 0]),
        ("TTBR0_EL1", [3, 0, 2, 0, 0]),
        ("TTBR1_EL1", [3, 0, 2, 0, 1]),
        ("TCR_EL1", [3, 0, 2, 0, 2]),
        ("ESR_EL1", [3, 0, 5, 2, 0]),
        ("FAR_EL1", [3, 0, 6, 0, 0]),
        ("PAR_EL1", [3, 0, 7, 4, 0]),
        ("MAIR_EL1", [3, 0, 10, 2, 0]),
        ("VBAR_EL1", [3, 0, 12, 0, 0]),
        ("DCZID_EL0", [3, 3, 0, 0, 7]),
        ("CNTV_CTL_EL0", [3, 3, 14, 3, 1]),
    ] {
        items.push(sysreg(name, enc));
    }
    for name in [
        "KVM_GET_API_VERSION",
        "KVM_CREATE_VM",
        "KVM_CHECK_EXTENSION",
        "KVM_GET_VCPU_MMAP_SIZE",
        "KVM_CREATE_VCPU",
        "KVM_SET_USER_MEMORY_REGION",
        "KVM_RUN",
        "KVM_IRQ_LINE",
        "KVM_IRQFD",
        "KVM_GET_VCPU_EVENTS",
        "KVM_SET_VCPU_EVENTS",
        "KVM_ENABLE_CAP",
        "KVM_GET_ONE_REG",
        "KVM_SET_ONE_REG",
        "KVM_GET_REG_LIST",
        "KVM_ARM_VCPU_INIT",
        "KVM_ARM_PREFERRED_TARGET",
        "KVM_CREATE_DEVICE",
        "KVM_SET_DEVICE_ATTR",
        "KVM_GET_DEVICE_ATTR",
    ] {
        items.push(ioctl(name));
    }
    // struct kvm_run: the header, the exit union and the members the NISV path uses.
    items.push(size("kvm_run"));
    for path in [
        "request_interrupt_window",
        "immediate_exit",
        "exit_reason",
        "ready_for_interrupt_injection",
        "if_flag",
        "flags",
        "cr8",
        "apic_base",
        "mmio",
        "mmio.phys_addr",
        "mmio.data",
        "mmio.len",
        "mmio.is_write",
        "arm_nisv",
        "arm_nisv.esr_iss",
        "arm_nisv.fault_ipa",
        "system_event",
        "system_event.type",
        "system_event.flags",
        "fail_entry",
        "fail_entry.hardware_entry_failure_reason",
        "fail_entry.cpu",
        "internal",
        "internal.suberror",
        // The exit union's `char padding[256]`: the reserved space exit payloads
        // may grow into.
        "padding",
        "kvm_valid_regs",
        "kvm_dirty_regs",
        "s",
    ] {
        items.extend(field("kvm_run", path));
    }
    // Linux 5.18 carved `ndata` out of the implicit padding after `type` and put
    // `flags` in a union with `data[16]` (KVM_CAP_SYSTEM_EVENT_DATA).
    for path in ["system_event.ndata", "system_event.data"] {
        items.extend(field_if("kvm_run", path, &["KVM_CAP_SYSTEM_EVENT_DATA"]));
    }
    // KVM_EXIT_ARM_SEA's payload (Linux 7.2 and later).
    for path in [
        "arm_sea",
        "arm_sea.flags",
        "arm_sea.esr",
        "arm_sea.gva",
        "arm_sea.gpa",
    ] {
        items.extend(field_if("kvm_run", path, &["KVM_EXIT_ARM_SEA"]));
    }
    items.push(size("kvm_vcpu_events"));
    for path in [
        "exception",
        "exception.serror_pending",
        "exception.serror_has_esr",
        "exception.ext_dabt_pending",
        "exception.pad",
        "exception.serror_esr",
        "reserved",
    ] {
        items.extend(field("kvm_vcpu_events", path));
    }
    let structs: &[(&str, &[&str])] = &[
        ("kvm_enable_cap", &["cap", "flags", "args", "pad"]),
        ("kvm_one_reg", &["id", "addr"]),
        ("kvm_vcpu_init", &["target", "features"]),
        (
            "kvm_userspace_memory_region",
            &[
                "slot",
                "flags",
                "guest_phys_addr",
                "memory_size",
                "userspace_addr",
            ],
        ),
        ("kvm_device_attr", &["flags", "group", "attr", "addr"]),
        ("kvm_create_device", &["type", "fd", "flags"]),
        ("kvm_irq_level", &["irq", "level"]),
        ("kvm_irqfd", &["fd", "gsi", "flags", "resamplefd", "pad"]),
        ("user_pt_regs", &["regs", "sp", "pc", "pstate"]),
        (
            "user_fpsimd_state",
            &["vregs", "fpsr", "fpcr", "__reserved"],
        ),
        (
            "kvm_regs",
            &["regs", "sp_el1", "elr_el1", "spsr", "fp_regs"],
        ),
    ];
    for (ty, fields) in structs {
        items.push(size(ty));
        for f in *fields {
            items.extend(field(ty, f));
        }
    }
    let mut seen = BTreeSet::new();
    for item in &items {
        if !seen.insert(item.name.clone()) {
            return Err(format!("duplicate fixture item {}", item.name));
        }
    }
    Ok(items)
}

/// Evaluates every item's expression with libclang for the arm64 target; `None`
/// where the version does not define one of the item's `requires` macros.
fn evaluate(inc: &Path, version: Version, items: &[Item]) -> Result<Vec<Option<u64>>, String> {
    let mut wrapper = String::from(
        "#include <linux/kvm.h>\n\
         #ifndef offsetof\n\
         #define offsetof(TYPE, MEMBER) __builtin_offsetof(TYPE, MEMBER)\n\
         #endif\n",
    );
    for (i, item) in items.iter().enumerate() {
        let guard = item
            .requires
            .iter()
            .map(|r| format!("defined({r})"))
            .collect::<Vec<_>>()
            .join(" && ");
        if !guard.is_empty() {
            let _ = writeln!(wrapper, "#if {guard}");
        }
        let _ = writeln!(
            wrapper,
            "const unsigned long long {FIXTURE_VAR}{i} = (unsigned long long)({});",
            item.expr
        );
        if !guard.is_empty() {
            let _ = writeln!(wrapper, "#endif");
        }
    }
    let bindings = bindgen::Builder::default()
        .header_contents("kvm-nisv-fixture.h", &wrapper)
        .clang_args(clang_args(inc))
        .allowlist_var(format!("{FIXTURE_VAR}.*"))
        .use_core()
        .layout_tests(false)
        .formatter(bindgen::Formatter::None)
        .disable_header_comment()
        .generate()
        .map_err(|e| format!("evaluating the fixture items for {version}: {e}"))?;
    // Output tokens look like `pub const kvm_nisv_fixture_7 : :: core :: ffi ::
    // c_ulonglong = 2352 ;`: take the literal between `=` and `;`.
    let text = bindings.to_string();
    let mut values = BTreeMap::new();
    for stmt in text.split(';') {
        let Some(pos) = stmt.find(FIXTURE_VAR) else {
            continue;
        };
        let rest = &stmt[pos + FIXTURE_VAR.len()..];
        let idx: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let idx: usize = idx
            .parse()
            .map_err(|e| format!("unparsable bindgen output `{stmt}`: {e}"))?;
        let (_, lit) = stmt
            .rsplit_once('=')
            .ok_or_else(|| format!("no value in `{stmt}`"))?;
        let digits: String = lit
            .trim()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let value: u64 = digits
            .parse()
            .map_err(|e| format!("unparsable value in `{stmt}`: {e}"))?;
        values.insert(idx, value);
    }
    // Which guarded items exist: a second pass that only asks the preprocessor.
    let mut probe = String::from("#include <linux/kvm.h>\n");
    for (i, item) in items.iter().enumerate() {
        let guard = item
            .requires
            .iter()
            .map(|r| format!("defined({r})"))
            .collect::<Vec<_>>()
            .join(" && ");
        let guard = if guard.is_empty() { "1".into() } else { guard };
        let _ = writeln!(
            probe,
            "#if {guard}\nconst int kvm_nisv_present_{i} = 1;\n#endif"
        );
    }
    let present_text = bindgen::Builder::default()
        .header_contents("kvm-nisv-present.h", &probe)
        .clang_args(clang_args(inc))
        .allowlist_var("kvm_nisv_present_.*")
        .use_core()
        .layout_tests(false)
        .formatter(bindgen::Formatter::None)
        .disable_header_comment()
        .generate()
        .map_err(|e| format!("probing the fixture items for {version}: {e}"))?
        .to_string();
    let present: BTreeSet<usize> = present_text
        .split(';')
        .filter_map(|stmt| {
            let pos = stmt.find("kvm_nisv_present_")?;
            let rest = &stmt[pos + "kvm_nisv_present_".len()..];
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
        .collect();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match (present.contains(&i), values.get(&i)) {
            (true, Some(v)) => Ok(Some(*v)),
            (false, _) => Ok(None),
            (true, None) => Err(format!(
                "Linux {version}: libclang could not evaluate `{}` ({})",
                item.name, item.expr
            )),
        })
        .collect()
}

fn format_value(radix: Radix, v: u64) -> String {
    match radix {
        Radix::Dec => v.to_string(),
        Radix::Hex => format!("{v:#x}"),
    }
}

fn fixture_text(version: Version, items: &[Item], values: &[Option<u64>]) -> String {
    let mut out = format!(
        "# kvm-nisv-sys ABI fixture: Linux {version} arm64 uapi headers (Debian linux-libc-dev:arm64),\n\
         # evaluated by libclang for {CLANG_TARGET}. @generated by kvm-nisv-gen (gen/):\n\
         # do not edit, run scripts/regen-bindings.\n\
         # Format: `item value`, or `item absent` where this kernel does not define the item.\n\
         # Items: C macro names (exits, caps, constants, register ids),\n\
         # `ioctl:NAME` (request number), `size:TYPE[.FIELD]`, `offset:TYPE.FIELD`,\n\
         # `regid:core.FIELD` (core register id of a struct kvm_regs field) and\n\
         # `regid:sys.NAME` (ARM64_SYS_REG id).\n"
    );
    for (item, v) in items.iter().zip(values) {
        match v {
            Some(v) => {
                let _ = writeln!(out, "{} {}", item.name, format_value(item.radix, *v));
            }
            None => {
                let _ = writeln!(out, "{} absent", item.name);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The Rust-side table (tests/generated/rust_items.rs)
// ---------------------------------------------------------------------------

/// Whether the generated bindings define `pub const NAME`.
fn bindings_define(bindings: &str, name: &str) -> bool {
    bindings.contains(&format!("pub const {name}:"))
}

fn rust_items_file(
    version: Version,
    items: &[Item],
    values: &[Option<u64>],
    bindings: &str,
) -> Result<String, String> {
    let mut body = String::new();
    for (item, v) in items.iter().zip(values) {
        if v.is_none() {
            continue;
        }
        let name = &item.name;
        let expr = match &item.rust {
            RustExpr::Const(c) => {
                if !bindings_define(bindings, c) {
                    return Err(format!(
                        "fixture item {name}: the Linux {version} bindings have no `pub const {c}`"
                    ));
                }
                format!("{c} as u64")
            }
            RustExpr::HandConst(c) => format!("{c} as u64"),
            RustExpr::Size(ty) => format!("size_of::<{ty}>() as u64"),
            RustExpr::Offset(ty, path) => format!("offset_of!({ty}, {path}) as u64"),
            RustExpr::FieldSize(ty, path) => format!("field_size!({ty}, {path})"),
            RustExpr::Ioctl(n) => {
                let _ = writeln!(body, "    #[cfg(feature = \"ioctls\")]");
                format!("{n}() as u64")
            }
            RustExpr::CoreReg(offset, bytes) => {
                format!("core_reg_id(\"{name}\", {offset}, {bytes})")
            }
            RustExpr::SysReg([op0, op1, crn, crm, op2]) => {
                format!("sys_reg_id(\"{name}\", [{op0}, {op1}, {crn}, {crm}, {op2}])")
            }
        };
        let _ = writeln!(body, "    v.push((\"{name}\", {expr}));");
    }
    let code = format!(
        "/// Every item of `fixtures/linux-{version}.txt` that Linux {version} defines, computed\n\
         /// from the public Rust API of kvm-nisv-sys.\n\
         #[allow(unused_unsafe, clippy::unnecessary_cast, clippy::identity_op)]\n\
         fn rust_items() -> Vec<(&'static str, u64)> {{\n\
         let mut v: Vec<(&'static str, u64)> = Vec::new();\n\
         {body}\
         v\n\
         }}\n"
    );
    let code = rustfmt(&code)?;
    Ok(format!(
        "{LICENSE_HEADER}\n// @generated by kvm-nisv-gen (gen/) from the same item list as the fixtures;\n\
         // `include!`d by tests/abi_fixtures.rs, which defines `field_size!`, `core_reg_id`\n\
         // and `sys_reg_id`. Do not edit: run scripts/regen-bindings.\n\n{code}"
    ))
}

// ---------------------------------------------------------------------------
// docs/abi.md table
// ---------------------------------------------------------------------------

fn group_title(group: &str) -> &'static str {
    match group {
        "exit" => "Exit reasons (`KVM_EXIT_*`)",
        "cap" => "Capabilities",
        "const" => "Constants",
        "regid" => "Register id encodings and ids",
        "ioctl" => "ioctl request numbers (arm64)",
        _ => "Layouts (bytes)",
    }
}

/// How an item changes from the oldest to the newest version.
fn status(versions: &[Version], item: &Item, cells: &[Option<u64>]) -> String {
    let present: Vec<(usize, u64)> = cells
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    let Some(&(first, _)) = present.first() else {
        return "absent".into();
    };
    let contiguous = present.len() == cells.len() - first;
    let same = present.windows(2).all(|w| w[0].1 == w[1].1);
    match (contiguous, same) {
        (true, true) if first == 0 => "yes".into(),
        (true, true) => format!("added in {}", versions[first]),
        (true, false) if item.group == "layout" => {
            "changed inside reserved space (see the check)".into()
        }
        _ => "**NO**".into(),
    }
}

fn doc_table(versions: &[Version], items: &[Item], values: &[Vec<Option<u64>>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{TABLE_BEGIN}");
    let header = versions
        .iter()
        .map(|v| format!(" {v} |"))
        .collect::<String>();
    let rule = versions.iter().map(|_| " --- |").collect::<String>();
    let mut groups: Vec<&str> = Vec::new();
    for item in items {
        if !groups.contains(&item.group) {
            groups.push(item.group);
        }
    }
    for group in groups {
        let _ = writeln!(out, "\n#### {}\n", group_title(group));
        let _ = writeln!(out, "| item |{header} same |");
        let _ = writeln!(out, "| --- |{rule} --- |");
        for (i, item) in items.iter().enumerate().filter(|(_, it)| it.group == group) {
            let cells: Vec<Option<u64>> = values
                .iter()
                .map(|vals| vals.get(i).copied().flatten())
                .collect();
            let row = cells
                .iter()
                .map(|v| match v {
                    Some(v) => format!(" `{}` |", format_value(item.radix, *v)),
                    None => " — |".to_string(),
                })
                .collect::<String>();
            let _ = writeln!(
                out,
                "| `{}` |{row} {} |",
                item.name,
                status(versions, item, &cells)
            );
        }
    }
    let _ = writeln!(out, "\n{TABLE_END}");
    out
}

fn splice_table(doc: &str, table: &str) -> Result<String, String> {
    let begin = doc
        .find(TABLE_BEGIN)
        .ok_or("docs/abi.md has no begin marker for the generated table")?;
    let end = doc
        .find(TABLE_END)
        .ok_or("docs/abi.md has no end marker for the generated table")?;
    if end < begin {
        return Err("docs/abi.md: table markers out of order".into());
    }
    let after = &doc[end + TABLE_END.len()..];
    let after = after.strip_prefix('\n').unwrap_or(after);
    Ok(format!("{}{table}{after}", &doc[..begin]))
}

// ---------------------------------------------------------------------------

fn write(out: &Path, rel: &str, contents: &str) -> Result<(), String> {
    let path = out.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("kvm-nisv-gen: wrote {rel}");
    Ok(())
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let (oldest, _) = args.headers.first().ok_or("no headers")?.clone();
    let (newest, _) = args.headers.last().ok_or("no headers")?.clone();
    let bindings_hdr = args
        .headers
        .iter()
        .find(|(v, _)| *v == args.bindings)
        .map(|(_, h)| h.clone())
        .ok_or("no headers for the bindings version")?;
    eprintln!(
        "kvm-nisv-gen: bindings from Linux {}, fixtures from {oldest}..={newest}",
        args.bindings
    );

    let bindings = generate_bindings(&bindings_hdr, args.bindings)?;
    write(&args.out, "kvm-nisv-sys/src/arm64/bindings.rs", &bindings)?;

    let items = fixture_items(&args.headers)?;
    let mut all_values = Vec::new();
    for (version, inc) in &args.headers {
        let values = evaluate(inc, *version, &items)?;
        let rel = format!("kvm-nisv-sys/tests/fixtures/linux-{version}.txt");
        write(&args.out, &rel, &fixture_text(*version, &items, &values))?;
        if *version == args.bindings {
            write(
                &args.out,
                "kvm-nisv-sys/tests/generated/rust_items.rs",
                &rust_items_file(*version, &items, &values, &bindings)?,
            )?;
        }
        all_values.push(values);
    }

    let versions: Vec<Version> = args.headers.iter().map(|(v, _)| *v).collect();
    let table = doc_table(&versions, &items, &all_values);
    let doc_path = args.repo.join("docs/abi.md");
    let doc =
        std::fs::read_to_string(&doc_path).map_err(|e| format!("{}: {e}", doc_path.display()))?;
    write(&args.out, "docs/abi.md", &splice_table(&doc, &table)?)?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvm-nisv-gen: error: {e}");
            ExitCode::FAILURE
        }
    }
}
