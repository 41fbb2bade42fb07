// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The test device of `docs/guest-interface.md`: a RAM-backed MMIO data window
//! (deliberately not a memslot, so every access exits) and 64-bit control registers.
//!
//! Two bus devices share one state: [`TestDevData`] for the window and
//! [`TestDevCtrl`] for the registers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_nisv::mem::GuestRam;

use crate::bus::{BusDevice, DeviceError};
use crate::layout::TESTDEV_DATA_SIZE;

/// `ADDR`: a guest RAM IPA (RW).
pub const REG_ADDR: u64 = 0x00;
/// `OFFSET`: an offset into the data window (RW).
pub const REG_OFFSET: u64 = 0x08;
/// `LEN`: a length in bytes (RW).
pub const REG_LEN: u64 = 0x10;
/// `CMD` (write) / `STATUS` (read).
pub const REG_CMD_STATUS: u64 = 0x18;
/// `LOG_COUNT`: data-window accesses since the last clear (read); clear (write).
pub const REG_LOG_COUNT: u64 = 0x20;
/// `NISV_COUNT`: NISV exits the VMM emulated so far (RO).
pub const REG_NISV_COUNT: u64 = 0x28;
/// `RESULT`: the result of the last `CMD_HASH` (RO).
pub const REG_RESULT: u64 = 0x30;
/// `EXIT_STATUS`: the status the VMM exits with when the guest next powers off
/// with PSCI `SYSTEM_OFF` (RW; takes precedence over x4 once written).
pub const REG_EXIT_STATUS: u64 = 0x38;
/// `PHASE`: up to 8 ASCII bytes naming what the guest is doing; the VMM counts
/// exits per phase (RW).
pub const REG_PHASE: u64 = 0x40;

/// `CMD` 1: copy RAM[ADDR..+LEN] to data[OFFSET..+LEN].
pub const CMD_RAM_TO_DATA: u64 = 1;
/// `CMD` 2: copy data[OFFSET..+LEN] to RAM[ADDR..+LEN].
pub const CMD_DATA_TO_RAM: u64 = 2;
/// `CMD` 3: fill data[OFFSET..+LEN] with the byte `ADDR & 0xff`.
pub const CMD_FILL: u64 = 3;
/// `CMD` 4: `RESULT` = FNV-1a 64 ([`fnv1a64`]) of data[OFFSET..+LEN].
pub const CMD_HASH: u64 = 4;

/// FNV-1a, 64-bit (offset basis 0xcbf2_9ce4_8422_2325, prime 0x100_0000_01b3):
/// what `CMD_HASH` computes, so that a guest can check the device's view of the
/// window without reading it back through the emulator.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// `STATUS` after a successful command.
pub const STATUS_OK: u64 = 0;
/// `STATUS` after a command that was out of range (or unknown).
pub const STATUS_ERROR: u64 = 1;

/// How many access-log entries are kept (the count goes on beyond this).
pub const LOG_CAPACITY: usize = 4096;

/// One data-window access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Offset inside the data window.
    pub offset: u64,
    /// Access size in bytes.
    pub size: u8,
    /// Whether it was a write.
    pub write: bool,
    /// The value, little-endian (the low `size` bytes are meaningful).
    pub value: u64,
}

struct State {
    data: Vec<u8>,
    addr: u64,
    offset: u64,
    len: u64,
    status: u64,
    log_count: u64,
    total_accesses: u64,
    log: Vec<LogEntry>,
    result: u64,
}

/// The shared state of the test device.
#[derive(Clone)]
pub struct TestDevice {
    state: Arc<Mutex<State>>,
    ram: Arc<dyn GuestRam + Send + Sync>,
    nisv_count: Arc<AtomicU64>,
    phase: Arc<AtomicU64>,
    /// Bit 63 set: written; low byte: the status.
    exit_status: Arc<AtomicU64>,
}

/// `exit_status` bit that says the register was written.
const EXIT_STATUS_SET: u64 = 1 << 63;

impl std::fmt::Debug for TestDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDevice").finish_non_exhaustive()
    }
}

impl TestDevice {
    /// A device with a zeroed data window; `nisv_count` is the VMM's counter of
    /// emulated NISV exits, shown in `NISV_COUNT`.
    pub fn new(ram: Arc<dyn GuestRam + Send + Sync>, nisv_count: Arc<AtomicU64>) -> Self {
        TestDevice {
            state: Arc::new(Mutex::new(State {
                data: vec![0; TESTDEV_DATA_SIZE as usize],
                addr: 0,
                offset: 0,
                len: 0,
                status: STATUS_OK,
                log_count: 0,
                total_accesses: 0,
                log: Vec::new(),
                result: 0,
            })),
            ram,
            nisv_count,
            phase: Arc::new(AtomicU64::new(0)),
            exit_status: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The `PHASE` register, shared (the exit counters read it).
    pub fn phase(&self) -> Arc<AtomicU64> {
        self.phase.clone()
    }

    /// The value last written to `EXIT_STATUS` (at most 255), if any.
    pub fn exit_status(&self) -> Option<i32> {
        let v = self.exit_status.load(Ordering::Relaxed);
        (v & EXIT_STATUS_SET != 0).then(|| (v & !EXIT_STATUS_SET).min(255) as i32)
    }

    /// The status to exit with when the guest powered off with `SYSTEM_OFF`
    /// and x4 gave `x4_status`: `EXIT_STATUS` if the guest wrote it, else
    /// `x4_status`. (Linux cannot choose x4: its PSCI call passes 0 there.)
    pub fn power_off_status(&self, x4_status: i32) -> i32 {
        self.exit_status().unwrap_or(x4_status)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bus device for the data window.
    pub fn data_device(&self) -> TestDevData {
        TestDevData(self.clone())
    }

    /// The bus device for the control registers.
    pub fn ctrl_device(&self) -> TestDevCtrl {
        TestDevCtrl(self.clone())
    }

    /// The first [`LOG_CAPACITY`] data-window accesses.
    pub fn log(&self) -> Vec<LogEntry> {
        self.lock().log.clone()
    }

    /// Data-window accesses since the VMM started (not reset by `LOG_COUNT` writes).
    pub fn total_accesses(&self) -> u64 {
        self.lock().total_accesses
    }

    /// A copy of `len` data-window bytes at `offset`, if in range (for tests and reports).
    pub fn data(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let s = self.lock();
        let start = usize::try_from(offset).ok()?;
        s.data
            .get(start..start.checked_add(len)?)
            .map(<[u8]>::to_vec)
    }

    fn run_command(&self, s: &mut State, cmd: u64) -> u64 {
        // data[OFFSET..OFFSET+LEN] must be inside the window.
        let range = usize::try_from(s.offset)
            .ok()
            .zip(usize::try_from(s.len).ok())
            .and_then(|(o, l)| Some(o..o.checked_add(l)?))
            .filter(|r| r.end <= s.data.len());
        let Some(range) = range else {
            return STATUS_ERROR;
        };
        let Some(window) = s.data.get_mut(range) else {
            return STATUS_ERROR;
        };
        let mut hash = None;
        let ok = match cmd {
            CMD_RAM_TO_DATA => self.ram.read(s.addr, window).is_ok(),
            CMD_DATA_TO_RAM => self.ram.write(s.addr, window).is_ok(),
            CMD_FILL => {
                window.fill(s.addr as u8);
                true
            }
            CMD_HASH => {
                hash = Some(fnv1a64(window));
                true
            }
            _ => false,
        };
        if let Some(h) = hash {
            s.result = h;
        }
        if ok { STATUS_OK } else { STATUS_ERROR }
    }
}

fn le_value(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(data) {
        *d = *s;
    }
    u64::from_le_bytes(b)
}

/// The test device's data window on the bus.
#[derive(Debug)]
pub struct TestDevData(TestDevice);

impl TestDevData {
    /// Lock the state and check `[offset, offset + len)`; counts the access.
    fn access(
        &mut self,
        offset: u64,
        len: usize,
    ) -> Result<(MutexGuard<'_, State>, std::ops::Range<usize>), DeviceError> {
        let bad = DeviceError::BadAccess { offset, len };
        if !(1..=16).contains(&len) {
            return Err(bad);
        }
        let mut s = self.0.lock();
        let start = usize::try_from(offset).map_err(|_| bad.clone())?;
        let range = start..start.checked_add(len).ok_or(bad.clone())?;
        if range.end > s.data.len() {
            return Err(bad);
        }
        s.log_count = s.log_count.wrapping_add(1);
        s.total_accesses = s.total_accesses.wrapping_add(1);
        Ok((s, range))
    }
}

impl BusDevice for TestDevData {
    fn name(&self) -> &str {
        "testdev-data"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), DeviceError> {
        let (mut s, range) = self.access(offset, data.len())?;
        let src = s.data.get(range).ok_or(DeviceError::BadAccess {
            offset,
            len: data.len(),
        })?;
        data.copy_from_slice(src);
        if s.log.len() < LOG_CAPACITY {
            s.log.push(LogEntry {
                offset,
                size: data.len() as u8,
                write: false,
                value: le_value(data),
            });
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        let (mut s, range) = self.access(offset, data.len())?;
        let dst = s.data.get_mut(range).ok_or(DeviceError::BadAccess {
            offset,
            len: data.len(),
        })?;
        dst.copy_from_slice(data);
        if s.log.len() < LOG_CAPACITY {
            s.log.push(LogEntry {
                offset,
                size: data.len() as u8,
                write: true,
                value: le_value(data),
            });
        }
        Ok(())
    }
}

/// The test device's control registers on the bus.
#[derive(Debug)]
pub struct TestDevCtrl(TestDevice);

impl BusDevice for TestDevCtrl {
    fn name(&self) -> &str {
        "testdev-ctrl"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), DeviceError> {
        if data.len() != 8 || !offset.is_multiple_of(8) {
            return Err(DeviceError::BadAccess {
                offset,
                len: data.len(),
            });
        }
        let s = self.0.lock();
        let v = match offset {
            REG_ADDR => s.addr,
            REG_OFFSET => s.offset,
            REG_LEN => s.len,
            REG_CMD_STATUS => s.status,
            REG_LOG_COUNT => s.log_count,
            REG_NISV_COUNT => self.0.nisv_count.load(Ordering::Relaxed),
            REG_RESULT => s.result,
            REG_EXIT_STATUS => self.0.exit_status.load(Ordering::Relaxed) & !EXIT_STATUS_SET,
            REG_PHASE => self.0.phase.load(Ordering::Relaxed),
            _ => 0, // RAZ
        };
        data.copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        if data.len() != 8 || !offset.is_multiple_of(8) {
            return Err(DeviceError::BadAccess {
                offset,
                len: data.len(),
            });
        }
        let v = le_value(data);
        let dev = self.0.clone();
        let mut s = dev.lock();
        match offset {
            REG_ADDR => s.addr = v,
            REG_OFFSET => s.offset = v,
            REG_LEN => s.len = v,
            REG_CMD_STATUS => {
                let st = dev.run_command(&mut s, v);
                s.status = st;
            }
            REG_LOG_COUNT => s.log_count = 0,
            REG_EXIT_STATUS => self
                .0
                .exit_status
                .store(EXIT_STATUS_SET | (v & !EXIT_STATUS_SET), Ordering::Relaxed),
            REG_PHASE => self.0.phase.store(v, Ordering::Relaxed),
            _ => {} // NISV_COUNT, RESULT and unassigned offsets: WI
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Ram;

    const RAM: u64 = 0x8000_0000;

    fn setup() -> (
        Arc<Ram>,
        TestDevice,
        TestDevCtrl,
        TestDevData,
        Arc<AtomicU64>,
    ) {
        let ram = Arc::new(crate::memory::ram(RAM, 0x10000).unwrap());
        let n = Arc::new(AtomicU64::new(0));
        let dev = TestDevice::new(ram.clone(), n.clone());
        let c = dev.ctrl_device();
        let d = dev.data_device();
        (ram, dev, c, d, n)
    }

    fn wr(c: &mut TestDevCtrl, off: u64, v: u64) {
        c.write(off, &v.to_le_bytes()).unwrap();
    }

    fn rd(c: &mut TestDevCtrl, off: u64) -> u64 {
        let mut b = [0u8; 8];
        c.read(off, &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    #[test]
    fn registers_read_back() {
        let (_, _, mut c, _, n) = setup();
        wr(&mut c, REG_ADDR, 0x1234_5678_9abc_def0);
        wr(&mut c, REG_OFFSET, 0x10);
        wr(&mut c, REG_LEN, 0x20);
        assert_eq!(rd(&mut c, REG_ADDR), 0x1234_5678_9abc_def0);
        assert_eq!(rd(&mut c, REG_OFFSET), 0x10);
        assert_eq!(rd(&mut c, REG_LEN), 0x20);
        n.store(7, Ordering::Relaxed);
        assert_eq!(rd(&mut c, REG_NISV_COUNT), 7);
        wr(&mut c, REG_NISV_COUNT, 0);
        assert_eq!(rd(&mut c, REG_NISV_COUNT), 7, "NISV_COUNT is read-only");
        assert_eq!(rd(&mut c, 0x100), 0, "unassigned offsets read as zero");
        let mut b4 = [0u8; 4];
        assert!(c.read(REG_ADDR, &mut b4).is_err(), "32-bit access refused");
        assert!(
            c.write(REG_ADDR + 4, &[0; 8]).is_err(),
            "misaligned access refused"
        );
    }

    #[test]
    fn copy_commands_move_bytes_both_ways() {
        let (ram, dev, mut c, _, _) = setup();
        ram.write(RAM + 0x100, b"hello, window").unwrap();
        wr(&mut c, REG_ADDR, RAM + 0x100);
        wr(&mut c, REG_OFFSET, 0xffff0);
        wr(&mut c, REG_LEN, 13);
        wr(&mut c, REG_CMD_STATUS, CMD_RAM_TO_DATA);
        assert_eq!(rd(&mut c, REG_CMD_STATUS), STATUS_OK);
        assert_eq!(dev.data(0xffff0, 13).unwrap(), b"hello, window");
        wr(&mut c, REG_ADDR, RAM + 0x800);
        wr(&mut c, REG_CMD_STATUS, CMD_DATA_TO_RAM);
        assert_eq!(rd(&mut c, REG_CMD_STATUS), STATUS_OK);
        let mut b = [0u8; 13];
        ram.read(RAM + 0x800, &mut b).unwrap();
        assert_eq!(&b, b"hello, window");
        // Fill with ADDR's low byte.
        wr(&mut c, REG_ADDR, 0x1a5);
        wr(&mut c, REG_OFFSET, 4);
        wr(&mut c, REG_LEN, 3);
        wr(&mut c, REG_CMD_STATUS, CMD_FILL);
        assert_eq!(rd(&mut c, REG_CMD_STATUS), STATUS_OK);
        assert_eq!(dev.data(3, 5).unwrap(), vec![0, 0xa5, 0xa5, 0xa5, 0]);
    }

    #[test]
    fn out_of_range_commands_set_status_and_change_nothing() {
        let (ram, dev, mut c, _, _) = setup();
        let cases: [(u64, u64, u64, u64); 7] = [
            // (cmd, addr, offset, len)
            (CMD_RAM_TO_DATA, RAM + 0xfff0, 0, 0x20), // RAM end
            (CMD_RAM_TO_DATA, RAM - 8, 0, 0x10),      // below RAM
            (CMD_DATA_TO_RAM, u64::MAX - 3, 0, 8),    // wraps
            (CMD_FILL, 0xff, TESTDEV_DATA_SIZE - 1, 2), // window end
            (CMD_FILL, 0xff, u64::MAX, 2),            // offset wraps
            (CMD_RAM_TO_DATA, RAM, 0, u64::MAX),      // huge length
            (9, RAM, 0, 1),                           // unknown command
        ];
        for (cmd, addr, off, len) in cases {
            // Reset status with a good command first.
            wr(&mut c, REG_ADDR, 0);
            wr(&mut c, REG_OFFSET, 0);
            wr(&mut c, REG_LEN, 0);
            wr(&mut c, REG_CMD_STATUS, CMD_FILL);
            assert_eq!(rd(&mut c, REG_CMD_STATUS), STATUS_OK);
            wr(&mut c, REG_ADDR, addr);
            wr(&mut c, REG_OFFSET, off);
            wr(&mut c, REG_LEN, len);
            wr(&mut c, REG_CMD_STATUS, cmd);
            assert_eq!(
                rd(&mut c, REG_CMD_STATUS),
                STATUS_ERROR,
                "cmd {cmd} {addr:#x} {off:#x} {len:#x}"
            );
        }
        assert_eq!(dev.data(TESTDEV_DATA_SIZE - 1, 1).unwrap(), vec![0]);
        let mut b = [0u8; 16];
        ram.read(RAM + 0xfff0, &mut b).unwrap();
        assert_eq!(b, [0; 16]);
    }

    #[test]
    fn data_window_any_size_any_alignment_and_log() {
        let (_, dev, mut c, mut d, _) = setup();
        d.write(3, &0x1122_3344_5566_7788u64.to_le_bytes()).unwrap();
        let mut b2 = [0u8; 2];
        d.read(4, &mut b2).unwrap();
        assert_eq!(b2, [0x77, 0x66]);
        d.write(TESTDEV_DATA_SIZE - 1, &[0xee]).unwrap();
        let mut b1 = [0u8; 1];
        d.read(TESTDEV_DATA_SIZE - 1, &mut b1).unwrap();
        assert_eq!(b1, [0xee]);
        assert!(d.read(TESTDEV_DATA_SIZE - 1, &mut b2).is_err());
        assert!(d.write(u64::MAX, &[1]).is_err());
        assert_eq!(rd(&mut c, REG_LOG_COUNT), 4);
        assert_eq!(
            dev.log(),
            vec![
                LogEntry {
                    offset: 3,
                    size: 8,
                    write: true,
                    value: 0x1122_3344_5566_7788
                },
                LogEntry {
                    offset: 4,
                    size: 2,
                    write: false,
                    value: 0x6677
                },
                LogEntry {
                    offset: TESTDEV_DATA_SIZE - 1,
                    size: 1,
                    write: true,
                    value: 0xee
                },
                LogEntry {
                    offset: TESTDEV_DATA_SIZE - 1,
                    size: 1,
                    write: false,
                    value: 0xee
                },
            ]
        );
        wr(&mut c, REG_LOG_COUNT, 0);
        assert_eq!(rd(&mut c, REG_LOG_COUNT), 0);
        assert_eq!(dev.total_accesses(), 4);
    }

    #[test]
    fn hash_exit_status_and_phase() {
        let (_, dev, mut c, mut d, _) = setup();
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        // Published FNV-1a 64 test vector.
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        d.write(0x100, b"hello").unwrap();
        wr(&mut c, REG_OFFSET, 0x100);
        wr(&mut c, REG_LEN, 5);
        wr(&mut c, REG_CMD_STATUS, CMD_HASH);
        assert_eq!(rd(&mut c, REG_CMD_STATUS), STATUS_OK);
        assert_eq!(rd(&mut c, REG_RESULT), fnv1a64(b"hello"));
        wr(&mut c, REG_RESULT, 7);
        assert_eq!(rd(&mut c, REG_RESULT), fnv1a64(b"hello"), "RESULT is RO");
        // Out of range: error, RESULT unchanged.
        wr(&mut c, REG_OFFSET, TESTDEV_DATA_SIZE);
        wr(&mut c, REG_CMD_STATUS, CMD_HASH);
        assert_eq!(rd(&mut c, REG_CMD_STATUS), STATUS_ERROR);
        assert_eq!(rd(&mut c, REG_RESULT), fnv1a64(b"hello"));

        assert_eq!(dev.exit_status(), None);
        assert_eq!(dev.power_off_status(42), 42);
        wr(&mut c, REG_EXIT_STATUS, 0);
        assert_eq!(dev.exit_status(), Some(0), "0 written is a status too");
        assert_eq!(dev.power_off_status(42), 0);
        wr(&mut c, REG_EXIT_STATUS, 3);
        assert_eq!(rd(&mut c, REG_EXIT_STATUS), 3);
        assert_eq!(dev.power_off_status(0), 3);
        wr(&mut c, REG_EXIT_STATUS, u64::MAX);
        assert_eq!(dev.exit_status(), Some(255));

        let phase = dev.phase();
        wr(&mut c, REG_PHASE, u64::from_le_bytes(*b"rs-devm\0"));
        assert_eq!(
            phase.load(Ordering::Relaxed),
            u64::from_le_bytes(*b"rs-devm\0")
        );
        assert_eq!(rd(&mut c, REG_PHASE), u64::from_le_bytes(*b"rs-devm\0"));
    }
}
