// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! ABI probes: what THIS kernel does, printed as `@@abi KEY VALUE` lines for
//! `scripts/abi-matrix` (which boots every Debian kernel series and writes
//! docs/compatibility.md from these lines).
//!
//! Unlike tests/kvm_nisv.rs these tests assert only what must hold on every
//! kernel (the exits happen at all); the values that differ between kernels are
//! recorded, not judged. Each probe builds a one-vCPU VM with a 40-bit IPA space,
//! 2 MiB of RAM at IPA 0x8000_0000, no memslot at 0x1000_0000, and runs a few
//! hand-assembled instructions (assembly in the comments).
#![cfg(all(target_arch = "aarch64", feature = "kvm-ioctls"))]
#![allow(clippy::undocumented_unsafe_blocks)]

mod kvm_common;

use std::os::fd::AsRawFd;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_common::{RAM_BASE, TestVm};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};
use kvm_nisv::cap::Cap;
use kvm_nisv::dczid;
use kvm_nisv::exit::{ArmAbortExit, KVM_EXIT_ARM_NISV};
use kvm_nisv::kvm_ioctls::{ExtDabtInjector, KvmNisvCaps, VmFdNisvExt};
use kvm_nisv::regs::{Reg, SysReg, VcpuRegs};

const HOLE: u64 = 0x1000_0000;
const IPA_BITS: u32 = 40;
/// `KVM_CAP_ARM_VM_IPA_SIZE`: the host's maximum IPA size in bits.
const KVM_CAP_ARM_VM_IPA_SIZE: u32 = kvm_nisv_sys::KVM_CAP_ARM_VM_IPA_SIZE;
/// Vector table at RAM_BASE + 0x800; "current EL with SP_ELx, synchronous" at +0x200.
const VBAR_OFF: u64 = 0x800;
const HANDLER: u64 = VBAR_OFF + 0x200;

const STR_X0_X1_POST8: u32 = 0xf800_8420; // str x0, [x1], #8
const STR_X0_X1: u32 = 0xf900_0020; // str x0, [x1]
const LDP_X2_X3_X1: u32 = 0xa940_0c22; // ldp x2, x3, [x1]
const LDRSB_X2_X1: u32 = 0x3980_0022; // ldrsb x2, [x1]
const STR_X2_X9: u32 = 0xf900_0122; // str x2, [x9]
const B_SELF: u32 = 0x1400_0000; // b .
const MRS_X6_ESR_EL1: u32 = 0xd538_5206; // mrs x6, esr_el1
const STR_X6_X9: u32 = 0xf900_0126; // str x6, [x9]
const ADD_X10_X10_1: u32 = 0x9100_054a; // add x10, x10, #1
const STR_X10_X9: u32 = 0xf900_012a; // str x10, [x9]
const MRS_X0_DCZID_EL0: u32 = 0xd53b_00e0; // mrs x0, dczid_el0

/// One `@@abi KEY VALUE` line (VALUE may contain spaces).
fn record(key: &str, value: impl std::fmt::Display) {
    println!("@@abi {key} {value}");
}

/// The common test VM, with this file's constructors and run helpers.
type Guest = TestVm;

impl Guest {
    fn new(code: &[(u64, u32)], enable_nisv: bool) -> Guest {
        Self::with_ipa(code, enable_nisv, IPA_BITS)
    }

    fn with_ipa(code: &[(u64, u32)], enable_nisv: bool, ipa_bits: u32) -> Guest {
        let mut t = TestVm::create(code, enable_nisv, ipa_bits);
        t.vcpu
            .set(Reg::Sys(SysReg::VbarEl1), RAM_BASE + VBAR_OFF)
            .unwrap();
        t
    }

    /// Run until an exit that is not EINTR.
    fn run(&mut self) -> Result<Exit, kvm_ioctls::Error> {
        loop {
            return match self.vcpu.run() {
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    let mut b = [0u8; 8];
                    b[..data.len().min(8)].copy_from_slice(&data[..data.len().min(8)]);
                    Ok(Exit::MmioWrite(addr, u64::from_le_bytes(b)))
                }
                Ok(VcpuExit::MmioRead(addr, data)) => Ok(Exit::MmioRead(addr, data.len())),
                Ok(VcpuExit::Unsupported(r)) if r == KVM_EXIT_ARM_NISV => {
                    match ArmAbortExit::from_kvm_run(self.vcpu.get_kvm_run()) {
                        Some(ArmAbortExit::Nisv(n)) => Ok(Exit::Nisv(n.iss.bits(), n.fault_ipa)),
                        other => panic!("exit 28 parsed as {other:?}"),
                    }
                }
                Ok(other) => Ok(Exit::Other(format!("{other:?}"))),
                Err(e) if e.errno() == libc::EINTR => continue,
                Err(e) => Err(e),
            };
        }
    }

    fn pc(&mut self) -> u64 {
        self.vcpu.get(Reg::Pc).unwrap()
    }
}

#[derive(Debug, PartialEq)]
enum Exit {
    Nisv(u64, u64),
    MmioWrite(u64, u64),
    MmioRead(u64, usize),
    Other(String),
}

#[test]
fn probe_host() {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    record("kernel", rel.trim());
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    record("page_size", page);
}

#[test]
fn probe_capabilities() {
    let kvm = Kvm::new().unwrap();
    let vm = kvm.create_vm_with_ipa_size(IPA_BITS).unwrap();
    for (name, c) in [
        ("NISV_TO_USER", Cap::ArmNisvToUser),
        ("INJECT_EXT_DABT", Cap::ArmInjectExtDabt),
        ("SEA_TO_USER", Cap::ArmSeaToUser),
    ] {
        let sys = kvm.check_nisv_cap(c).unwrap();
        let v = vm.check_nisv_cap(c).unwrap();
        record(&format!("cap.{name}"), format!("{sys} / {v}"));
    }
    // Raw: the IPA size limit (not one of the crate's Cap variants).
    // SAFETY: KVM_CHECK_EXTENSION takes an integer argument and writes no
    // memory; `fd` is the open /dev/kvm or VM fd.
    let ipa = |fd: i32| unsafe {
        libc::ioctl(
            fd,
            kvm_nisv_sys::KVM_CHECK_EXTENSION() as _,
            libc::c_ulong::from(KVM_CAP_ARM_VM_IPA_SIZE),
        )
    };
    record(
        "cap.VM_IPA_SIZE",
        format!("{} / {}", ipa(kvm.as_raw_fd()), ipa(vm.as_raw_fd())),
    );
    let enable = match vm.enable_sea_to_user() {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("refused ({e})"),
    };
    record("sea_to_user.enable", enable);
}

#[test]
fn probe_nisv_exit_fields() {
    // Post-index store with a page offset: WnR, the fault level, fault_ipa, PC.
    let mut g = Guest::new(&[(0, STR_X0_X1_POST8), (4, B_SELF)], true);
    g.vcpu.set(Reg::X(1), HOLE + 0x10).unwrap();
    let exit = g.run().unwrap();
    let Exit::Nisv(iss, ipa) = exit else {
        panic!("expected KVM_EXIT_ARM_NISV, got {exit:?}")
    };
    record("nisv.esr_iss.str_post", format!("{iss:#x}"));
    record(
        "nisv.esr_iss.outside_mask",
        format!("{:#x}", iss & !0x17f_u64),
    );
    record(
        "nisv.fault_ipa",
        format!("{:#x} for an access to {:#x}", ipa, HOLE + 0x10),
    );
    let pc = g.pc();
    record(
        "nisv.pc",
        if pc == RAM_BASE {
            "not advanced".to_string()
        } else {
            format!("moved to {pc:#x}")
        },
    );
    record(
        "nisv.x1_writeback",
        if g.vcpu.get(Reg::X(1)).unwrap() == HOLE + 0x10 {
            "none"
        } else {
            "done by KVM"
        },
    );

    let mut g = Guest::new(&[(0, LDP_X2_X3_X1), (4, B_SELF)], true);
    g.vcpu.set(Reg::X(1), HOLE).unwrap();
    let exit = g.run().unwrap();
    let Exit::Nisv(iss, _) = exit else {
        panic!("expected KVM_EXIT_ARM_NISV for ldp, got {exit:?}")
    };
    record("nisv.esr_iss.ldp", format!("{iss:#x}"));
}

#[test]
fn probe_without_the_capability() {
    let mut g = Guest::new(&[(0, STR_X0_X1_POST8), (4, B_SELF)], false);
    g.vcpu.set(Reg::X(1), HOLE).unwrap();
    let r = g.run();
    record(
        "nisv.without_cap",
        match r {
            Err(e) if e.errno() == libc::ENOSYS => "KVM_RUN fails with ENOSYS".to_string(),
            Err(e) => format!("KVM_RUN fails with errno {}", e.errno()),
            Ok(exit) => format!("KVM_RUN returns {exit:?}"),
        },
    );
}

#[test]
fn probe_injected_abort_esr() {
    let mut g = Guest::new(
        &[
            (0, STR_X0_X1_POST8),      // str x0, [x1], #8  -> NISV, injected
            (4, B_SELF),               // b .
            (HANDLER, MRS_X6_ESR_EL1), // mrs x6, esr_el1
            (HANDLER + 4, STR_X6_X9),  // str x6, [x9]     -> MMIO exit with ESR_EL1
            (HANDLER + 8, B_SELF),
        ],
        true,
    );
    g.vcpu.set(Reg::X(1), HOLE + 0x28).unwrap();
    g.vcpu.set(Reg::X(9), HOLE + 0x2000).unwrap();
    assert!(matches!(g.run().unwrap(), Exit::Nisv(..)));
    ExtDabtInjector::new(&g.vm)
        .unwrap()
        .inject(&g.vcpu)
        .unwrap();
    let exit = g.run().unwrap();
    let Exit::MmioWrite(_, esr) = exit else {
        panic!("expected the handler's store, got {exit:?}")
    };
    record("inject.guest_esr_el1", format!("{esr:#x}"));
    let far = g.vcpu.get(Reg::Sys(SysReg::FarEl1)).unwrap();
    record(
        "inject.guest_far_el1",
        if far == HOLE + 0x28 {
            "the faulting VA".to_string()
        } else {
            format!("{far:#x}")
        },
    );
}

#[test]
fn probe_isv_load_sign_extension() {
    // ldrsb x2, [x1]: ISV = 1, SSE = 1, a KVM_EXIT_MMIO read of 1 byte; userspace
    // answers 0x80 and KVM completes the load into x2.
    let mut g = Guest::new(&[(0, LDRSB_X2_X1), (4, STR_X2_X9), (8, B_SELF)], true);
    g.vcpu.set(Reg::X(1), HOLE).unwrap();
    g.vcpu.set(Reg::X(9), HOLE + 0x1000).unwrap();
    match g.vcpu.run() {
        Ok(VcpuExit::MmioRead(addr, data)) => {
            assert_eq!(addr, HOLE);
            assert_eq!(data.len(), 1);
            data[0] = 0x80;
        }
        other => panic!("expected an MMIO read, got {other:?}"),
    }
    let exit = g.run().unwrap();
    let Exit::MmioWrite(_, x2) = exit else {
        panic!("expected the store of x2, got {exit:?}")
    };
    record(
        "mmio.ldrsb_0x80",
        format!(
            "x2 = {x2:#x} ({})",
            if x2 == 0xffff_ffff_ffff_ff80 {
                "sign-extended"
            } else {
                "not sign-extended"
            }
        ),
    );
}

/// Inject an abort in answer to an ordinary KVM_EXIT_MMIO (a plain store), then
/// see whether the handler ran from its first instruction. `clear_exit_reason`:
/// what the VMM does (kvm_run.exit_reason = 0 before re-entering).
fn inject_after_mmio(clear_exit_reason: bool) -> String {
    let mut g = Guest::new(
        &[
            (0, STR_X0_X1),            // str x0, [x1]      -> KVM_EXIT_MMIO
            (4, B_SELF),               // b .
            (HANDLER, ADD_X10_X10_1),  // add x10, x10, #1
            (HANDLER + 4, STR_X10_X9), // str x10, [x9]    -> MMIO exit with x10
            (HANDLER + 8, B_SELF),
        ],
        true,
    );
    g.vcpu.set(Reg::X(1), HOLE).unwrap();
    g.vcpu.set(Reg::X(9), HOLE + 0x2000).unwrap();
    g.vcpu.set(Reg::X(10), 0).unwrap();
    assert!(matches!(g.run().unwrap(), Exit::MmioWrite(HOLE, _)));
    ExtDabtInjector::new(&g.vm)
        .unwrap()
        .inject(&g.vcpu)
        .unwrap();
    if clear_exit_reason {
        g.vcpu.get_kvm_run().exit_reason = 0;
    }
    match g.run().unwrap() {
        Exit::MmioWrite(a, 1) if a == HOLE + 0x2000 => {
            "handler runs from its first instruction".into()
        }
        Exit::MmioWrite(a, 0) if a == HOLE + 0x2000 => {
            "the next KVM_RUN completes the MMIO: first handler instruction skipped".into()
        }
        other => format!("unexpected: {other:?}"),
    }
}

#[test]
fn probe_injection_after_mmio_exit() {
    record("inject_after_mmio.plain", inject_after_mmio(false));
    record(
        "inject_after_mmio.exit_reason_cleared",
        inject_after_mmio(true),
    );
}

#[test]
fn probe_dczid() {
    let mut g = Guest::new(&[(0, MRS_X0_DCZID_EL0), (4, STR_X0_X1), (8, B_SELF)], true);
    g.vcpu.set(Reg::X(1), HOLE).unwrap();
    record(
        "dczid.one_reg",
        match (&g.vcpu).get(Reg::Sys(SysReg::DczidEl0)) {
            Ok(v) => format!("{v:#x}"),
            Err(kvm_nisv::regs::RegError::Ioctl { source, .. }) => {
                format!("errno {} ({source})", source.errno())
            }
            Err(e) => format!("error: {e}"),
        },
    );
    let exit = g.run().unwrap();
    let Exit::MmioWrite(_, guest) = exit else {
        panic!("expected the store of DCZID_EL0, got {exit:?}")
    };
    let host = dczid::host_dczid().unwrap();
    record(
        "dczid.guest_vs_host",
        format!("guest {guest:#x}, VMM {host:#x}"),
    );
}

/// A physical address the emulated host's `-M virt` board leaves unassigned
/// (between the virtio-mmio transports ending at 0x0a00_4000 and the platform
/// bus at 0x0c00_0000): QEMU answers an access there with a bus error, which the
/// CPU reports as a synchronous external abort.
const UNASSIGNED_PA: u64 = 0x0b00_0000;
/// Where the probe maps that page into the guest.
const SEA_IPA: u64 = 0x2000_0000;
const LDR_X0_X1: u32 = 0xf940_0020; // ldr x0, [x1]
const STR_X0_X8: u32 = 0xf900_0100; // str x0, [x8]

extern "C" fn wake(_: libc::c_int) {}

/// One KVM_RUN that a signal interrupts (EINTR) if the vCPU has not exited after
/// `tenths` tenths of a second.
fn run_with_watchdog(vcpu: &mut VcpuFd, tenths: u32) -> Result<VcpuExit<'_>, kvm_ioctls::Error> {
    // SAFETY: an all-zero sigaction is valid (no flags, empty mask); the
    // handler does nothing, so it is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = wake as *const () as usize;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }
    // pthread_t is a pointer on musl: carry it as an integer.
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as usize;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let dog = std::thread::spawn(move || {
        for _ in 0..tenths {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if d2.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
        }
        // SAFETY: `me` is the test thread, alive until it joins this one; it
        // has a (no-op) SIGUSR2 handler, so the signal only interrupts KVM_RUN.
        unsafe { libc::pthread_kill(me as libc::pthread_t, libc::SIGUSR2) };
    });
    let r = vcpu.run();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = dog.join();
    r
}

/// Try to make the guest take a synchronous external abort that KVM forwards as
/// KVM_EXIT_ARM_SEA: a memslot backed by /dev/mem at an unassigned physical
/// address (a VM_PFNMAP mapping KVM maps as device memory at stage 2), read by
/// the guest. Records what happened instead if the exit does not come.
#[test]
fn probe_sea_exit() {
    // The kernel's view of the CPU: does it see FEAT_RAS? kvm_handle_guest_sea()
    // leaves every SEA to the host (an SError for the guest) without it.
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: SYSLOG_ACTION_READ_ALL writes at most `buf.len()` bytes to `buf`.
    let n = unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), buf.len() as libc::c_int) };
    let klog = String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned();
    record(
        "sea.host_ras",
        if klog.contains("RAS Extension Support") {
            "kernel detected FEAT_RAS"
        } else {
            "no FEAT_RAS in the kernel log"
        },
    );
    let mut g = Guest::new(
        &[
            (0, LDR_X0_X1),            // ldr x0, [x1]     (x1 = SEA_IPA)
            (4, STR_X0_X8),            // str x0, [x8]     -> MMIO exit if the load completed
            (8, B_SELF),               // b .
            (HANDLER, MRS_X6_ESR_EL1), // mrs x6, esr_el1  (the guest's own vector)
            (HANDLER + 4, STR_X6_X9),  // str x6, [x9]     -> MMIO exit with ESR_EL1
            (HANDLER + 8, B_SELF),
        ],
        true,
    );
    let sea_cap = g.vm.check_nisv_cap(Cap::ArmSeaToUser).unwrap();
    if sea_cap > 0 {
        g.vm.enable_sea_to_user().unwrap();
    }
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mem");
    let mem = match mem {
        Ok(f) => f,
        Err(e) => {
            record("sea.live", format!("cannot open /dev/mem: {e}"));
            return;
        }
    };
    let len = 0x1_0000usize;
    // SAFETY: a new shared mapping of /dev/mem chosen by the kernel (no fixed
    // address), so no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            mem.as_raw_fd(),
            UNASSIGNED_PA as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        record(
            "sea.live",
            format!(
                "mmap of /dev/mem at {UNASSIGNED_PA:#x} refused: {}",
                std::io::Error::last_os_error()
            ),
        );
        return;
    }
    let region = kvm_userspace_memory_region {
        slot: 1,
        guest_phys_addr: SEA_IPA,
        memory_size: len as u64,
        userspace_addr: p as u64,
        flags: 0,
    };
    // SAFETY: `p` maps `len` bytes that stay mapped until the VM is dropped
    // below, before the munmap.
    if let Err(e) = unsafe { g.vm.set_user_memory_region(region) } {
        record("sea.live", format!("memslot over /dev/mem refused: {e}"));
        // SAFETY: `p`/`len` is the mapping made above; no memslot uses it.
        unsafe { libc::munmap(p, len) };
        return;
    }
    g.vcpu.set(Reg::X(1), SEA_IPA + 0x40).unwrap();
    g.vcpu.set(Reg::X(8), HOLE + 0x3000).unwrap();
    g.vcpu.set(Reg::X(9), HOLE + 0x2000).unwrap();
    let r = run_with_watchdog(&mut g.vcpu, 100);
    let outcome = match r {
        Ok(VcpuExit::Unsupported(41)) => match ArmAbortExit::from_kvm_run(g.vcpu.get_kvm_run()) {
            Some(ArmAbortExit::Sea(s)) => format!("KVM_EXIT_ARM_SEA: {s}"),
            other => format!("exit 41 parsed as {other:?}"),
        },
        Ok(VcpuExit::MmioWrite(addr, data)) => {
            let mut b = [0u8; 8];
            b[..data.len().min(8)].copy_from_slice(&data[..data.len().min(8)]);
            let v = u64::from_le_bytes(b);
            if addr == HOLE + 0x2000 {
                format!(
                    "no exit: the guest took the abort at EL1 itself (ESR_EL1 {v:#x}), \
                     it never reached KVM"
                )
            } else {
                format!("no abort: the load completed with {v:#x}")
            }
        }
        Ok(other) => format!("KVM_RUN returned {other:?}"),
        Err(e) if e.errno() == libc::EINTR => {
            let pc = g.vcpu.get(Reg::Pc).unwrap_or(0);
            format!("no exit within 10 s (PC {pc:#x})")
        }
        Err(e) => format!("KVM_RUN failed: {e}"),
    };
    record(
        "sea.live",
        format!(
            "SEA_TO_USER {}: {outcome}",
            if sea_cap > 0 { "enabled" } else { "absent" }
        ),
    );
    drop(g);
    // SAFETY: `p`/`len` is the mapping made above; the VM that used it is gone.
    unsafe { libc::munmap(p, len) };
}

/// Does a guest run at all with each IPA size? On the emulated 16 KiB-page hosts
/// a VM with the host's maximum (52 bits with QEMU's LPA2) never ran its first
/// instruction; this finds the threshold. Not on 7.x: tearing down a VM with a
/// large IPA space there walks all of it (minutes at 52 bits on 16 KiB pages).
#[test]
fn probe_ipa_sizes() {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let major: u32 = rel
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let kvm = Kvm::new().unwrap();
    let max = kvm.get_host_ipa_limit() as u32;
    if major >= 7 {
        record(
            "ipa.runs",
            format!(
                "not probed on Linux {major}.x (teardown of a {max}-bit VM walks the whole IPA space)"
            ),
        );
        return;
    }
    let mut out = Vec::new();
    let mut sizes = vec![40, 44, 48, max.saturating_sub(1), max];
    sizes.retain(|&b| (32..=max).contains(&b));
    sizes.sort_unstable();
    sizes.dedup();
    for bits in sizes {
        let mut g = Guest::with_ipa(&[(0, STR_X0_X1), (4, B_SELF)], true, bits);
        g.vcpu.set(Reg::X(1), HOLE).unwrap();
        let ok = matches!(
            run_with_watchdog(&mut g.vcpu, 50),
            Ok(VcpuExit::MmioWrite(HOLE, _))
        );
        out.push(format!("{bits}: {}", if ok { "runs" } else { "stuck" }));
    }
    record("ipa.runs", out.join(", "));
}
