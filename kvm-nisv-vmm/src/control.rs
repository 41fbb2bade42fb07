// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Stopping, pausing and kicking the vCPU threads.
//!
//! [`VcpuControl`] holds the stop flag, a pause gate (used when the vGIC's
//! register interface needs every vCPU out of `KVM_RUN`) and the vCPU threads'
//! ids. A kick is a real-time signal whose handler sets `kvm_run.immediate_exit`,
//! so a kick that lands just before `KVM_RUN` is not lost
//! (Documentation/virt/kvm/api.rst, "immediate_exit").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

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
pub use self::kick::*;

/// The kick signal's handler and this thread's `kvm_run`.
#[cfg(target_arch = "aarch64")]
mod kick {
    use std::cell::Cell;

    use kvm_bindings::kvm_run;

    use super::kick_signal;

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
        // SAFETY: the pointer is this thread's mmap'd kvm_run, set by the run
        // loop and cleared before the VcpuFd (and its mapping) is dropped; the
        // only other access is the kick handler's single-byte volatile store on
        // this same thread.
        unsafe { std::ptr::addr_of!((*p).immediate_exit).read_volatile() != 0 }
    }

    /// Install the kick signal handler (once, before starting vCPU threads).
    pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
    }

    /// Make `run` the `kvm_run` the kick handler of this thread writes to, or
    /// stop it writing (null). The run loop sets it before its first
    /// `KVM_RUN` and clears it before the `VcpuFd` (and its mapping) is dropped.
    pub fn set_thread_kvm_run(run: *mut kvm_run) {
        KVM_RUN.with(|c| c.set(run));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
