// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The errno of a failed system call, as the source of this crate's errors.
//!
//! kvm-ioctls reports failures as `vmm_sys_util::errno::Error`. This crate's
//! error types are part of its portable core, which must not depend on
//! vmm-sys-util (a Linux crate), so they carry an [`Errno`] instead: the same
//! number, convertible both ways with the `kvm` feature.

use core::fmt;

/// An `errno` value (a positive error number, e.g. `ENOENT` = 2 on Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(i32);

impl Errno {
    /// Wrap an error number.
    pub const fn new(errno: i32) -> Self {
        Errno(errno)
    }

    /// The error number.
    pub const fn errno(self) -> i32 {
        self.0
    }

    /// The calling thread's current `errno` (right after a failed call).
    #[cfg(feature = "kvm")]
    pub(crate) fn last() -> Self {
        Errno(vmm_sys_util::errno::Error::last().errno())
    }
}

impl fmt::Display for Errno {
    /// The operating system's message (with `std`), or `errno N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(feature = "std")]
        {
            fmt::Display::fmt(&std::io::Error::from_raw_os_error(self.0), f)
        }
        #[cfg(not(feature = "std"))]
        {
            write!(f, "errno {}", self.0)
        }
    }
}

impl core::error::Error for Errno {}

#[cfg(feature = "kvm")]
impl From<vmm_sys_util::errno::Error> for Errno {
    fn from(e: vmm_sys_util::errno::Error) -> Self {
        Errno(e.errno())
    }
}

#[cfg(feature = "kvm")]
impl From<Errno> for vmm_sys_util::errno::Error {
    fn from(e: Errno) -> Self {
        vmm_sys_util::errno::Error::new(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_and_message() {
        let e = Errno::new(2);
        assert_eq!(e.errno(), 2);
        let msg = e.to_string();
        #[cfg(feature = "std")]
        assert!(msg.contains("os error 2"), "{msg}");
        #[cfg(not(feature = "std"))]
        assert_eq!(msg, "errno 2");
    }

    #[cfg(feature = "kvm")]
    #[test]
    fn converts_to_and_from_vmm_sys_util() {
        let e: Errno = vmm_sys_util::errno::Error::new(libc::ENOSYS).into();
        assert_eq!(e.errno(), libc::ENOSYS);
        let back: vmm_sys_util::errno::Error = e.into();
        assert_eq!(back.errno(), libc::ENOSYS);
    }
}
