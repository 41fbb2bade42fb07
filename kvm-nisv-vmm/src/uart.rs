// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The ns16550a console UART: vm-superio's `Serial` on the MMIO bus.
//!
//! Registers are bytes at consecutive offsets (`reg-shift = 0`, `reg-io-width = 1`
//! in the device tree). The interrupt is an eventfd that the VMM registers as a
//! KVM irqfd for the UART's SPI (edge-triggered from the GIC's point of view,
//! as firecracker wires its serial port). Output goes to the VMM's stdout;
//! input comes from stdin through [`spawn_stdin_reader`].

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::bus::{BusDevice, DeviceError};

/// An interrupt line backed by an eventfd (a KVM irqfd once registered).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

/// The console UART device.
pub struct Uart {
    serial: Serial<EventFdTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Uart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uart").finish_non_exhaustive()
    }
}

impl Uart {
    /// A UART that signals `irq` and writes the guest's output to `out`.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Self {
        Uart {
            serial: Serial::new(EventFdTrigger(irq), out),
        }
    }

    /// Queue input bytes for the guest; returns how many fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.serial.enqueue_raw_bytes(bytes).unwrap_or(0)
    }

    /// Free space in the input FIFO.
    pub fn input_space(&self) -> usize {
        self.serial.fifo_capacity()
    }

    /// Flush buffered output.
    pub fn flush(&mut self) {
        let _ = self.serial.writer_mut().flush();
    }
}

impl BusDevice for Uart {
    fn name(&self) -> &str {
        "uart"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), DeviceError> {
        data.fill(0);
        // Registers 0..=7; a wider access returns the register in its first byte.
        if let (Ok(reg @ 0..=7), Some(first)) = (u8::try_from(offset), data.first_mut()) {
            *first = self.serial.read(reg);
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        if let (Ok(reg @ 0..=7), Some(&first)) = (u8::try_from(offset), data.first()) {
            self.serial
                .write(reg, first)
                .map_err(|e| DeviceError::Backend(format!("uart: {e:?}")))?;
            // The guest's console output must reach the harness promptly.
            if reg == 0 {
                self.flush();
            }
        }
        Ok(())
    }
}

/// Forward stdin to the UART until EOF, in a detached thread.
pub fn spawn_stdin_reader(uart: Arc<Mutex<Uart>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 64];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut rest = buf.get(..n).unwrap_or(&[]);
                        while !rest.is_empty() {
                            let took = uart
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .enqueue_input(rest);
                            rest = rest.get(took..).unwrap_or(&[]);
                            if took == 0 {
                                std::thread::sleep(std::time::Duration::from_millis(5));
                            }
                        }
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn transmits_and_raises_the_interrupt() {
        let sink = Sink::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let irq2 = irq.try_clone().unwrap();
        let mut u = Uart::new(irq, Box::new(sink.clone()));
        // IER: enable THR-empty interrupt.
        u.write(1, &[0x02]).unwrap();
        for b in b"ok\n" {
            u.write(0, &[*b]).unwrap();
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"ok\n");
        assert!(irq2.read().unwrap() >= 1, "THR empty interrupt was raised");
        // LSR: THR empty and transmitter empty.
        let mut lsr = [0u8; 1];
        u.read(5, &mut lsr).unwrap();
        assert_eq!(lsr[0] & 0x60, 0x60);
        // Input: data ready after queueing a byte; reading RBR returns it.
        assert_eq!(u.enqueue_input(b"x"), 1);
        u.read(5, &mut lsr).unwrap();
        assert_eq!(lsr[0] & 0x01, 0x01);
        let mut rbr = [0u8; 4];
        u.read(0, &mut rbr).unwrap();
        assert_eq!(rbr, [b'x', 0, 0, 0]);
        // Outside the 8 registers: RAZ/WI.
        let mut r = [0xffu8; 1];
        u.read(0x100, &mut r).unwrap();
        assert_eq!(r, [0]);
        u.write(0x100, b"z").unwrap();
        assert_eq!(&*sink.0.lock().unwrap(), b"ok\n");
    }
}
