// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Building and running the VM (aarch64 hosts only).
//!
//! Order matters for KVM/arm64: vCPUs are created and initialised
//! (`KVM_ARM_VCPU_INIT`, PSCI 0.2, secondaries powered off) before the vGIC is
//! initialised (`CTRL_INIT` sizes the redistributors by the vCPU count); the
//! device tree needs the vCPUs' MPIDRs; the UART's irqfd needs the vGIC.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::*;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use kvm_nisv::regs::{Reg, VcpuRegs};
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::EventFd;

use crate::adapter::kvm::{MPIDR_EL1_ID, enable_nisv, injector, nisv_caps};
use crate::adapter::{KvmNisvEmulator, RunAheadSettings};
use crate::bus::Bus;
use crate::cli::RunArgs;
use crate::exit_stats::{self, ExitStats};
use crate::fdt::{FdtConfig, create_fdt};
use crate::framebuffer::Framebuffer;
use crate::gic::{Frame, GicRegs, KvmVgicAttrs, create_vgic};
use crate::layout::*;
use crate::loader::{KernelKind, load_dtb, load_initrd, load_kernel};
use crate::memory;
use crate::nisv::{NisvHandler, NisvStats};
use crate::testdev::TestDevice;
use crate::uart::{Uart, spawn_stdin_reader};
use crate::vcpu::{
    EXIT_VMM_ERROR, Stop, VcpuControl, install_kick_handler, kick_pending, run_vcpu,
};

/// Test-device access-log lines printed at exit with `--trace-nisv`.
const TRACE_LOG_LINES: usize = 64;

/// PSTATE at entry: EL1h with D, A, I, F masked (Documentation/arch/arm64/booting.rst).
const BOOT_PSTATE: u64 = 0x3c5;

macro_rules! fail {
    ($($t:tt)*) => {{
        eprintln!("kvm-nisv-vmm: {}", format!($($t)*));
        return EXIT_VMM_ERROR;
    }};
}

enum Msg {
    Vcpu(usize, Option<Stop>),
    Signal(i32),
}

/// Block SIGINT/SIGTERM in this thread (and the threads it starts), and wait for
/// them in a dedicated thread that reports to `tx`.
fn handle_termination_signals(tx: mpsc::Sender<Msg>) -> std::io::Result<()> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
    }
    // SAFETY: `set` is initialised; the old mask is not needed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` and `sig` are valid for the call; the signals are blocked in
                // every thread, so sigwait is the only place they are delivered.
                if unsafe { libc::sigwait(&set, &mut sig) } == 0
                    && tx.send(Msg::Signal(sig)).is_err()
                {
                    return;
                }
            }
        })?;
    Ok(())
}

fn setup_vcpu(vm: &VmFd, index: u64, entry: u64, dtb: u64) -> Result<(VcpuFd, u64), String> {
    let vcpu = vm
        .create_vcpu(index)
        .map_err(|e| format!("KVM_CREATE_VCPU {index}: {e}"))?;
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi)
        .map_err(|e| format!("KVM_ARM_PREFERRED_TARGET: {e}"))?;
    kvi.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    if index > 0 {
        // Secondaries wait for PSCI CPU_ON, which KVM handles in the kernel.
        kvi.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
    }
    vcpu.vcpu_init(&kvi)
        .map_err(|e| format!("KVM_ARM_VCPU_INIT {index}: {e}"))?;
    if index == 0 {
        let mut regs = &vcpu;
        let mut set = |reg, v| regs.set(reg, v).map_err(|e| e.to_string());
        set(Reg::Pstate, BOOT_PSTATE)?;
        set(Reg::Pc, entry)?;
        set(Reg::X(0), dtb)?;
        for n in 1..=3 {
            set(Reg::X(n), 0)?;
        }
    }
    let mut b = [0u8; 8];
    vcpu.get_one_reg(MPIDR_EL1_ID, &mut b)
        .map_err(|e| format!("reading MPIDR_EL1 of vCPU {index}: {e}"))?;
    Ok((vcpu, u64::from_le_bytes(b)))
}

/// The IPA size to ask KVM for (`KVM_VM_TYPE_ARM_IPA_SIZE`): enough for guest
/// addresses below `top`, at least 40 bits (KVM's default for VM type 0, so
/// guests see the same address-size behaviour as with a type-0 VM).
///
/// Not the host's maximum, which kvm-ioctls' `create_vm()` asks for: with
/// QEMU's `-cpu max` (LPA2) that is 52 bits, and on 16 KiB-page hosts in the
/// emulated arm64 host a 52-bit VM never runs its first instruction; since
/// Linux 7.x tearing a VM down also walks its whole IPA space (10 ms at 40 bits,
/// ~10 s at 52 on 4 KiB pages). See docs/compatibility.md.
pub fn ipa_bits_for(top: u64) -> u32 {
    let needed = 64 - top.saturating_sub(1).leading_zeros();
    needed.max(40)
}

/// Boot the kernel described by `args` and run until the guest powers off or the
/// VMM is told to stop; returns the process exit status.
pub fn run(args: &RunArgs) -> i32 {
    let cpus = u64::from(args.cpus);
    let (tx, rx) = mpsc::channel();
    if let Err(e) = handle_termination_signals(tx.clone()) {
        fail!("cannot set up signal handling: {e}");
    }
    if let Err(e) = install_kick_handler() {
        fail!("cannot install the vCPU kick handler: {e}");
    }

    let kvm = match Kvm::new() {
        Ok(k) => k,
        Err(e) => fail!("cannot open /dev/kvm: {e}"),
    };
    let ipa_bits = ipa_bits_for(RAM_BASE.saturating_add(args.mem));
    let vm = match kvm.create_vm_with_ipa_size(ipa_bits) {
        Ok(v) => v,
        Err(e) => fail!("KVM_CREATE_VM with a {ipa_bits}-bit IPA space: {e}"),
    };
    let (has_nisv, has_dabt) = nisv_caps(&vm);
    if has_nisv {
        if let Err(e) = enable_nisv(&vm) {
            fail!("enabling KVM_CAP_ARM_NISV_TO_USER: {e}");
        }
    } else {
        eprintln!(
            "kvm-nisv-vmm: this kernel does not offer KVM_CAP_ARM_NISV_TO_USER: NISV data aborts \
             cannot be handled; running with the legacy behaviour (KVM_RUN fails with ENOSYS on such an access)"
        );
    }
    if !has_dabt {
        eprintln!(
            "kvm-nisv-vmm: this kernel does not offer KVM_CAP_ARM_INJECT_EXT_DABT: accesses to \
             addresses with nothing behind them cannot be turned into guest aborts"
        );
    }
    let inj = injector(&vm);
    let max = kvm.get_max_vcpus() as u64;
    if cpus > max {
        fail!("{cpus} vCPUs requested, KVM allows {max}");
    }

    // RAM: one memslot.
    let ram = match memory::ram(RAM_BASE, args.mem) {
        Ok(r) => Arc::new(r),
        Err(e) => fail!("{e}"),
    };
    let host = match ram.memory().get_host_address(GuestAddress(RAM_BASE)) {
        Ok(h) => h as u64,
        Err(e) => fail!("guest RAM has no host mapping: {e}"),
    };
    let slot = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: RAM_BASE,
        memory_size: args.mem,
        userspace_addr: host,
    };
    // SAFETY: the region is a live anonymous mapping of exactly `memory_size` bytes owned
    // by `ram`, which outlives the VM (both live until this function returns).
    if let Err(e) = unsafe { vm.set_user_memory_region(slot) } {
        fail!("KVM_SET_USER_MEMORY_REGION: {e}");
    }

    // Kernel and initrd first: the entry point goes into vCPU 0.
    let mut kfile = match File::open(&args.kernel) {
        Ok(f) => f,
        Err(e) => fail!("cannot open {}: {e}", args.kernel.display()),
    };
    let kernel = match load_kernel(&ram, args.mem, &mut kfile) {
        Ok(k) => k,
        Err(e) => fail!("{}: {e}", args.kernel.display()),
    };
    if let KernelKind::Image(h) = kernel.kind {
        log::info!(
            "arm64 Image: text_offset {:#x}, image_size {:#x}",
            h.text_offset,
            h.image_size
        );
    }
    let initrd = match &args.initrd {
        None => None,
        Some(p) => {
            let mut f = match File::open(p) {
                Ok(f) => f,
                Err(e) => fail!("cannot open {}: {e}", p.display()),
            };
            match load_initrd(&ram, args.mem, kernel.end, &mut f) {
                Ok(r) => Some(r),
                Err(e) => fail!("{}: {e}", p.display()),
            }
        }
    };
    let dtb_at = dtb_addr(args.mem);

    let mut vcpus = Vec::new();
    let mut mpidrs = Vec::new();
    for i in 0..cpus {
        match setup_vcpu(&vm, i, kernel.entry, dtb_at) {
            Ok((v, m)) => {
                vcpus.push(v);
                mpidrs.push(m);
            }
            Err(e) => fail!("{e}"),
        }
    }

    let gic = match create_vgic(&vm, cpus) {
        Ok(g) => g,
        Err(e) => fail!("{e}"),
    };
    let control = Arc::new(VcpuControl::new());
    let attrs: Arc<dyn crate::gic::VgicAttrs> = Arc::new(KvmVgicAttrs::new(gic, control.clone()));

    let fdt = match create_fdt(&FdtConfig {
        ram_size: args.mem,
        mpidrs: mpidrs.clone(),
        cmdline: args.cmdline.clone(),
        initrd,
        framebuffer: args.framebuffer,
    }) {
        Ok(b) => b,
        Err(e) => fail!("building the device tree: {e}"),
    };
    if let Err(e) = load_dtb(&ram, args.mem, &fdt) {
        fail!("{e}");
    }

    // Devices.
    let stats = Arc::new(NisvStats::default());
    let irq = match EventFd::new(libc::EFD_NONBLOCK) {
        Ok(e) => e,
        Err(e) => fail!("eventfd: {e}"),
    };
    if let Err(e) = vm.register_irqfd(&irq, UART_SPI) {
        fail!("KVM_IRQFD for the UART: {e}");
    }
    let uart = Arc::new(Mutex::new(Uart::new(irq, Box::new(std::io::stdout()))));
    let testdev = TestDevice::new(ram.clone(), stats.emulated.clone());
    let mut bus = Bus::new();
    let redist_len = redist_window_size(cpus);
    let inserted = bus
        .insert(UART_BASE, UART_SIZE, uart.clone())
        .and_then(|_| {
            bus.insert(
                TESTDEV_CTRL_BASE,
                TESTDEV_CTRL_SIZE,
                Arc::new(Mutex::new(testdev.ctrl_device())),
            )
        })
        .and_then(|_| {
            bus.insert(
                TESTDEV_DATA_BASE,
                TESTDEV_DATA_SIZE,
                Arc::new(Mutex::new(testdev.data_device())),
            )
        })
        .and_then(|_| {
            bus.insert(
                GIC_DIST_BASE,
                GIC_DIST_SIZE,
                Arc::new(Mutex::new(GicRegs::new(Frame::Dist, attrs.clone()))),
            )
        })
        .and_then(|_| {
            bus.insert(
                GIC_REDIST_BASE,
                redist_len,
                Arc::new(Mutex::new(GicRegs::new(
                    Frame::Redist(mpidrs.clone()),
                    attrs.clone(),
                ))),
            )
        });
    if let Err(e) = inserted {
        fail!("building the MMIO bus: {e}");
    }
    let fb = args.framebuffer.map(Framebuffer::new);
    if let Some(fb) = &fb {
        let dev = Arc::new(Mutex::new(fb.bus_device()));
        if let Err(e) = bus.insert(FB_BASE, fb.mode().window_size(), dev) {
            fail!("building the MMIO bus: {e}");
        }
        if let Some(path) = &args.screenshot
            && let Err(e) = crate::screenshot::spawn_sigusr1_writer(fb.clone(), path.clone())
        {
            fail!("cannot start the screenshot thread: {e}");
        }
    }
    exit_stats::install(ExitStats::new(testdev.phase()));
    if let Err(e) = spawn_stdin_reader(uart.clone()) {
        log::warn!("no console input: {e}");
    }

    // Run.
    let n = vcpus.len();
    let (status, message) = std::thread::scope(|s| {
        // Keep the handles: dropping a join handle detaches the thread.
        let mut handles = Vec::new();
        for (i, vcpu) in vcpus.into_iter().enumerate() {
            let tx = tx.clone();
            let (bus, ram, control) = (&bus, &*ram, &control);
            let emulator = KvmNisvEmulator::new().with_run_ahead(
                RunAheadSettings {
                    max_insns: args.nisv_run_ahead,
                    max_micros: args.nisv_run_ahead_us,
                    always: args.nisv_run_ahead_always,
                },
                kick_pending,
                stats.clone(),
            );
            let mut nisv = NisvHandler::new(
                args.on_nisv,
                args.trace_nisv,
                Box::new(emulator),
                stats.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{i}"))
                .spawn_scoped(s, move || {
                    let r = run_vcpu(vcpu, i, bus, ram, &mut nisv, control, inj);
                    let _ = tx.send(Msg::Vcpu(i, r));
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    control.request_stop();
                    return (
                        EXIT_VMM_ERROR,
                        Some(format!("kvm-nisv-vmm: cannot start vCPU thread {i}: {e}")),
                    );
                }
            }
        }
        let mut outcome: Option<(i32, Option<String>)> = None;
        let mut finished = 0;
        let mut deadline: Option<Instant> = None;
        while finished < n {
            let msg = match deadline {
                None => rx.recv().ok(),
                Some(d) => {
                    control.kick_others();
                    if Instant::now() > d {
                        // A vCPU that does not leave KVM_RUN: end the process anyway.
                        let (st, m) = outcome.take().unwrap_or((EXIT_VMM_ERROR, None));
                        finish(&uart, &stats, args.trace_nisv, &testdev, m.as_deref());
                        report_at_exit(args, fb.as_ref(), host);
                        std::process::exit(st);
                    }
                    match rx.recv_timeout(Duration::from_millis(10)) {
                        Ok(m) => Some(m),
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => None,
                    }
                }
            };
            match msg {
                Some(Msg::Vcpu(i, r)) => {
                    finished += 1;
                    log::debug!("vcpu{i} stopped: {r:?}");
                    if let (None, Some(stop)) = (&outcome, r) {
                        outcome = Some((stop.status, stop.message));
                    }
                }
                Some(Msg::Signal(sig)) => {
                    if outcome.is_none() {
                        outcome = Some((
                            128 + sig,
                            Some(format!("kvm-nisv-vmm: received signal {sig}, stopping")),
                        ));
                    }
                }
                None => break,
            }
            if outcome.is_some() && deadline.is_none() {
                control.request_stop();
                deadline = Some(Instant::now() + Duration::from_secs(2));
            }
        }
        outcome.unwrap_or((
            EXIT_VMM_ERROR,
            Some("kvm-nisv-vmm: all vCPUs stopped without a reason".into()),
        ))
    });
    finish(&uart, &stats, args.trace_nisv, &testdev, message.as_deref());
    report_at_exit(args, fb.as_ref(), host);
    drop(vm);
    // A guest power-off (SYSTEM_OFF is the only stop without a message, see
    // vcpu::handle_exit) takes the status the guest wrote to the test device's
    // EXIT_STATUS register, if any: Linux cannot choose x4.
    if message.is_none() {
        testdev.power_off_status(status)
    } else {
        status
    }
}

/// At exit: the screenshot, the exit table and the VMM's own footprint.
fn report_at_exit(args: &RunArgs, fb: Option<&Framebuffer>, ram_host: u64) {
    if let (Some(fb), Some(path)) = (fb, &args.screenshot) {
        match crate::screenshot::write_png(fb, path) {
            Ok(()) => eprintln!("kvm-nisv-vmm: screenshot written to {}", path.display()),
            Err(e) => eprintln!("kvm-nisv-vmm: {e}"),
        }
    }
    if let Some(s) = exit_stats::global()
        && !s.rows().is_empty()
    {
        eprint!("{}", s.table("kvm-nisv-vmm: "));
    }
    match crate::footprint::measure(ram_host as *const u8, args.mem as usize) {
        Ok(f) => eprintln!("kvm-nisv-vmm: {f}"),
        Err(e) => eprintln!("kvm-nisv-vmm: cannot measure the memory footprint: {e}"),
    }
}

fn finish(
    uart: &Arc<Mutex<Uart>>,
    stats: &NisvStats,
    trace: bool,
    testdev: &TestDevice,
    message: Option<&str>,
) {
    uart.lock().unwrap_or_else(|e| e.into_inner()).flush();
    let _ = std::io::stdout().flush();
    if let Some(m) = message {
        eprintln!("{}", m.trim_end());
    }
    if stats.exits.load(Ordering::Relaxed) > 0 || trace {
        eprintln!("{}", stats.summary());
    }
    if trace {
        let log = testdev.log();
        eprintln!(
            "kvm-nisv-vmm: test device data-window accesses: {} (first {} below)",
            testdev.total_accesses(),
            log.len().min(TRACE_LOG_LINES)
        );
        for e in log.iter().take(TRACE_LOG_LINES) {
            eprintln!(
                "kvm-nisv-vmm:   {} {} bytes at +{:#x}: {:#x}",
                if e.write { "write" } else { "read " },
                e.size,
                e.offset,
                e.value
            );
        }
    }
}

#[cfg(test)]
mod ipa_tests {
    use super::*;

    #[test]
    fn ipa_bits_cover_ram_and_never_go_below_kvms_default() {
        assert_eq!(ipa_bits_for(RAM_BASE + DEFAULT_RAM_SIZE), 40);
        assert_eq!(ipa_bits_for(1 << 40), 40);
        assert_eq!(ipa_bits_for((1 << 40) + 1), 41);
        assert_eq!(ipa_bits_for(1 << 44), 44);
        assert_eq!(ipa_bits_for(u64::MAX), 64);
        assert_eq!(ipa_bits_for(0), 40);
    }
}
