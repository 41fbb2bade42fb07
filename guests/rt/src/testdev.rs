// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The test device (docs/guest-interface.md): a 1 MiB data window at 0x7FF0_0000
//! that is not a memslot (so instructions without a valid syndrome exit as
//! KVM_EXIT_ARM_NISV), and control registers at 0x0A00_0000 with bulk copy
//! commands between guest RAM and the window.
//!
//! With the `qemu-virt` feature (smoke tests on plain QEMU, no VMM) the window
//! is ordinary RAM and the commands are done here in software.

/// IPA of the data window.
pub const WINDOW: u64 = 0x7FF0_0000;
/// Size of the data window.
pub const WINDOW_SIZE: u64 = 0x10_0000;
/// IPA of the control registers.
pub const CTRL: u64 = 0x0A00_0000;

const ADDR: u64 = 0x00;
const OFFSET: u64 = 0x08;
const LEN: u64 = 0x10;
const CMD: u64 = 0x18;
const STATUS: u64 = 0x18;
const LOG_COUNT: u64 = 0x20;
const NISV_COUNT: u64 = 0x28;

/// CMD: copy RAM[ADDR..+LEN] to data[OFFSET..+LEN].
pub const CMD_TO_DEVICE: u64 = 1;
/// CMD: copy data[OFFSET..+LEN] to RAM[ADDR..+LEN].
pub const CMD_FROM_DEVICE: u64 = 2;
/// CMD: fill data[OFFSET..+LEN] with the byte ADDR & 0xff.
pub const CMD_FILL: u64 = 3;

#[cfg(not(feature = "qemu-virt"))]
fn write(reg: u64, v: u64) {
    // SAFETY: a plain 64-bit store to the control register block (a valid
    // syndrome, so a KVM_EXIT_MMIO the VMM handles).
    unsafe { core::arch::asm!("str {}, [{}]", in(reg) v, in(reg) CTRL + reg, options(nostack)) }
}

#[cfg(not(feature = "qemu-virt"))]
fn read(reg: u64) -> u64 {
    let v: u64;
    // SAFETY: a plain 64-bit load from the control register block.
    unsafe { core::arch::asm!("ldr {}, [{}]", out(reg) v, in(reg) CTRL + reg, options(nostack)) }
    v
}

#[cfg(feature = "qemu-virt")]
static SOFT: crate::Global<[u64; 6]> = crate::Global::new([0; 6]);

#[cfg(feature = "qemu-virt")]
fn write(reg: u64, v: u64) {
    // SAFETY: single-threaded software model of the registers.
    let r = unsafe { &mut *SOFT.get() };
    match reg {
        ADDR => r[0] = v,
        OFFSET => r[1] = v,
        LEN => r[2] = v,
        CMD => {
            let (a, o, l) = (r[0], r[1], r[2]);
            let ok = o.checked_add(l).is_some_and(|e| e <= WINDOW_SIZE);
            r[3] = u64::from(!ok);
            if ok {
                let w = (WINDOW + o) as *mut u8;
                // SAFETY: under qemu-virt the window is RAM; ADDR is the guest's
                // own buffer; lengths were checked against the window.
                unsafe {
                    match v {
                        CMD_TO_DEVICE => core::ptr::copy(a as *const u8, w, l as usize),
                        CMD_FROM_DEVICE => core::ptr::copy(w, a as *mut u8, l as usize),
                        CMD_FILL => core::ptr::write_bytes(w, a as u8, l as usize),
                        _ => r[3] = 1,
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(feature = "qemu-virt")]
fn read(reg: u64) -> u64 {
    // SAFETY: single-threaded software model of the registers.
    let r = unsafe { &*SOFT.get() };
    match reg {
        STATUS => r[3],
        _ => 0,
    }
}

/// The last values written to ADDR, OFFSET and LEN (the registers keep their
/// values, so unchanged ones are not written again: each write is a VM exit).
static LAST: crate::Global<[u64; 3]> = crate::Global::new([u64::MAX; 3]);

/// Sets the ADDR, OFFSET and LEN registers (up to three exits).
pub fn setup(ram_addr: u64, offset: u64, len: u64) {
    // SAFETY: single-threaded; only this function uses LAST.
    let last = unsafe { &mut *LAST.get() };
    for (i, (reg, v)) in [(ADDR, ram_addr), (OFFSET, offset), (LEN, len)]
        .into_iter()
        .enumerate()
    {
        if last[i] != v {
            write(reg, v);
            last[i] = v;
        }
    }
}

static EPOCH: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Counts the commands issued so far: a caller that knows what the window held
/// after its own command can tell whether anyone has changed it since.
pub fn epoch() -> u64 {
    EPOCH.load(core::sync::atomic::Ordering::Relaxed)
}

/// Issues a command with the registers as they are (one exit).
pub fn command(cmd: u64) {
    // A plain load and store: single-threaded, and no exclusives (with the MMU
    // off all memory is Device memory).
    EPOCH.store(
        epoch().wrapping_add(1),
        core::sync::atomic::Ordering::Relaxed,
    );
    write(CMD, cmd);
}

/// The status of the last command: 0 success, 1 out of range.
pub fn status() -> u64 {
    read(STATUS)
}

/// Copies `len` bytes of guest RAM at `ram_addr` to the window at `offset`;
/// true on success.
pub fn to_device(ram_addr: u64, offset: u64, len: u64) -> bool {
    setup(ram_addr, offset, len);
    command(CMD_TO_DEVICE);
    status() == 0
}

/// Copies `len` bytes of the window at `offset` to guest RAM at `ram_addr`;
/// true on success.
pub fn from_device(ram_addr: u64, offset: u64, len: u64) -> bool {
    setup(ram_addr, offset, len);
    command(CMD_FROM_DEVICE);
    status() == 0
}

/// Fills `len` bytes of the window at `offset` with `byte`; true on success.
pub fn fill(offset: u64, len: u64, byte: u8) -> bool {
    setup(u64::from(byte), offset, len);
    command(CMD_FILL);
    status() == 0
}

/// Data-window accesses since the last clear.
pub fn log_count() -> u64 {
    read(LOG_COUNT)
}

/// Clears the access log count.
pub fn clear_log() {
    write(LOG_COUNT, 0);
}

/// NISV exits the VMM has emulated so far.
pub fn nisv_count() -> u64 {
    read(NISV_COUNT)
}
