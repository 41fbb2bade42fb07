// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What a vCPU exit means: the plain [`handle_exit`] function.
//!
//! The `KVM_RUN` loop (`run_loop`, aarch64) only turns the kernel's answer into
//! an [`Exit`]; everything the VMM decides happens in [`handle_exit`], which
//! takes the vCPU through [`VcpuOps`] (kvm-nisv's [`VcpuRegs`] plus abort
//! injection) and is unit-tested on any host with an in-memory register file.
//! Stopping and kicking the threads is `control`.

use kvm_nisv::mem::{BusError, GuestRam};
use kvm_nisv::regcache::RegCache;
use kvm_nisv::regs::{Reg, RegError, VcpuRegs};

use crate::bus::{AccessData, Bus};
use crate::mmio_fixup::Straddle;
use crate::nisv::{NisvAction, NisvHandler};
use kvm_nisv::exception::{EntryFeatures, take_sync_exception};

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
    /// Run the vCPU again, but KVM must not complete the `KVM_EXIT_MMIO` access
    /// (the run loop clears `kvm_run.exit_reason`): the VMM made the vCPU take
    /// an exception, or wants the instruction executed again, so PC must not
    /// advance and no register may be written from `mmio.data`.
    Redirected,
    /// Stop the VM.
    Stop(Stop),
}

/// Why an external abort could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The kernel lacks `KVM_CAP_ARM_INJECT_EXT_DABT`.
    #[error("the kernel lacks KVM_CAP_ARM_INJECT_EXT_DABT")]
    NoCapability,
    /// `KVM_SET_VCPU_EVENTS` failed.
    #[error("KVM_SET_VCPU_EVENTS (ext_dabt_pending) failed")]
    Kvm(#[source] kvm_nisv::inject::InjectError),
    /// Writing back the registers the emulation changed failed (they must
    /// reach the vCPU before the abort is made pending).
    #[error("writing back registers before the injection failed")]
    Registers(#[source] kvm_nisv::regs::RegError),
}

/// A vCPU as [`handle_exit`] needs it.
pub trait VcpuOps: VcpuRegs {
    /// Make an external data abort pending (`KVM_SET_VCPU_EVENTS`, `ext_dabt_pending`).
    fn inject_ext_dabt(&mut self) -> Result<(), InjectError>;
}

/// `e` and its sources, for a stop message.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
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
    // A page-straddling access (docs/vmm.md): cheap pre-check inside.
    match crate::mmio_fixup::straddle(vcpu, ctx.ram, ctx.bus, addr, read.as_deref_mut(), write) {
        Straddle::No => {}
        Straddle::Completed => return ExitAction::Continue,
        Straddle::Fault(f) => {
            let act = ctx
                .nisv
                .straddle_fault(ctx.index, vcpu, ctx.ram, ctx.bus, addr, &f);
            return redirected(apply(ctx.nisv, vcpu, act));
        }
        Straddle::Retry => {
            let act = ctx.nisv.straddle_retry(vcpu, ctx.ram, ctx.bus, addr);
            return redirected(apply(ctx.nisv, vcpu, act));
        }
    }
    let r = match (read, write) {
        (Some(data), _) => {
            data.fill(0);
            match ctx.bus.read(addr, data) {
                Err(BusError::NoDevice { .. }) => {
                    ctx.bus.split_access(ctx.ram, addr, AccessData::Read(data))
                }
                r => r,
            }
        }
        (None, Some(data)) => match ctx.bus.write(addr, data) {
            Err(BusError::NoDevice { .. }) => {
                ctx.bus.split_access(ctx.ram, addr, AccessData::Write(data))
            }
            r => r,
        },
        (None, None) => Ok(()),
    };
    match r {
        Ok(()) => ExitAction::Continue,
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
            // The access did not happen: KVM must not complete it. Before Linux
            // 5.11, `KVM_SET_VCPU_EVENTS` entered the abort at once (PC at the
            // vector) and the next `KVM_RUN` still completed the MMIO access
            // (`kvm_handle_mmio_return()` runs whenever `exit_reason ==
            // KVM_EXIT_MMIO`), writing the load's register and skipping the
            // handler's first instruction. From 5.11 the exception stays pending
            // and the completion returns early for it, so clearing `exit_reason`
            // changes nothing there (docs/compatibility.md).
            redirected(apply(ctx.nisv, vcpu, act))
        }
        // A device that rejects an access: logged by the bus, the guest reads zeros.
        Err(_) => ExitAction::Continue,
    }
}

/// After an MMIO exit: the vCPU continues without KVM completing the access.
fn redirected(a: ExitAction) -> ExitAction {
    match a {
        ExitAction::Continue => ExitAction::Redirected,
        a => a,
    }
}

fn apply(nisv: &mut NisvHandler, vcpu: &mut dyn VcpuOps, act: NisvAction) -> ExitAction {
    match act {
        NisvAction::Resume | NisvAction::Retry => ExitAction::Continue,
        NisvAction::InjectAbort => match vcpu.inject_ext_dabt() {
            Ok(()) => {
                nisv.exception_delivered();
                ExitAction::Continue
            }
            Err(e) => stop(
                EXIT_VMM_ERROR,
                format!(
                    "kvm-nisv-vmm: cannot inject an external abort: {}",
                    chain(&e)
                ),
            ),
        },
        NisvAction::DeliverAbort { esr, far } => {
            match take_sync_exception(vcpu, esr, Some(far), EntryFeatures::new()) {
                Ok(()) => {
                    nisv.exception_delivered();
                    ExitAction::Continue
                }
                Err(e) => stop(
                    EXIT_VMM_ERROR,
                    format!(
                        "kvm-nisv-vmm: cannot deliver a data abort to the guest: {}",
                        chain(&e)
                    ),
                ),
            }
        }
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
    fn inject_ext_dabt(&mut self) -> Result<(), InjectError> {
        self.0.flush().map_err(InjectError::Registers)?;
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
            ctx.nisv.stats().reg_calls.fetch_add(
                u64::from(cached.0.traffic().total()),
                std::sync::atomic::Ordering::Relaxed,
            );
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

pub use crate::control::VcpuControl;
#[cfg(target_arch = "aarch64")]
pub use crate::control::{install_kick_handler, kick_pending};
#[cfg(target_arch = "aarch64")]
pub use crate::run_loop::{KvmVcpu, run_vcpu};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::NisvEmulator;
    use crate::memory::Ram;
    use crate::nisv::{EXIT_NISV_STOP, EXIT_RETRY_LOOP, NisvStats, Policy};
    use crate::testdev::{self, TestDevice};
    use crate::uart::Uart;
    use kvm_nisv::emulate::{EmulateError, Outcome};
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
        fn inject_ext_dabt(&mut self) -> Result<(), InjectError> {
            if self.inject_fails {
                return Err(InjectError::NoCapability);
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
        ) -> Result<Outcome, EmulateError> {
            let v = regs.get(Reg::X(0))?;
            bus.write(ipa, &v.to_le_bytes())?;
            let pc = regs.get(Reg::Pc)?;
            regs.set(Reg::Pc, pc + 4)?;
            let insn = kvm_nisv::decode::decode(0xf804_8420).expect("str (post-index) decodes");
            Ok(Outcome::Emulated { insn })
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
        let ram = Arc::new(crate::memory::ram(RAM_BASE, 1 << 20).unwrap());
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
        fn inject_ext_dabt(&mut self) -> Result<(), InjectError> {
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
    fn straddling_mmio_delivers_the_fault_of_its_piece_and_writes_nothing() {
        // str x0, [x1] with x1 = 4 bytes before the data window (MMU off: VA =
        // IPA): the first half has nothing behind it. KVM reports the window
        // half (ISV = 1, 8 bytes at the window's base).
        let m = machine();
        let mut h = handler(&m, Policy::Emulate, Box::new(StoreX0));
        let mut v = vcpu();
        m.ram
            .write(v.regs.pc, &0xf900_0020u32.to_le_bytes())
            .unwrap();
        v.regs
            .set_sys(kvm_nisv::regs::SysReg::VbarEl1, RAM_BASE + 0x800);
        v.regs.x[0] = 0x1122_3344_5566_7788;
        v.regs.x[1] = TESTDEV_DATA_BASE - 4;
        let pc = v.regs.pc;
        let data = v.regs.x[0].to_le_bytes();
        assert_eq!(
            run(
                &m,
                &mut h,
                &mut v,
                Exit::MmioWrite {
                    addr: TESTDEV_DATA_BASE,
                    data: &data
                }
            ),
            ExitAction::Redirected
        );
        assert_eq!(m.dev.data(0, 8).unwrap(), vec![0; 8], "nothing written");
        assert_eq!(v.regs.pc, RAM_BASE + 0x800 + 0x200);
        assert_eq!(v.regs.sys(kvm_nisv::regs::SysReg::ElrEl1), pc);
        assert_eq!(
            v.regs.sys(kvm_nisv::regs::SysReg::FarEl1),
            TESTDEV_DATA_BASE - 4
        );
        // EC 0x25, IL, WnR, DFSC 0x21: with the MMU off every data access is
        // Device-nGnRnE, so the unaligned access takes an alignment fault at its
        // first piece, before the missing device is looked at.
        assert_eq!(v.regs.sys(kvm_nisv::regs::SysReg::EsrEl1), 0x9600_0061);
        assert_eq!(v.injected, 0, "delivered through the registers, not KVM");
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
            // KVM must not complete the load (on Linux 5.10 it would skip the
            // handler's first instruction).
            ExitAction::Redirected
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
}
