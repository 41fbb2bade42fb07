// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Console output on the ns16550a UART at 0x0900_0000.
//!
//! Only the transmit holding register (offset 0) is written. The VMM's UART
//! (vm-superio) never holds back a byte, and QEMU's `virt` board has a PL011 whose
//! data register is at the same address, so the guests print on both.

use core::fmt;

/// IPA of the UART.
pub const UART_BASE: usize = 0x0900_0000;

/// Writes one byte to the UART.
pub fn putc(b: u8) {
    // SAFETY: UART_BASE is the UART's MMIO register, identity mapped as Device
    // memory when the MMU is on; a byte store has no other effect.
    unsafe { core::ptr::write_volatile(UART_BASE as *mut u8, b) }
}

/// Writes a string, turning `\n` into `\r\n`.
pub fn puts(s: &str) {
    for b in s.bytes() {
        if b == b'\n' {
            putc(b'\r');
        }
        putc(b);
    }
}

/// A `fmt::Write` sink for the UART.
#[derive(Debug)]
pub struct Uart;

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        puts(s);
        Ok(())
    }
}

/// Prints to the UART.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::uart::Uart, format_args!($($arg)*));
    }};
}

/// Prints a line to the UART.
#[macro_export]
macro_rules! println {
    () => { $crate::uart::puts("\n") };
    ($($arg:tt)*) => {{
        $crate::print!($($arg)*);
        $crate::uart::puts("\n");
    }};
}
