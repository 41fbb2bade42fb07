// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The VMM's own memory footprint: its peak resident set minus the guest RAM
//! that is resident.
//!
//! * Peak RSS is `VmHWM` from `/proc/self/status` (the kernel's high-water mark
//!   of the resident set: anonymous, file and shared-memory pages).
//! * Resident guest RAM is counted with `mincore(2)` over the RAM mapping at
//!   exit. Guest RAM is anonymous memory that is never released while the VM
//!   runs, so its resident size only grows and the value at exit is its peak.
//!
//! `VmHWM − resident guest RAM at exit` is therefore a lower bound of the
//! VMM's own peak (at the moment of the high-water mark, guest RAM was at most
//! what it is at exit) and equals it when the peak is reached at exit.
//! It includes the devices' memory (the test device's 1 MiB data window, the
//! framebuffer), the binary, thread stacks and the heap.

use std::fmt;

/// Bytes per page for `mincore`.
fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// What was measured, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// `VmHWM`: peak resident set of the whole process.
    pub peak_rss: u64,
    /// `VmRSS` at the time of measuring.
    pub rss: u64,
    /// Guest RAM pages resident at the time of measuring.
    pub guest_resident: u64,
    /// Guest RAM size.
    pub guest_size: u64,
}

impl Footprint {
    /// The VMM's own peak: `peak_rss − guest_resident` (saturating).
    pub fn own_peak(&self) -> u64 {
        self.peak_rss.saturating_sub(self.guest_resident)
    }
}

impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        write!(
            f,
            "VMM peak RSS {:.1} MiB (VmHWM) - guest RAM resident {:.1} MiB of {:.0} MiB (mincore) = {:.1} MiB VMM's own",
            mib(self.peak_rss),
            mib(self.guest_resident),
            mib(self.guest_size),
            mib(self.own_peak()),
        )
    }
}

/// `VmHWM` and `VmRSS` from a `/proc/<pid>/status` text, in bytes.
pub fn parse_status(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let mut w = line.split_whitespace().skip(1);
        let v: u64 = w.next()?.parse().ok()?;
        match w.next() {
            Some("kB") => v.checked_mul(1024),
            _ => None,
        }
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Resident bytes of the mapping `[addr, addr + len)` (which must be a live
/// mapping of this process, page aligned).
pub fn resident_bytes(addr: *const u8, len: usize) -> std::io::Result<u64> {
    let page = page_size();
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: `vec` has one byte per page of the range, as mincore(2) requires;
    // the range is a mapping the caller owns (mincore only inspects page tables
    // and fails with ENOMEM for unmapped ranges).
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * page as u64)
}

/// Measure now: guest RAM is the mapping at `ram` of `ram_len` bytes.
pub fn measure(ram: *const u8, ram_len: usize) -> std::io::Result<Footprint> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let (peak_rss, rss) = parse_status(&status).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no VmHWM/VmRSS in /proc/self/status",
        )
    })?;
    Ok(Footprint {
        peak_rss,
        rss,
        guest_resident: resident_bytes(ram, ram_len)?,
        guest_size: ram_len as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let s = "Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_status(s), Some((2 << 20, 1 << 20)));
        assert_eq!(parse_status("VmHWM: 1 kB\n"), None);
        assert_eq!(parse_status("VmHWM: x kB\nVmRSS: 1 kB\n"), None);
        assert_eq!(parse_status("VmHWM: 1 MB\nVmRSS: 1 kB\n"), None);
    }

    #[test]
    fn counts_touched_pages_only() {
        let page = page_size();
        let len = 64 * page;
        // SAFETY: a fresh private anonymous mapping, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let base = p as *mut u8;
        assert_eq!(resident_bytes(base, len).unwrap(), 0);
        for i in [0, 5, 63] {
            // SAFETY: inside the mapping.
            unsafe { base.add(i * page).write_volatile(1) };
        }
        assert_eq!(resident_bytes(base, len).unwrap(), 3 * page as u64);
        let f = measure(base, len).unwrap();
        assert_eq!(f.guest_resident, 3 * page as u64);
        assert!(f.peak_rss >= f.rss && f.rss > 0);
        assert_eq!(f.own_peak(), f.peak_rss - f.guest_resident);
        assert!(f.to_string().contains("VmHWM"));
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(p, len) };
    }
}
