// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The aarch64 `KVM_RUN` loop of one vCPU thread.
//!
//! As in firecracker's `vstate/vcpu.rs`, the loop only turns the kernel's
//! answer into an [`Exit`]; everything the VMM decides happens in
//! [`handle_exit`] (crate::vcpu). What stays here is what needs the `kvm_run`
//! mapping: copying MMIO data in and out, and keeping KVM from completing an
//! MMIO access the VMM already completed or redirected
//! ([`ExitAction::Redirected`], the sign-extension fix-up).

use std::sync::Arc;

use kvm_bindings::{KVM_EXIT_ARM_NISV, kvm_run};
use kvm_ioctls::{VcpuExit, VcpuFd};
use kvm_nisv::kvm_ioctls::ExtDabtInjector;
use kvm_nisv::mem::GuestRam;
use kvm_nisv::regs::{Reg, RegError, VcpuRegs};

use crate::adapter::kvm::nisv_payload;
use crate::bus::Bus;
use crate::control::{VcpuControl, set_thread_kvm_run};
use crate::nisv::NisvHandler;
use crate::vcpu::{Exit, ExitAction, ExitCtx, InjectError, Stop, VcpuOps, handle_exit};

/// A KVM vCPU as [`VcpuOps`].
#[derive(Debug)]
pub struct KvmVcpu<'a>(pub &'a VcpuFd, pub Option<&'a ExtDabtInjector>);

impl VcpuRegs for KvmVcpu<'_> {
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

impl VcpuOps for KvmVcpu<'_> {
    fn inject_ext_dabt(&mut self) -> Result<(), InjectError> {
        match self.1 {
            Some(i) => i.inject(self.0).map_err(InjectError::Kvm),
            None => Err(InjectError::NoCapability),
        }
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
    set_thread_kvm_run(vcpu.get_kvm_run() as *mut kvm_run);
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
        // Device-access exits: timed and counted per device and class
        // (exit_stats.rs), and ordered against other vCPUs so that emulated
        // read-modify-writes are atomic (rmw_lock.rs).
        let started = std::time::Instant::now();
        let counted = match &raw {
            Raw::MmioRead(a, _) | Raw::MmioWrite(a, ..) => {
                Some((crate::exit_stats::ExitKind::Mmio, *a))
            }
            Raw::Nisv => {
                nisv_payload(&mut vcpu).map(|(_, ipa)| (crate::exit_stats::ExitKind::Nisv, ipa))
            }
            _ => None,
        };
        let _order =
            counted.map(|(k, _)| crate::rmw_lock::for_exit(k == crate::exit_stats::ExitKind::Nisv));
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
                if done || a == ExitAction::Redirected {
                    // The load is complete, or the vCPU takes an exception / retries:
                    // keep KVM_RUN from completing it (again).
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
                let a = handle_exit(
                    &mut ctx,
                    &mut KvmVcpu(&vcpu, inj.as_ref()),
                    Exit::MmioWrite { addr, data },
                );
                if a == ExitAction::Redirected {
                    // Keep KVM_RUN from completing the store (PC + 4).
                    vcpu.get_kvm_run().exit_reason = 0; // KVM_EXIT_UNKNOWN
                }
                a
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
        if let Some((kind, ipa)) = counted {
            let device = bus.device_at(ipa).map(|(name, _)| name);
            crate::exit_stats::record(kind, device, started.elapsed());
        }
        if let ExitAction::Stop(s) = action {
            break Some(s);
        }
    };
    control.unregister_current_thread();
    set_thread_kvm_run(std::ptr::null_mut());
    result
}
