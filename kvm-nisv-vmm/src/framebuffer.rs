// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A linear scan-out framebuffer, described to the guest as a
//! `simple-framebuffer` (Documentation/devicetree/bindings/display/simple-framebuffer.yaml).
//!
//! The pixels live in VMM memory and the window is deliberately **not** a
//! memslot: every guest access to it leaves the guest, as a `KVM_EXIT_MMIO`
//! (an access with a valid syndrome) or a `KVM_EXIT_ARM_NISV` (no syndrome:
//! pairs, SIMD structures, writeback forms, DC ZVA...), and is served here
//! through the bus. That is how a VMM sees a guest drawing on a device it
//! emulates, and what makes the guest's real drawing code (the kernel's fbdev
//! helpers, a user process's `memcpy` into an `mmap` of `/dev/fb0`) visible
//! to kvm-nisv. [`Framebuffer::rgb8`] converts the pixels for a screenshot.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::bus::{BusDevice, DeviceError};
use crate::layout::FB_MAX_SIZE;

/// The window is rounded up to 64 KiB, the largest arm64 page size, so that a
/// guest with 16K or 64K pages never maps a page that is only partly device.
const GRANULE: u64 = 0x1_0000;

/// A pixel format of the simple-framebuffer binding (the subset we offer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// 16 bpp: red 15:11, green 10:5, blue 4:0 of a little-endian u16.
    R5g6b5,
    /// 32 bpp: alpha 31:24 (ignored), red 23:16, green 15:8, blue 7:0.
    A8r8g8b8,
    /// 32 bpp: unused 31:24, red 23:16, green 15:8, blue 7:0.
    X8r8g8b8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub const fn bytes_per_pixel(self) -> u32 {
        match self {
            PixelFormat::R5g6b5 => 2,
            PixelFormat::A8r8g8b8 | PixelFormat::X8r8g8b8 => 4,
        }
    }

    /// The binding's `format` string.
    pub const fn name(self) -> &'static str {
        match self {
            PixelFormat::R5g6b5 => "r5g6b5",
            PixelFormat::A8r8g8b8 => "a8r8g8b8",
            PixelFormat::X8r8g8b8 => "x8r8g8b8",
        }
    }

    /// One pixel (little-endian bytes, `bytes_per_pixel` of them) as 8-bit
    /// red, green, blue. 5- and 6-bit channels are widened by replicating their
    /// top bits (`r8 = r5 << 3 | r5 >> 2`), so full scale stays full scale.
    pub fn to_rgb8(self, px: &[u8]) -> [u8; 3] {
        match self {
            PixelFormat::R5g6b5 => {
                let v = u16::from_le_bytes([
                    px.first().copied().unwrap_or(0),
                    px.get(1).copied().unwrap_or(0),
                ]);
                let r = ((v >> 11) & 0x1f) as u8;
                let g = ((v >> 5) & 0x3f) as u8;
                let b = (v & 0x1f) as u8;
                [r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2]
            }
            PixelFormat::A8r8g8b8 | PixelFormat::X8r8g8b8 => [
                px.get(2).copied().unwrap_or(0),
                px.get(1).copied().unwrap_or(0),
                px.first().copied().unwrap_or(0),
            ],
        }
    }
}

impl FromStr for PixelFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "r5g6b5" => Ok(PixelFormat::R5g6b5),
            "a8r8g8b8" => Ok(PixelFormat::A8r8g8b8),
            "x8r8g8b8" => Ok(PixelFormat::X8r8g8b8),
            _ => Err(format!(
                "unknown pixel format `{s}` (r5g6b5, a8r8g8b8 or x8r8g8b8)"
            )),
        }
    }
}

/// A framebuffer mode: `WIDTHxHEIGHT[-FORMAT]`, e.g. `320x240` (r5g6b5) or
/// `640x480-x8r8g8b8`. Lines are packed: stride = width × bytes per pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramebufferMode {
    /// Visible pixels per line.
    pub width: u32,
    /// Lines.
    pub height: u32,
    /// Pixel format.
    pub format: PixelFormat,
}

impl FramebufferMode {
    /// Bytes from one line to the next.
    pub const fn stride(&self) -> u64 {
        self.width as u64 * self.format.bytes_per_pixel() as u64
    }

    /// Bytes of pixel data (stride × height).
    pub const fn pixel_bytes(&self) -> u64 {
        self.stride() * self.height as u64
    }

    /// Size of the guest-visible window: the pixel data rounded up to 64 KiB.
    pub const fn window_size(&self) -> u64 {
        self.pixel_bytes().div_ceil(GRANULE) * GRANULE
    }
}

impl fmt::Display for FramebufferMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}-{}", self.width, self.height, self.format.name())
    }
}

impl FromStr for FramebufferMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (size, format) = match s.split_once('-') {
            Some((size, f)) => (size, f.parse()?),
            None => (s, PixelFormat::R5g6b5),
        };
        let bad = || format!("`{s}` is not a mode (examples: 320x240, 640x480-x8r8g8b8)");
        let (w, h) = size.split_once(['x', 'X']).ok_or_else(bad)?;
        let width: u32 = w.parse().map_err(|_| bad())?;
        let height: u32 = h.parse().map_err(|_| bad())?;
        if width == 0 || height == 0 || width > 8192 || height > 8192 {
            return Err(format!(
                "{width}x{height}: width and height must be 1..=8192"
            ));
        }
        let mode = FramebufferMode {
            width,
            height,
            format,
        };
        if mode.window_size() > FB_MAX_SIZE {
            return Err(format!(
                "{mode} needs {} bytes; the framebuffer window holds {FB_MAX_SIZE}",
                mode.pixel_bytes()
            ));
        }
        Ok(mode)
    }
}

/// The framebuffer: its mode and its memory, shared by the bus device, the
/// screenshot writer and whoever else looks at the screen.
#[derive(Clone, Debug)]
pub struct Framebuffer {
    mode: FramebufferMode,
    mem: Arc<Mutex<Vec<u8>>>,
}

impl Framebuffer {
    /// A black framebuffer of `mode`.
    pub fn new(mode: FramebufferMode) -> Self {
        Framebuffer {
            mode,
            mem: Arc::new(Mutex::new(vec![0; mode.window_size() as usize])),
        }
    }

    /// The mode.
    pub fn mode(&self) -> FramebufferMode {
        self.mode
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.mem.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the pixel data (stride × height bytes).
    pub fn pixels(&self) -> Vec<u8> {
        let m = self.lock();
        m.get(..self.mode.pixel_bytes() as usize)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    /// The picture as packed 8-bit RGB, row by row (width × height × 3 bytes).
    pub fn rgb8(&self) -> Vec<u8> {
        let mode = self.mode;
        let bpp = mode.format.bytes_per_pixel() as usize;
        let pixels = self.pixels();
        let mut out = Vec::with_capacity(mode.width as usize * mode.height as usize * 3);
        for px in pixels.chunks_exact(bpp) {
            out.extend_from_slice(&mode.format.to_rgb8(px));
        }
        out
    }

    /// The bus device for the framebuffer window.
    pub fn bus_device(&self) -> FramebufferDevice {
        FramebufferDevice(self.clone())
    }
}

/// The framebuffer window on the MMIO bus: any access of 1 to 16 bytes inside
/// the window, at any alignment.
#[derive(Debug)]
pub struct FramebufferDevice(Framebuffer);

impl FramebufferDevice {
    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, DeviceError> {
        let bad = DeviceError::BadAccess { offset, len };
        if !(1..=16).contains(&len) {
            return Err(bad);
        }
        let start = usize::try_from(offset).map_err(|_| bad.clone())?;
        let end = start.checked_add(len).ok_or(bad.clone())?;
        if end as u64 > self.0.mode.window_size() {
            return Err(bad);
        }
        Ok(start..end)
    }
}

impl BusDevice for FramebufferDevice {
    fn name(&self) -> &str {
        "framebuffer"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), DeviceError> {
        let r = self.range(offset, data.len())?;
        let m = self.0.lock();
        let src = m.get(r).ok_or(DeviceError::BadAccess {
            offset,
            len: data.len(),
        })?;
        data.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        let r = self.range(offset, data.len())?;
        let mut m = self.0.lock();
        let dst = m.get_mut(r).ok_or(DeviceError::BadAccess {
            offset,
            len: data.len(),
        })?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_size() {
        let m: FramebufferMode = "320x240".parse().unwrap();
        assert_eq!(m.format, PixelFormat::R5g6b5);
        assert_eq!(m.stride(), 640);
        assert_eq!(m.pixel_bytes(), 153_600);
        assert_eq!(m.window_size(), 196_608); // 3 x 64 KiB
        assert_eq!(m.to_string(), "320x240-r5g6b5");
        let m: FramebufferMode = "640x480-x8r8g8b8".parse().unwrap();
        assert_eq!(m.format, PixelFormat::X8r8g8b8);
        assert_eq!(m.stride(), 2560);
        assert_eq!(m.window_size(), 1_245_184);
        assert_eq!(
            "7x3-a8r8g8b8"
                .parse::<FramebufferMode>()
                .unwrap()
                .window_size(),
            0x1_0000
        );
        for bad in [
            "",
            "320",
            "x240",
            "320x",
            "0x10",
            "10x0",
            "320x240-rgb",
            "9000x10",
            "4096x4096-a8r8g8b8",
            "-1x5",
            "320x240x2",
        ] {
            assert!(bad.parse::<FramebufferMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pixel_conversion_keeps_full_scale() {
        let f = PixelFormat::R5g6b5;
        assert_eq!(f.to_rgb8(&0xffffu16.to_le_bytes()), [255, 255, 255]);
        assert_eq!(f.to_rgb8(&0xf800u16.to_le_bytes()), [255, 0, 0]);
        assert_eq!(f.to_rgb8(&0x07e0u16.to_le_bytes()), [0, 255, 0]);
        assert_eq!(f.to_rgb8(&0x001fu16.to_le_bytes()), [0, 0, 255]);
        // r5 = 0b10000 -> 0b10000100, g6 = 0b100000 -> 0b10000010.
        assert_eq!(f.to_rgb8(&0x8400u16.to_le_bytes()), [0x84, 0x82, 0]);
        let x = PixelFormat::X8r8g8b8;
        assert_eq!(x.to_rgb8(&0xff12_3456u32.to_le_bytes()), [0x12, 0x34, 0x56]);
        assert_eq!(
            PixelFormat::A8r8g8b8.to_rgb8(&0x0012_3456u32.to_le_bytes()),
            [0x12, 0x34, 0x56]
        );
        // Short input never panics.
        assert_eq!(x.to_rgb8(&[1]), [0, 0, 1]);
        assert_eq!(f.to_rgb8(&[]), [0, 0, 0]);
    }

    #[test]
    fn bus_accesses_land_in_the_picture() {
        let fb = Framebuffer::new("4x2".parse().unwrap());
        let mut d = fb.bus_device();
        assert_eq!(d.name(), "framebuffer");
        // Pixel (1, 1) = red, written as two bytes at an odd-looking offset.
        d.write(4 * 2 + 2, &0xf800u16.to_le_bytes()).unwrap();
        // A 16-byte write (one Q register) over line 0.
        d.write(0, &[0xff; 8]).unwrap();
        let mut b = [0u8; 2];
        d.read(10, &mut b).unwrap();
        assert_eq!(b, [0x00, 0xf8]);
        let rgb = fb.rgb8();
        assert_eq!(rgb.len(), 4 * 2 * 3);
        assert_eq!(&rgb[..12], &[255; 12]);
        assert_eq!(&rgb[15..18], &[255, 0, 0]);
        assert_eq!(fb.pixels().len(), 16);
        // Inside the rounded window but past the pixels: accepted.
        d.write(0xffff, &[1]).unwrap();
        // Outside, too large, empty, wrapping: refused.
        assert!(d.write(0x1_0000, &[1]).is_err());
        assert!(d.read(0xfffa, &mut [0; 8]).is_err());
        assert!(d.read(0, &mut [0; 17]).is_err());
        assert!(d.write(0, &[]).is_err());
        assert!(d.write(u64::MAX, &[1]).is_err());
        d.write(0, &[7; 16]).unwrap();
        assert_eq!(&fb.pixels()[..16], &[7; 16]);
    }
}
