// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vCPU threads: a thin `KVM_RUN` loop and a plain [`handle_exit`] function.
//!
//! As in firecracker's `vstate/vcpu.rs`, the ioctl loop only turns the kernel's
//! answer into an [`Exit`]; everything the VMM decides happens in
//! [`handle_exit`], which takes the vCPU through [`VcpuOps`] (kvm-nisv's
//! [`VcpuRegs`] plus abort injection) and is unit-tested on any host with an
//! in-memory register file.
//!
//! Stopping: [`VcpuControl`] holds the stop flag, a pause gate (used when the
//! vGIC's register interface needs every vCPU out of `KVM_RUN`) and the vCPU
//! threads' ids. A kick is a real-time signal whose handler sets
//! `kvm_run.immediate_exit`, so a kick that lands just before `KVM_RUN` is not
//! lost (Documentation/virt/kvm/api.rst, "immediate_exit").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use kvm_nisv::mem::{BusError, GuestRam};
use kvm_nisv::regcache::RegCache;
use kvm_nisv::regs::{Reg, RegError, VcpuRegs};

use crate::bus::Bus;
use crate::nisv::{NisvAction, NisvHandler, deliver_sync_abort};

/// Exit status for VMM errors (setup failures, unexpected exits).
pub const EXIT_VMM_ERROR: i32 = 1;
/// Exit status when `KVM_RUN` fails with `ENOSYS`: a NISV abort on a kernel
/// that cannot report it (no `KVM_CAP_ARM_NISV_TO_USER`).
pub const EXIT_NISV_UNSUPPORTED: i32 = 5;
/// Exit status for a guest crash event (`KVM_SYSTEM_EVENT_CRASH`).
pub const EXIT_GUEST_CRASH: i32 = 6;

// include/uapi/linux/kvm.h, struct kvm_run.system_event.type.
const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const KVM_SYSTEM_EVENT_RESET: u32 = 2;
const KVM_SYSTEM_EVENT_CRASH: u32 = 3;

/// The register that carries the guest's exit status on `SYSTEM_OFF`
/// (docs/guest-interface.md: x0..x3 are overwritten by KVM's PSCI code).
pub const EXIT_STATUS_REG: Reg = Reg::X(4);

/// A vCPU exit, as [`handle_exit`] sees it.
#[derive(Debug)]
pub enum Exit<'a> {
    /// `KVM_EXIT_MMIO`, read: fill `data`.
    MmioRead {
        /// IPA of the access.
        addr: u64,
        /// The bytes to return, lowest address first.
        data: &'a mut [u8],
    },
    /// `KVM_EXIT_MMIO`, write.
    MmioWrite {
        /// IPA of the access.
        addr: u64,
        /// The bytes written, lowest address first.
        data: &'a [u8],
    },
    /// `KVM_EXIT_SYSTEM_EVENT` (PSCI SYSTEM_OFF/RESET, crash...).
    SystemEvent {
        /// `KVM_SYSTEM_EVENT_*`.
        kind: u32,
        /// `system_event.data[..ndata]`.
        data: &'a [u64],
    },
    /// `KVM_EXIT_ARM_NISV`.
    Nisv {
        /// `arm_nisv.esr_iss`.
        esr_iss: u64,
        /// `arm_nisv.fault_ipa`.
        fault_ipa: u64,
    },
    /// The run was interrupted (`KVM_EXIT_INTR` or `EINTR`): look at the stop flag.
    Interrupted,
    /// `KVM_RUN` failed with this errno.
    RunError(i32),
    /// Any other exit, described.
    Other(String),
}

/// Why the VM stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stop {
    /// Process exit status.
    pub status: i32,
    /// What to print on stderr, if anything.
    pub message: Option<String>,
}

/// What the run loop does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Run the vCPU again.
    Continue,
    /// Stop the VM.
    Stop(Stop),
}

/// A vCPU as [`handle_exit`] needs it.
pub trait VcpuOps: VcpuRegs {
    /// Make an external data abort pending (`KVM_SET_VCPU_EVENTS`, `ext_dabt_pending`).
    fn inject_ext_dabt(&mut self) -> Result<(), String>;
}

/// Everything [`handle_exit`] works on besides the vCPU.
pub struct ExitCtx<'a> {
    /// vCPU index (for messages).
    pub index: usize,
    /// The MMIO bus.
    pub bus: &'a Bus,
    /// Guest RAM.
    pub ram: &'a dyn GuestRam,
    /// This vCPU's NISV policy.
    pub nisv: &'a mut NisvHandler,
}

impl std::fmt::Debug for ExitCtx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitCtx")
            .field("index", &self.index)
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

fn stop(status: i32, message: impl Into<String>) -> ExitAction {
    ExitAction::Stop(Stop {
        status,
        message: Some(message.into()),
    })
}

/// The data of an MMIO access that [`split_access`] spreads over its pieces.
enum Piece<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

/// An access that no single device claims but that covers a device window and
/// RAM side by side (see [`pieces`]): performs each piece on its own target.
/// Fails with `NoDevice` when the access is not made of such pieces.
fn split_access(ctx: &ExitCtx<'_>, addr: u64, mut data: Piece<'_>) -> Result<(), BusError> {
    let len = match &data {
        Piece::Read(d) => d.len(),
        Piece::Write(d) => d.len(),
    };
    let ps = match pieces(ctx.bus, ctx.ram, addr, len) {
        Some(ps) if ps.len() > 1 => ps,
        _ => return Err(BusError::NoDevice { ipa: addr, len }),
    };
    let ram_err = |a, n| BusError::NoDevice { ipa: a, len: n };
    for (a, n, dev) in ps {
        let off = (a - addr) as usize;
        let _ = match &mut data {
            Piece::Read(d) => {
                let Some(d) = d.get_mut(off..off + n) else {
                    break;
                };
                if dev {
                    ctx.bus.read(a, d)
                } else {
                    ctx.ram.read(a, d).map_err(|_| ram_err(a, n))
                }
            }
            Piece::Write(d) => {
                let Some(d) = d.get(off..off + n) else {
                    break;
                };
                if dev {
                    ctx.bus.write(a, d)
                } else {
                    ctx.ram.write(a, d).map_err(|_| ram_err(a, n))
                }
            }
        };
    }
    Ok(())
}

/// Split `[addr, addr + len)` into pieces each wholly inside one device or in
/// RAM (an access that straddles the test device's data window and RAM, which
/// are adjacent). `None` when some byte is neither.
fn pieces(bus: &Bus, ram: &dyn GuestRam, addr: u64, len: usize) -> Option<Vec<(u64, usize, bool)>> {
    let mut out = Vec::new();
    let mut at = addr;
    let end = addr.checked_add(len as u64)?;
    while at < end {
        if let Some((_, base, size)) = bus.device_range(at) {
            let n = (base.checked_add(size)?.min(end) - at) as usize;
            out.push((at, n, true));
            at += n as u64;
        } else {
            // RAM up to the next device (or the end of the access).
            let mut n = 0u64;
            while at + n < end && bus.device_at(at + n).is_none() {
                n += 1;
            }
            if !ram.is_ram(at, n as usize) {
                return None;
            }
            out.push((at, n as usize, false));
            at += n;
        }
    }
    Some(out)
}

fn mmio(
    ctx: &mut ExitCtx<'_>,
    vcpu: &mut dyn VcpuOps,
    addr: u64,
    read: Option<&mut [u8]>,
    write: Option<&[u8]>,
) -> ExitAction {
    let len = read
        .as_ref()
        .map(|d| d.len())
        .or(write.map(<[u8]>::len))
        .unwrap_or(0);
    let mut read = read;
    // The tail of a page-straddling access (docs/vmm.md): cheap pre-check inside.
    if crate::mmio_fixup::straddle(vcpu, ctx.ram, ctx.bus, addr, read.as_deref_mut(), write) {
        return ExitAction::Continue;
    }
    let r = match (read, write) {
        (Some(data), _) => {
            data.fill(0);
            match ctx.bus.read(addr, data) {
                Err(BusError::NoDevice { .. }) => split_access(ctx, addr, Piece::Read(data)),
                r => r,
            }
        }
        (None, Some(data)) => match ctx.bus.write(addr, data) {
            Err(BusError::NoDevice { .. }) => split_access(ctx, addr, Piece::Write(data)),
            r => r,
        },
        (None, None) => Ok(()),
    };
    match r {
        Ok(()) => ExitAction::Continue,
        // A device that rejects an access: logged by the bus, the guest reads zeros.
        Err(BusError::DeviceError { .. }) => ExitAction::Continue,
        Err(BusError::NoDevice { .. }) => {
            // Nothing at this address: a bus error, as hardware would report it.
            let act = ctx.nisv.unmapped_mmio(
                ctx.index,
                vcpu,
                ctx.ram,
                ctx.bus,
                addr,
                len,
                write.is_some(),
            );
            apply(ctx.nisv, vcpu, act)
        }
    }
}

fn apply(nisv: &mut NisvHandler, vcpu: &mut dyn VcpuOps, act: NisvAction) -> ExitAction {
    match act {
        NisvAction::Resume => ExitAction::Continue,
        NisvAction::InjectAbort => match vcpu.inject_ext_dabt() {
            Ok(()) => {
                nisv.exception_delivered();
                ExitAction::Continue
            }
            Err(e) => stop(
                EXIT_VMM_ERROR,
                format!("kvm-nisv-vmm: cannot inject an external abort: {e}"),
            ),
        },
        NisvAction::DeliverAbort { esr, far } => match deliver_sync_abort(vcpu, esr, far) {
            Ok(()) => {
                nisv.exception_delivered();
                ExitAction::Continue
            }
            Err(e) => stop(
                EXIT_VMM_ERROR,
                format!("kvm-nisv-vmm: cannot deliver a data abort to the guest: {e}"),
            ),
        },
        NisvAction::Stop { status, report } => ExitAction::Stop(Stop {
            status,
            message: Some(report),
        }),
    }
}

/// A vCPU behind a per-exit [`RegCache`]; pending register writes are
/// flushed before an abort is injected.
struct CachedVcpu<'a>(RegCache<&'a mut dyn VcpuOps>);

impl VcpuRegs for CachedVcpu<'_> {
    fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
        self.0.get(reg)
    }
    fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
        self.0.set(reg, value)
    }
    fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
        self.0.get_v(n)
    }
    fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
        self.0.set_v(n, value)
    }
}

impl VcpuOps for CachedVcpu<'_> {
    fn inject_ext_dabt(&mut self) -> Result<(), String> {
        self.0.flush().map_err(|e| e.to_string())?;
        self.0.inner().inject_ext_dabt()
    }
}

/// Handle one exit. Never panics on guest-controlled values.
pub fn handle_exit(ctx: &mut ExitCtx<'_>, vcpu: &mut dyn VcpuOps, exit: Exit<'_>) -> ExitAction {
    match exit {
        Exit::MmioRead { addr, data } => mmio(ctx, vcpu, addr, Some(data), None),
        Exit::MmioWrite { addr, data } => mmio(ctx, vcpu, addr, None, Some(data)),
        Exit::SystemEvent { kind, data } => match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => match vcpu.get(EXIT_STATUS_REG) {
                Ok(v) => ExitAction::Stop(Stop {
                    status: v.min(255) as i32,
                    message: None,
                }),
                Err(e) => stop(
                    EXIT_VMM_ERROR,
                    format!("kvm-nisv-vmm: SYSTEM_OFF, but x4 is unreadable: {e}"),
                ),
            },
            KVM_SYSTEM_EVENT_RESET => stop(
                0,
                "kvm-nisv-vmm: the guest asked for SYSTEM_RESET; exiting with status 0",
            ),
            KVM_SYSTEM_EVENT_CRASH => stop(
                EXIT_GUEST_CRASH,
                format!("kvm-nisv-vmm: guest crash event {data:x?}"),
            ),
            other => {
                log::info!("vcpu{}: system event {other} {data:x?} ignored", ctx.index);
                ExitAction::Continue
            }
        },
        Exit::Nisv { esr_iss, fault_ipa } => {
            // One register cache per exit: each register is read at most once
            // and only changed ones are written back, PC last, before the vCPU
            // runs again (docs/performance.md, "The per-exit floor").
            let mut cached = CachedVcpu(RegCache::new(vcpu));
            let act = ctx
                .nisv
                .handle(ctx.index, &mut cached, ctx.ram, ctx.bus, esr_iss, fault_ipa);
            let action = apply(ctx.nisv, &mut cached, act);
            let flushed = cached.0.flush();
            ctx.nisv
                .stats()
                .reg_calls
                .fetch_add(u64::from(cached.0.traffic().total()), Ordering::Relaxed);
            match (flushed, action) {
                (Err(e), ExitAction::Continue) => stop(
                    EXIT_VMM_ERROR,
                    format!(
                        "kvm-nisv-vmm: vcpu{}: writing back registers: {e}",
                        ctx.index
                    ),
                ),
                (_, action) => action,
            }
        }
        Exit::Interrupted => ExitAction::Continue,
        Exit::RunError(e) if e == libc::EINTR || e == libc::EAGAIN => ExitAction::Continue,
        Exit::RunError(e) if e == libc::ENOSYS => stop(
            EXIT_NISV_UNSUPPORTED,
            format!(
                "kvm-nisv-vmm: vcpu{}: KVM_RUN failed with ENOSYS. The guest made a data access that \
                 has no valid instruction syndrome (for example a load/store pair or a \
                 writeback form on an MMIO address), and this kernel cannot hand such \
                 aborts to userspace: KVM_CAP_ARM_NISV_TO_USER is not available.",
                ctx.index
            ),
        ),
        Exit::RunError(e) => stop(
            EXIT_VMM_ERROR,
            format!(
                "kvm-nisv-vmm: vcpu{}: KVM_RUN failed: {}",
                ctx.index,
                std::io::Error::from_raw_os_error(e)
            ),
        ),
        Exit::Other(what) => stop(
            EXIT_VMM_ERROR,
            format!("kvm-nisv-vmm: vcpu{}: unexpected exit {what}", ctx.index),
        ),
    }
}

/// Shared run state of all vCPU threads.
#[derive(Debug, Default)]
pub struct VcpuControl {
    stop: AtomicBool,
    paused: Mutex<u32>,
    resumed: Condvar,
    /// vCPU thread ids (`pthread_t`, an integer on glibc and a pointer on musl).
    threads: Mutex<Vec<usize>>,
}

fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

impl VcpuControl {
    /// A fresh control block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the VM is stopping.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Ask every vCPU thread to stop, and kick them.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.kick_others();
        let mut p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        *p = 0;
        self.resumed.notify_all();
    }

    /// Register the calling thread as a vCPU thread (to be kicked).
    pub fn register_current_thread(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(me as usize);
    }

    /// Remove the calling thread from the kick list. A vCPU thread must call this
    /// before it returns: once a thread has exited its id may be reused or freed
    /// (musl frees a detached thread's descriptor), so signalling it would be
    /// undefined behaviour. Deregistering under the lock [`Self::kick_others`] holds
    /// closes that window.
    pub fn unregister_current_thread(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&t| t != me);
    }

    /// Send the kick signal to every registered vCPU thread except the caller.
    pub fn kick_others(&self) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        for &t in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let t = t as libc::pthread_t;
            // SAFETY: pthread_equal only compares ids.
            if unsafe { libc::pthread_equal(t, me) } != 0 {
                continue;
            }
            // SAFETY: `t` is a registered vCPU thread: it deregisters itself (taking this
            // lock) before returning, so while we hold the lock it is alive.
            unsafe { libc::pthread_kill(t, kick_signal()) };
        }
    }

    /// Hold other vCPUs outside `KVM_RUN` while `f` runs (the vGIC register
    /// interface returns EBUSY while any vCPU runs).
    pub fn with_others_paused<T>(&self, f: impl FnOnce() -> T) -> T {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.kick_others();
        let r = f();
        let mut p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        *p = p.saturating_sub(1);
        if *p == 0 {
            self.resumed.notify_all();
        }
        r
    }

    /// Called by a vCPU thread before `KVM_RUN`: wait while a pause is requested.
    pub fn wait_while_paused(&self) {
        let mut p = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        while *p > 0 && !self.stopping() {
            p = self.resumed.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub use self::kvm::*;

#[cfg(target_arch = "aarch64")]
mod kvm {
    use std::cell::Cell;
    use std::sync::Arc;

    use kvm_bindings::{KVM_EXIT_ARM_NISV, kvm_run};
    use kvm_ioctls::{VcpuExit, VcpuFd};
    use kvm_nisv::regs::{Reg, RegError, VcpuRegs};

    use super::*;
    use crate::adapter::kvm::{KvmRegs, inject_ext_dabt, nisv_payload};
    use kvm_nisv::inject::ExtDabtInjector;

    thread_local! {
        static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
    }

    extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        let p = KVM_RUN.with(|c| c.get());
        if !p.is_null() {
            // SAFETY: the pointer is this thread's mmap'd kvm_run, set by run_vcpu and cleared
            // before the VcpuFd (and its mapping) is dropped; a single-byte volatile store is
            // async-signal-safe.
            unsafe { std::ptr::addr_of_mut!((*p).immediate_exit).write_volatile(1) };
        }
    }

    /// Whether the calling vCPU thread was kicked (a stop or pause request)
    /// since its last `KVM_RUN`: run-ahead emulation stops then.
    pub fn kick_pending() -> bool {
        let p = KVM_RUN.with(|c| c.get());
        if p.is_null() {
            return false;
        }
        // SAFETY: the pointer is this thread's mmap'd kvm_run, set by run_vcpu
        // and cleared before the VcpuFd (and its mapping) is dropped; the only
        // other access is the kick handler's single-byte volatile store on
        // this same thread.
        unsafe { std::ptr::addr_of!((*p).immediate_exit).read_volatile() != 0 }
    }

    /// Install the kick signal handler (once, before starting vCPU threads).
    pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
    }

    /// A KVM vCPU as [`VcpuOps`].
    #[derive(Debug)]
    pub struct KvmVcpu<'a>(pub &'a VcpuFd, pub Option<&'a ExtDabtInjector>);

    impl VcpuRegs for KvmVcpu<'_> {
        fn get(&mut self, reg: Reg) -> Result<u64, RegError> {
            KvmRegs(self.0).get(reg)
        }
        fn set(&mut self, reg: Reg, value: u64) -> Result<(), RegError> {
            KvmRegs(self.0).set(reg, value)
        }
        fn get_v(&mut self, n: u8) -> Result<u128, RegError> {
            KvmRegs(self.0).get_v(n)
        }
        fn set_v(&mut self, n: u8, value: u128) -> Result<(), RegError> {
            KvmRegs(self.0).set_v(n, value)
        }
    }

    impl VcpuOps for KvmVcpu<'_> {
        fn inject_ext_dabt(&mut self) -> Result<(), String> {
            inject_ext_dabt(self.1, self.0)
        }
    }

    enum Raw {
        MmioRead(u64, usize),
        MmioWrite(u64, [u8; 8], usize),
        SystemEvent(u32, Vec<u64>),
        Nisv,
        Intr,
        Err(i32),
        Other(String),
    }

    /// Run one vCPU until the VM stops; returns why this vCPU stopped (`None` when
    /// it was asked to stop by someone else).
    pub fn run_vcpu(
        mut vcpu: VcpuFd,
        index: usize,
        bus: &Bus,
        ram: &dyn GuestRam,
        nisv: &mut NisvHandler,
        control: &Arc<VcpuControl>,
        inj: Option<ExtDabtInjector>,
    ) -> Option<Stop> {
        control.register_current_thread();
        KVM_RUN.with(|c| c.set(vcpu.get_kvm_run() as *mut kvm_run));
        let result = loop {
            // Clear first, then look at the flags: a kick between the two is seen by the check,
            // a kick after it makes KVM_RUN return at once.
            vcpu.set_kvm_immediate_exit(0);
            control.wait_while_paused();
            if control.stopping() {
                break None;
            }
            let raw = match vcpu.run() {
                Ok(VcpuExit::MmioRead(addr, data)) => Raw::MmioRead(addr, data.len().min(8)),
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    let mut b = [0u8; 8];
                    let n = data.len().min(8);
                    b.get_mut(..n)
                        .unwrap_or(&mut [])
                        .copy_from_slice(data.get(..n).unwrap_or(&[]));
                    Raw::MmioWrite(addr, b, n)
                }
                Ok(VcpuExit::SystemEvent(kind, data)) => Raw::SystemEvent(kind, data.to_vec()),
                Ok(VcpuExit::Unsupported(KVM_EXIT_ARM_NISV)) => Raw::Nisv,
                Ok(VcpuExit::Intr) => Raw::Intr,
                Ok(other) => Raw::Other(format!("{other:?}")),
                Err(e) => Raw::Err(e.errno()),
            };
            let mut ctx = ExitCtx {
                index,
                bus,
                ram,
                nisv,
            };
            let mut buf = [0u8; 8];
            let action = match raw {
                Raw::MmioRead(addr, n) => {
                    let data = buf.get_mut(..n).unwrap_or(&mut []);
                    let a = handle_exit(
                        &mut ctx,
                        &mut KvmVcpu(&vcpu, inj.as_ref()),
                        Exit::MmioRead { addr, data },
                    );
                    // KVM loses the sign extension of LDRSB/LDRSH/LDRSW (mmio_fixup.rs).
                    let done = matches!(a, ExitAction::Continue)
                        && crate::mmio_fixup::sign_extend(
                            &mut KvmVcpu(&vcpu, inj.as_ref()),
                            ram,
                            buf.get(..n).unwrap_or(&[]),
                        );
                    let run = vcpu.get_kvm_run();
                    if done {
                        // The load is complete: keep KVM_RUN from completing it again.
                        run.exit_reason = 0; // KVM_EXIT_UNKNOWN
                    }
                    // SAFETY: the last exit was KVM_EXIT_MMIO, so the mmio member is the live one;
                    // n <= 8 = the size of mmio.data.
                    let dst = unsafe { &mut run.__bindgen_anon_1.mmio.data };
                    for (d, s) in dst.iter_mut().zip(buf.iter().take(n)) {
                        *d = *s;
                    }
                    a
                }
                Raw::MmioWrite(addr, b, n) => {
                    let data = b.get(..n).unwrap_or(&[]);
                    handle_exit(
                        &mut ctx,
                        &mut KvmVcpu(&vcpu, inj.as_ref()),
                        Exit::MmioWrite { addr, data },
                    )
                }
                Raw::SystemEvent(kind, data) => handle_exit(
                    &mut ctx,
                    &mut KvmVcpu(&vcpu, inj.as_ref()),
                    Exit::SystemEvent { kind, data: &data },
                ),
                Raw::Nisv => {
                    let (esr_iss, fault_ipa) = nisv_payload(&mut vcpu).unwrap_or((0, 0));
                    handle_exit(
                        &mut ctx,
                        &mut KvmVcpu(&vcpu, inj.as_ref()),
                        Exit::Nisv { esr_iss, fault_ipa },
                    )
                }
                Raw::Intr => handle_exit(
                    &mut ctx,
                    &mut KvmVcpu(&vcpu, inj.as_ref()),
                    Exit::Interrupted,
                ),
                Raw::Err(e) => handle_exit(
                    &mut ctx,
                    &mut KvmVcpu(&vcpu, inj.as_ref()),
                    Exit::RunError(e),
                ),
                Raw::Other(s) => {
                    handle_exit(&mut ctx, &mut KvmVcpu(&vcpu, inj.as_ref()), Exit::Other(s))
                }
            };
            if let ExitAction::Stop(s) = action {
                break Some(s);
            }
        };
        control.unregister_current_thread();
        KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{EmuOutcome, NisvEmulator};
    use crate::memory::Ram;
    use crate::nisv::{EXIT_NISV_STOP, EXIT_RETRY_LOOP, NisvStats, Policy};
    use crate::testdev::{self, TestDevice};
    use crate::uart::Uart;
    use kvm_nisv::regs::RegisterFile;
    use std::io::Write;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};

    use crate::layout::*;

    /// RegisterFile + a record of injections.
    #[derive(Default)]
    struct FakeVcpu {
        regs: RegisterFile,
        injected: u32,
        inject_fails: bool,
    }
    impl VcpuRegs for FakeVcpu {
        fn get(&mut self, r: Reg) -> Result<u64, kvm_nisv::regs::RegError> {
            self.regs.get(r)
        }
        fn set(&mut self, r: Reg, v: u64) -> Result<(), kvm_nisv::regs::RegError> {
            self.regs.set(r, v)
        }
        fn get_v(&mut self, n: u8) -> Result<u128, kvm_nisv::regs::RegError> {
            self.regs.get_v(n)
        }
        fn set_v(&mut self, n: u8, v: u128) -> Result<(), kvm_nisv::regs::RegError> {
            self.regs.set_v(n, v)
        }
    }
    impl VcpuOps for FakeVcpu {
        fn inject_ext_dabt(&mut self) -> Result<(), String> {
            if self.inject_fails {
                return Err("no KVM_CAP_ARM_INJECT_EXT_DABT".into());
            }
            self.injected += 1;
            Ok(())
        }
    }

    /// An emulator that performs one 8-byte store of x0 to the fault IPA and
    /// advances PC: enough to check the wiring from exit to device.
    struct StoreX0;
    impl NisvEmulator for StoreX0 {
        fn emulate(
            &mut self,
            regs: &mut dyn VcpuRegs,
            _: &dyn GuestRam,
            bus: &Bus,
            ipa: u64,
        ) -> Result<EmuOutcome, String> {
            let v = regs.get(Reg::X(0)).map_err(|e| e.to_string())?;
            match bus.write(ipa, &v.to_le_bytes()) {
                Ok(()) => {
                    let pc = regs.get(Reg::Pc).map_err(|e| e.to_string())?;
                    regs.set(Reg::Pc, pc + 4).map_err(|e| e.to_string())?;
                    let insn = kvm_nisv::decode::decode(0xf804_8420).map_err(|e| e.to_string())?;
                    Ok(EmuOutcome::Emulated { insn })
                }
                Err(_) => Ok(EmuOutcome::Unsupported { word: 0, pc: 0 }),
            }
        }
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Machine {
        bus: Bus,
        ram: Arc<Ram>,
        dev: TestDevice,
        out: Sink,
        stats: Arc<NisvStats>,
    }

    fn machine() -> Machine {
        let ram = Arc::new(Ram::new(RAM_BASE, 1 << 20).unwrap());
        let stats = Arc::new(NisvStats::default());
        let dev = TestDevice::new(ram.clone(), stats.emulated.clone());
        let out = Sink::default();
        let irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut bus = Bus::new();
        bus.insert(
            UART_BASE,
            UART_SIZE,
            Arc::new(Mutex::new(Uart::new(irq, Box::new(out.clone())))),
        )
        .unwrap();
        bus.insert(
            TESTDEV_CTRL_BASE,
            TESTDEV_CTRL_SIZE,
            Arc::new(Mutex::new(dev.ctrl_device())),
        )
        .unwrap();
        bus.insert(
            TESTDEV_DATA_BASE,
            TESTDEV_DATA_SIZE,
            Arc::new(Mutex::new(dev.data_device())),
        )
        .unwrap();
        Machine {
            bus,
            ram,
            dev,
            out,
            stats,
        }
    }

    fn vcpu() -> FakeVcpu {
        let mut v = FakeVcpu::default();
        v.regs.pc = RAM_BASE + 0x100;
        v.regs.pstate = 0x3c5;
        v
    }

    fn run(m: &Machine, h: &mut NisvHandler, v: &mut FakeVcpu, exit: Exit<'_>) -> ExitAction {
        let mut ctx = ExitCtx {
            index: 0,
            bus: &m.bus,
            ram: &*m.ram,
            nisv: h,
        };
        handle_exit(&mut ctx, v, exit)
    }

    fn handler(m: &Machine, policy: Policy, emu: Box<dyn NisvEmulator>) -> NisvHandler {
        NisvHandler::new(policy, false, emu, m.stats.clone())
    }

    /// A vCPU that counts register calls (each one an ioctl on KVM).
    #[derive(Default)]
    struct Counting {
        v: FakeVcpu,
        log: Vec<(bool, Reg)>,
    }
    impl VcpuRegs for Counting {
        fn get(&mut self, r: Reg) -> Result<u64, kvm_nisv::regs::RegError> {
            self.log.push((false, r));
            self.v.get(r)
        }
        fn set(&mut self, r: Reg, v: u64) -> Result<(), kvm_nisv::regs::RegError> {
            self.log.push((true, r));
            self.v.set(r, v)
        }
        fn get_v(&mut self, n: u8) -> Result<u128, kvm_nisv::regs::RegError> {
            self.v.get_v(n)
        }
        fn set_v(&mut self, n: u8, v: u128) -> Result<(), kvm_nisv::regs::RegError> {
            self.v.set_v(n, v)
        }
    }
    impl VcpuOps for Counting {
        fn inject_ext_dabt(&mut self) -> Result<(), String> {
            self.v.inject_ext_dabt()
        }
    }

    #[test]
    fn a_nisv_exit_reads_each_register_once_and_runs_ahead() {
        use crate::adapter::{KvmNisvEmulator, RunAheadSettings};
        use kvm_nisv::mem::GuestRam;
        let m = machine();
        // str x0, [x1], #8; subs x2, x2, #1; b.ne .-8; nop
        let code = [0xf800_8420u32, 0xf100_0442, 0x54ff_ffc1, 0xd503_201f];
        for (i, w) in code.iter().enumerate() {
            m.ram
                .write(RAM_BASE + 0x100 + 4 * i as u64, &w.to_le_bytes())
                .unwrap();
        }
        let settings = RunAheadSettings {
            max_insns: 64,
            max_micros: 1_000_000,
            always: false,
        };
        for (run_ahead, stores, calls) in [(false, 1, 7), (true, 3, 11)] {
            let emu = KvmNisvEmulator::new().with_run_ahead(
                RunAheadSettings {
                    always: run_ahead,
                    ..settings
                },
                || false,
                m.stats.clone(),
            );
            let mut h = handler(&m, Policy::Emulate, Box::new(emu));
            let mut c = Counting::default();
            c.v.regs.pc = RAM_BASE + 0x100;
            c.v.regs.pstate = 0x3c5;
            c.v.regs.x[0] = 0x1234;
            c.v.regs.x[1] = TESTDEV_DATA_BASE;
            c.v.regs.x[2] = 3;
            let mut ctx = ExitCtx {
                index: 0,
                bus: &m.bus,
                ram: &*m.ram,
                nisv: &mut h,
            };
            let exit = Exit::Nisv {
                esr_iss: 0x45,
                fault_ipa: TESTDEV_DATA_BASE,
            };
            assert_eq!(handle_exit(&mut ctx, &mut c, exit), ExitAction::Continue);
            assert_eq!(c.v.regs.x[1], TESTDEV_DATA_BASE + 8 * stores);
            // The policy's own PC read is absorbed by the per-exit cache:
            // PSTATE, PC, SCTLR, X1, X0 and writes of X1 and PC (with
            // run-ahead also MDSCR, X2; X2 and PSTATE written).
            let reads: Vec<Reg> = c.log.iter().filter(|(w, _)| !w).map(|(_, r)| *r).collect();
            let mut dedup = reads.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), reads.len(), "a register read twice: {reads:?}");
            assert_eq!(c.log.len(), calls, "{:?}", c.log);
            assert_eq!(c.log.last(), Some(&(true, Reg::Pc)));
        }
    }

    #[test]
    fn mmio_reaches_uart_and_testdev() {
        let m = machine();
        let mut h = handler(&m, Policy::Emulate, Box::new(StoreX0));
        let mut v = vcpu();
        for b in b"hi" {
            assert_eq!(
                run(
                    &m,
                    &mut h,
                    &mut v,
                    Exit::MmioWrite {
                        addr: UART_BASE,
                        data: &[*b]
                    }
                ),
                ExitAction::Continue
            );
        }
        assert_eq!(&*m.out.0.lock().unwrap(), b"hi");
        // Testdev: fill 4 bytes with 0x5a through the control registers, read them back.
        for (off, val) in [
            (testdev::REG_ADDR, 0x5a),
            (testdev::REG_OFFSET, 0x10),
            (testdev::REG_LEN, 4),
            (testdev::REG_CMD_STATUS, testdev::CMD_FILL),
        ] {
            let data = u64::to_le_bytes(val);
            assert_eq!(
                run(
                    &m,
                    &mut h,
                    &mut v,
                    Exit::MmioWrite {
                        addr: TESTDEV_CTRL_BASE + off,
                        data: &data
                    }
                ),
                ExitAction::Continue
            );
        }
        let mut d = [0xffu8; 8];
        assert_eq!(
            run(
                &m,
                &mut h,
                &mut v,
                Exit::MmioRead {
                    addr: TESTDEV_CTRL_BASE + testdev::REG_CMD_STATUS,
                    data: &mut d
                }
            ),
            ExitAction::Continue
        );
        assert_eq!(u64::from_le_bytes(d), testdev::STATUS_OK);
        let mut d = [0u8; 8];
        run(
            &m,
            &mut h,
            &mut v,
            Exit::MmioRead {
                addr: TESTDEV_DATA_BASE + 0xe,
                data: &mut d,
            },
        );
        assert_eq!(d, [0, 0, 0x5a, 0x5a, 0x5a, 0x5a, 0, 0]);
        assert_eq!(v.injected, 0);
    }

    #[test]
    fn mmio_straddling_the_window_and_ram_is_split() {
        let m = machine();
        let mut h = handler(&m, Policy::Emulate, Box::new(StoreX0));
        let mut v = vcpu();
        let data = 0x8877_6655_4433_2211u64.to_le_bytes();
        assert_eq!(
            run(
                &m,
                &mut h,
                &mut v,
                Exit::MmioWrite {
                    addr: RAM_BASE - 3,
                    data: &data
                }
            ),
            ExitAction::Continue
        );
        assert_eq!(
            m.dev.data(TESTDEV_DATA_SIZE - 3, 3).unwrap(),
            vec![0x11, 0x22, 0x33]
        );
        let mut b = [0u8; 5];
        m.ram.read(RAM_BASE, &mut b).unwrap();
        assert_eq!(b, [0x44, 0x55, 0x66, 0x77, 0x88]);
        let mut d = [0u8; 8];
        run(
            &m,
            &mut h,
            &mut v,
            Exit::MmioRead {
                addr: RAM_BASE - 3,
                data: &mut d,
            },
        );
        assert_eq!(d, data);
        assert_eq!(v.injected, 0);
    }

    #[test]
    fn mmio_to_nothing_injects_an_abort() {
        let m = machine();
        let mut h = handler(&m, Policy::Emulate, Box::new(StoreX0));
        let mut v = vcpu();
        let mut d = [0xffu8; 4];
        assert_eq!(
            run(
                &m,
                &mut h,
                &mut v,
                Exit::MmioRead {
                    addr: 0x4000_0000,
                    data: &mut d
                }
            ),
            ExitAction::Continue
        );
        assert_eq!(d, [0; 4]);
        assert_eq!(v.injected, 1);
        // Without the injection capability: a clear stop, not a hang.
        v.inject_fails = true;
        match run(
            &m,
            &mut h,
            &mut v,
            Exit::MmioWrite {
                addr: 0x4000_0000,
                data: &[1],
            },
        ) {
            ExitAction::Stop(s) => {
                assert_eq!(s.status, EXIT_VMM_ERROR);
                assert!(s.message.unwrap().contains("cannot inject"));
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn system_events() {
        let m = machine();
        let mut h = handler(&m, Policy::Emulate, Box::new(StoreX0));
        let mut v = vcpu();
        v.regs.x[1] = 0; // KVM zeroes x1..x3 before the exit reaches us.
        v.regs.x[4] = 42;
        assert_eq!(
            run(
                &m,
                &mut h,
                &mut v,
                Exit::SystemEvent {
                    kind: 1,
                    data: &[0]
                }
            ),
            ExitAction::Stop(Stop {
                status: 42,
                message: None
            })
        );
        v.regs.x[4] = 1000;
        assert_eq!(
            run(
                &m,
                &mut h,
                &mut v,
                Exit::SystemEvent {
                    kind: 1,
                    data: &[0]
                }
            ),
            ExitAction::Stop(Stop {
                status: 255,
                message: None
            })
        );
        match run(&m, &mut h, &mut v, Exit::SystemEvent { kind: 2, data: &[] }) {
            ExitAction::Stop(s) => assert_eq!(s.status, 0),
            a => panic!("{a:?}"),
        }
        match run(&m, &mut h, &mut v, Exit::SystemEvent { kind: 3, data: &[] }) {
            ExitAction::Stop(s) => assert_eq!(s.status, EXIT_GUEST_CRASH),
            a => panic!("{a:?}"),
        }
        assert_eq!(
            run(&m, &mut h, &mut v, Exit::SystemEvent { kind: 4, data: &[] }),
            ExitAction::Continue
        );
    }

    #[test]
    fn nisv_under_each_policy() {
        let m = machine();
        // emulate: the store lands in the window, NISV_COUNT shows it, PC advances.
        let mut h = handler(&m, Policy::Emulate, Box::new(StoreX0));
        let mut v = vcpu();
        v.regs.x[0] = 0xdead_beef;
        let pc = v.regs.pc;
        assert_eq!(
            run(
                &m,
                &mut h,
                &mut v,
                Exit::Nisv {
                    esr_iss: 0x45,
                    fault_ipa: TESTDEV_DATA_BASE + 8
                }
            ),
            ExitAction::Continue
        );
        assert_eq!(v.regs.pc, pc + 4);
        assert_eq!(m.dev.data(8, 4).unwrap(), vec![0xef, 0xbe, 0xad, 0xde]);
        let mut d = [0u8; 8];
        run(
            &m,
            &mut h,
            &mut v,
            Exit::MmioRead {
                addr: TESTDEV_CTRL_BASE + testdev::REG_NISV_COUNT,
                data: &mut d,
            },
        );
        assert_eq!(u64::from_le_bytes(d), 1);
        // emulate, nothing at the address: abort injected.
        assert_eq!(
            run(
                &m,
                &mut h,
                &mut v,
                Exit::Nisv {
                    esr_iss: 0x45,
                    fault_ipa: 0x4000_0000
                }
            ),
            ExitAction::Continue
        );
        assert_eq!(v.injected, 1);
        // inject: always.
        let mut h = handler(&m, Policy::Inject, Box::new(StoreX0));
        assert_eq!(
            run(
                &m,
                &mut h,
                &mut v,
                Exit::Nisv {
                    esr_iss: 0x45,
                    fault_ipa: TESTDEV_DATA_BASE
                }
            ),
            ExitAction::Continue
        );
        assert_eq!(v.injected, 2);
        // stop: a report naming the window, status 3.
        let mut h = handler(&m, Policy::Stop, Box::new(StoreX0));
        match run(
            &m,
            &mut h,
            &mut v,
            Exit::Nisv {
                esr_iss: 0x45,
                fault_ipa: TESTDEV_DATA_BASE,
            },
        ) {
            ExitAction::Stop(s) => {
                assert_eq!(s.status, EXIT_NISV_STOP);
                assert!(
                    s.message
                        .unwrap()
                        .contains("inside the testdev-data window")
                );
            }
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn retry_loop_through_handle_exit() {
        let m = machine();
        let mut h = handler(&m, Policy::Inject, Box::new(StoreX0));
        let mut v = vcpu();
        let mut last = ExitAction::Continue;
        let mut n = 0;
        while last == ExitAction::Continue && n < 100 {
            last = run(
                &m,
                &mut h,
                &mut v,
                Exit::Nisv {
                    esr_iss: 0x5,
                    fault_ipa: 0x4000_0000,
                },
            );
            n += 1;
        }
        assert_eq!(n, crate::nisv::RETRY_LIMIT as usize + 1);
        assert_eq!(v.injected, crate::nisv::RETRY_LIMIT);
        match last {
            ExitAction::Stop(s) => assert_eq!(s.status, EXIT_RETRY_LOOP),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn run_errors() {
        let m = machine();
        let mut h = handler(&m, Policy::Emulate, Box::new(StoreX0));
        let mut v = vcpu();
        assert_eq!(
            run(&m, &mut h, &mut v, Exit::RunError(libc::EINTR)),
            ExitAction::Continue
        );
        assert_eq!(
            run(&m, &mut h, &mut v, Exit::Interrupted),
            ExitAction::Continue
        );
        match run(&m, &mut h, &mut v, Exit::RunError(libc::ENOSYS)) {
            ExitAction::Stop(s) => {
                assert_eq!(s.status, EXIT_NISV_UNSUPPORTED);
                assert!(s.message.unwrap().contains("KVM_CAP_ARM_NISV_TO_USER"));
            }
            a => panic!("{a:?}"),
        }
        match run(&m, &mut h, &mut v, Exit::RunError(libc::EFAULT)) {
            ExitAction::Stop(s) => assert_eq!(s.status, EXIT_VMM_ERROR),
            a => panic!("{a:?}"),
        }
        match run(&m, &mut h, &mut v, Exit::Other("Hlt".into())) {
            ExitAction::Stop(s) => assert_eq!(s.status, EXIT_VMM_ERROR),
            a => panic!("{a:?}"),
        }
        let _ = AtomicU64::new(0);
    }

    #[test]
    fn control_pause_and_stop() {
        let c = Arc::new(VcpuControl::new());
        assert!(!c.stopping());
        // No pause requested: returns at once.
        c.wait_while_paused();
        let c2 = c.clone();
        let r = c.with_others_paused(move || {
            // A waiter would block now; stop releases it.
            let t = std::thread::spawn(move || c2.wait_while_paused());
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!t.is_finished());
            t
        });
        // Pause released: the waiter finishes.
        r.join().unwrap();
        c.request_stop();
        assert!(c.stopping());
    }
}
