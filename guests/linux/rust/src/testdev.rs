// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The VMM's test device (docs/guest-interface.md) seen from Linux user space:
//! its addresses from the device tree, its registers and data window mapped
//! through `/dev/mem` or a UIO device.

use std::ffi::CString;
use std::io;

/// Control register offsets.
pub const REG_ADDR: usize = 0x00;
pub const REG_OFFSET: usize = 0x08;
pub const REG_LEN: usize = 0x10;
pub const REG_CMD_STATUS: usize = 0x18;
pub const REG_NISV_COUNT: usize = 0x28;
pub const REG_RESULT: usize = 0x30;
pub const REG_EXIT_STATUS: usize = 0x38;
pub const REG_PHASE: usize = 0x40;
/// `CMD` 4: RESULT = FNV-1a 64 of data[OFFSET..+LEN].
pub const CMD_HASH: u64 = 4;
/// `CMD` 3: fill data[OFFSET..+LEN] with the byte ADDR & 0xff.
pub const CMD_FILL: u64 = 3;

/// FNV-1a 64, as the device's `CMD_HASH` computes it.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Physical addresses and sizes of the device's two windows.
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    pub ctrl: u64,
    pub ctrl_len: u64,
    pub data: u64,
    pub data_len: u64,
}

/// Read `reg` of the first `testdev@...` node under /proc/device-tree:
/// four big-endian u64 cells (ctrl base, size, data base, size).
pub fn find() -> io::Result<Addrs> {
    let dir = std::fs::read_dir("/proc/device-tree")?;
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("testdev@") {
            continue;
        }
        let reg = std::fs::read(e.path().join("reg"))?;
        let cell = |i: usize| -> io::Result<u64> {
            reg.get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| io::Error::other("short reg property"))
        };
        return Ok(Addrs {
            ctrl: cell(0)?,
            ctrl_len: cell(1)?,
            data: cell(2)?,
            data_len: cell(3)?,
        });
    }
    Err(io::Error::other("no testdev@ node in /proc/device-tree"))
}

/// A shared mapping of device memory.
#[derive(Debug)]
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory shared by the process's threads; the
// workloads hand disjoint parts to each thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; concurrent users coordinate through the device's atomics.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map `len` bytes of `path` at file offset `offset` (read/write, shared).
    pub fn open(path: &str, offset: u64, len: usize) -> io::Result<Mapping> {
        let c = CString::new(path).map_err(io::Error::other)?;
        // SAFETY: valid NUL-terminated path; the fd is checked.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_SYNC | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::other(format!(
                "open {path}: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: a fresh shared mapping of an open fd; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        let err = io::Error::last_os_error();
        // SAFETY: fd is ours; the mapping stays valid after close.
        unsafe { libc::close(fd) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::other(format!(
                "mmap {path} at {offset:#x} ({len} bytes): {err}"
            )));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, not used after this.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The control registers, mapped through /dev/mem. A command is a sequence of
/// register accesses (OFFSET, LEN, CMD, STATUS, RESULT): threads take turns.
#[derive(Debug)]
pub struct Ctrl {
    map: Mapping,
    command: std::sync::Mutex<()>,
}

impl Ctrl {
    pub fn open(a: &Addrs) -> io::Result<Ctrl> {
        Ok(Ctrl {
            map: Mapping::open("/dev/mem", a.ctrl, a.ctrl_len as usize)?,
            command: std::sync::Mutex::new(()),
        })
    }

    fn turn(&self) -> std::sync::MutexGuard<'_, ()> {
        self.command.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn read(&self, reg: usize) -> u64 {
        assert!(reg + 8 <= self.map.len() && reg.is_multiple_of(8));
        // SAFETY: an aligned u64 inside the mapping of the register page;
        // volatile: every access is a register access.
        unsafe { self.map.ptr().add(reg).cast::<u64>().read_volatile() }
    }

    pub fn write(&self, reg: usize, v: u64) {
        assert!(reg + 8 <= self.map.len() && reg.is_multiple_of(8));
        // SAFETY: as in `read`.
        unsafe { self.map.ptr().add(reg).cast::<u64>().write_volatile(v) }
    }

    /// The device's FNV-1a 64 of data[offset..+len] (`None`: out of range).
    pub fn hash(&self, offset: usize, len: usize) -> Option<u64> {
        let _turn = self.turn();
        // Every earlier access to the window happens before the command (the
        // compiler may not sink plain stores past volatile ones otherwise).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.write(REG_OFFSET, offset as u64);
        self.write(REG_LEN, len as u64);
        self.write(REG_CMD_STATUS, CMD_HASH);
        (self.read(REG_CMD_STATUS) == 0).then(|| self.read(REG_RESULT))
    }

    /// Fill data[offset..+len] with `byte` (the device's own command).
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> bool {
        let _turn = self.turn();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.write(REG_ADDR, u64::from(byte));
        self.write(REG_OFFSET, offset as u64);
        self.write(REG_LEN, len as u64);
        self.write(REG_CMD_STATUS, CMD_FILL);
        let ok = self.read(REG_CMD_STATUS) == 0;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        ok
    }

    /// Name what the guest does now (the VMM counts exits per phase).
    pub fn set_phase(&self, name: &str) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let mut b = [0u8; 8];
        for (d, s) in b.iter_mut().zip(name.bytes()) {
            *d = s;
        }
        self.write(REG_PHASE, u64::from_le_bytes(b));
    }

    pub fn nisv_count(&self) -> u64 {
        self.read(REG_NISV_COUNT)
    }

    pub fn set_exit_status(&self, status: u64) {
        self.write(REG_EXIT_STATUS, status);
    }
}

/// The size of UIO map `n` of `/dev/uio0`, from sysfs.
pub fn uio_map_size(n: u32) -> io::Result<usize> {
    let s = std::fs::read_to_string(format!("/sys/class/uio/uio0/maps/map{n}/size"))?;
    usize::from_str_radix(s.trim().trim_start_matches("0x"), 16).map_err(io::Error::other)
}
