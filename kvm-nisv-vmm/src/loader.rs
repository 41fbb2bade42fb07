// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Loading the kernel (arm64 `Image` or flat binary), the initrd and the DTB.
//!
//! An arm64 `Image` (identified by its header magic, `Documentation/arch/arm64/booting.rst`
//! section 4) is loaded by linux-loader's PE loader at RAM start (2 MiB aligned) +
//! `text_offset`. Anything else is a flat binary loaded at the start of RAM and
//! entered at its first byte. The DTB goes in the last 2 MiB of RAM; the initrd
//! right below it, page aligned.

use std::io::{Read, Seek, SeekFrom};

use kvm_nisv::mem::GuestRam;
use thiserror::Error;

use crate::layout::{DTB_MAX_SIZE, RAM_BASE, dtb_addr};
use crate::memory::Ram;

/// The arm64 Image header magic, "ARM\x64" little-endian, at offset 56.
pub const ARM64_IMAGE_MAGIC: u32 = 0x644d_5241;
/// `text_offset` to assume when `image_size` is 0 (kernels before v3.17).
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// Loader errors.
#[derive(Debug, Error)]
pub enum LoadError {
    /// Reading the file failed.
    #[error("cannot read {what}: {source}")]
    Io {
        /// Which file.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not fit where it has to go.
    #[error("{what} ({size} bytes at {addr:#x}) does not fit in guest RAM below {limit:#x}")]
    TooBig {
        /// Which file.
        what: &'static str,
        /// Its size.
        size: u64,
        /// Where it would go.
        addr: u64,
        /// The first byte it may not touch.
        limit: u64,
    },
    /// linux-loader refused the Image.
    #[error("cannot load the arm64 Image: {0}")]
    Image(String),
    /// Writing guest RAM failed.
    #[error("cannot write {what} to guest RAM: {source}")]
    Ram {
        /// Which file.
        what: &'static str,
        /// The RAM error.
        #[source]
        source: kvm_nisv::mem::MemError,
    },
}

/// The fields of the arm64 Image header we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Image load offset from a 2 MiB aligned base.
    pub text_offset: u64,
    /// Effective image size (including BSS); 0 for very old kernels.
    pub image_size: u64,
    /// Informative flags (bit 0: big-endian kernel).
    pub flags: u64,
}

/// Parse an arm64 Image header (64 bytes); `None` when the magic is absent.
pub fn parse_image_header(h: &[u8]) -> Option<ImageHeader> {
    let le64 =
        |o: usize| -> Option<u64> { Some(u64::from_le_bytes(h.get(o..o + 8)?.try_into().ok()?)) };
    let magic = u32::from_le_bytes(h.get(56..60)?.try_into().ok()?);
    if magic != ARM64_IMAGE_MAGIC {
        return None;
    }
    let image_size = le64(16)?;
    let text_offset = if image_size == 0 {
        LEGACY_TEXT_OFFSET
    } else {
        le64(8)?
    };
    Some(ImageHeader {
        text_offset,
        image_size,
        flags: le64(24)?,
    })
}

/// What kind of kernel was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// An arm64 Linux `Image`.
    Image(ImageHeader),
    /// A flat binary.
    Flat,
}

/// Where the kernel went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedKernel {
    /// Entry point (first byte of the loaded file).
    pub entry: u64,
    /// First byte after the kernel's memory footprint (BSS included for Images).
    pub end: u64,
    /// The format.
    pub kind: KernelKind,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> LoadError {
    move |source| LoadError::Io { what, source }
}

/// Load the kernel into `ram` (of `ram_size` bytes at [`RAM_BASE`]).
pub fn load_kernel<F: Read + Seek + vm_memory::ReadVolatile>(
    ram: &Ram,
    ram_size: u64,
    file: &mut F,
) -> Result<LoadedKernel, LoadError> {
    let size = file.seek(SeekFrom::End(0)).map_err(io("kernel"))?;
    file.seek(SeekFrom::Start(0)).map_err(io("kernel"))?;
    let mut head = [0u8; 64];
    let got = read_up_to(file, &mut head).map_err(io("kernel"))?;
    let limit = dtb_addr(ram_size);
    let kind = match parse_image_header(head.get(..got).unwrap_or(&[])) {
        Some(h) => KernelKind::Image(h),
        None => KernelKind::Flat,
    };
    let (entry, footprint) = match kind {
        KernelKind::Image(h) => (RAM_BASE.checked_add(h.text_offset), h.image_size.max(size)),
        KernelKind::Flat => (Some(RAM_BASE), size),
    };
    let too_big = |addr: u64| LoadError::TooBig {
        what: "kernel",
        size: footprint,
        addr,
        limit,
    };
    let entry = entry.ok_or_else(|| too_big(RAM_BASE))?;
    let end = entry
        .checked_add(footprint)
        .filter(|&e| e <= limit)
        .ok_or_else(|| too_big(entry))?;
    file.seek(SeekFrom::Start(0)).map_err(io("kernel"))?;
    match kind {
        KernelKind::Image(_) => load_image(ram, file, entry)?,
        KernelKind::Flat => copy_file(ram, file, entry, size, "kernel")?,
    }
    Ok(LoadedKernel { entry, end, kind })
}

#[cfg(target_arch = "aarch64")]
fn load_image<F: Read + Seek + vm_memory::ReadVolatile>(
    ram: &Ram,
    file: &mut F,
    entry: u64,
) -> Result<(), LoadError> {
    use linux_loader::loader::KernelLoader;
    let r = linux_loader::loader::pe::PE::load(
        ram.memory(),
        Some(vm_memory::GuestAddress(RAM_BASE)),
        file,
        None,
    )
    .map_err(|e| LoadError::Image(e.to_string()))?;
    if r.kernel_load.0 != entry {
        return Err(LoadError::Image(format!(
            "linux-loader placed the Image at {:#x}, expected {entry:#x}",
            r.kernel_load.0
        )));
    }
    Ok(())
}

/// linux-loader's PE loader is built for arm64/riscv64 only; on other hosts (unit
/// tests) the Image is copied the same way, to the same address.
#[cfg(not(target_arch = "aarch64"))]
fn load_image<F: Read + Seek + vm_memory::ReadVolatile>(
    ram: &Ram,
    file: &mut F,
    entry: u64,
) -> Result<(), LoadError> {
    let size = file.seek(SeekFrom::End(0)).map_err(io("kernel"))?;
    file.seek(SeekFrom::Start(0)).map_err(io("kernel"))?;
    copy_file(ram, file, entry, size, "kernel")
}

fn read_up_to<F: Read>(f: &mut F, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(buf.get_mut(n..).unwrap_or(&mut [])) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn copy_file<F: Read>(
    ram: &Ram,
    file: &mut F,
    addr: u64,
    size: u64,
    what: &'static str,
) -> Result<(), LoadError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = addr;
    let mut left = size;
    while left > 0 {
        let chunk = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let dst = buf.get_mut(..chunk).unwrap_or(&mut []);
        file.read_exact(dst).map_err(io(what))?;
        ram.write(at, dst)
            .map_err(|source| LoadError::Ram { what, source })?;
        at += chunk as u64;
        left -= chunk as u64;
    }
    Ok(())
}

/// Load an initrd right below the DTB slot, 4 KiB aligned, above `kernel_end`.
/// Returns `[start, end)`.
pub fn load_initrd<F: Read + Seek>(
    ram: &Ram,
    ram_size: u64,
    kernel_end: u64,
    file: &mut F,
) -> Result<(u64, u64), LoadError> {
    let size = file.seek(SeekFrom::End(0)).map_err(io("initrd"))?;
    file.seek(SeekFrom::Start(0)).map_err(io("initrd"))?;
    let limit = dtb_addr(ram_size);
    let start = limit
        .checked_sub(size)
        .map(|s| s & !0xfff)
        .filter(|&s| s >= kernel_end)
        .ok_or(LoadError::TooBig {
            what: "initrd",
            size,
            addr: kernel_end,
            limit,
        })?;
    copy_file(ram, file, start, size, "initrd")?;
    Ok((start, start + size))
}

/// Write the DTB at its slot; returns its IPA.
pub fn load_dtb(ram: &Ram, ram_size: u64, blob: &[u8]) -> Result<u64, LoadError> {
    let addr = dtb_addr(ram_size);
    if blob.len() > DTB_MAX_SIZE {
        return Err(LoadError::TooBig {
            what: "DTB",
            size: blob.len() as u64,
            addr,
            limit: addr + DTB_MAX_SIZE as u64,
        });
    }
    ram.write(addr, blob).map_err(|source| LoadError::Ram {
        what: "DTB",
        source,
    })?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const MIB: u64 = 1 << 20;

    fn image(text_offset: u64, image_size: u64, body: usize) -> Vec<u8> {
        let mut v = vec![0u8; body.max(64)];
        v[0..4].copy_from_slice(&0x1400_0000u32.to_le_bytes()); // b .
        v[8..16].copy_from_slice(&text_offset.to_le_bytes());
        v[16..24].copy_from_slice(&image_size.to_le_bytes());
        v[56..60].copy_from_slice(&ARM64_IMAGE_MAGIC.to_le_bytes());
        v
    }

    #[test]
    fn header_parsing() {
        let h = parse_image_header(&image(0x20_0000, 3 * MIB, 64)).unwrap();
        assert_eq!(
            h,
            ImageHeader {
                text_offset: 0x20_0000,
                image_size: 3 * MIB,
                flags: 0
            }
        );
        assert_eq!(
            parse_image_header(&image(0x1234, 0, 64))
                .unwrap()
                .text_offset,
            LEGACY_TEXT_OFFSET
        );
        assert_eq!(parse_image_header(&[0u8; 64]), None);
        assert_eq!(
            parse_image_header(&image(0, 0, 64)[..59]),
            None,
            "short header"
        );
    }

    #[test]
    fn image_goes_to_text_offset_and_flat_to_ram_start() {
        let ram_size = 16 * MIB;
        let ram = crate::memory::ram(RAM_BASE, ram_size).unwrap();
        let img = image(0x8_0000, 2 * MIB, 4096);
        let k = load_kernel(&ram, ram_size, &mut Cursor::new(img.clone())).unwrap();
        assert_eq!(k.entry, RAM_BASE + 0x8_0000);
        assert_eq!(k.end, RAM_BASE + 0x8_0000 + 2 * MIB, "BSS included");
        assert!(matches!(k.kind, KernelKind::Image(_)));
        let mut b = vec![0u8; 4096];
        ram.read(k.entry, &mut b).unwrap();
        assert_eq!(b, img);

        let flat = vec![0xd5u8, 0x03, 0x20, 0x1f, 1, 2, 3];
        let k = load_kernel(&ram, ram_size, &mut Cursor::new(flat.clone())).unwrap();
        assert_eq!(
            k,
            LoadedKernel {
                entry: RAM_BASE,
                end: RAM_BASE + 7,
                kind: KernelKind::Flat
            }
        );
        let mut b = [0u8; 7];
        ram.read(RAM_BASE, &mut b).unwrap();
        assert_eq!(b.to_vec(), flat);
    }

    #[test]
    fn too_big_is_refused() {
        let ram_size = 8 * MIB;
        let ram = crate::memory::ram(RAM_BASE, ram_size).unwrap();
        // Footprint reaches into the DTB slot.
        let img = image(0, 6 * MIB + 1, 64);
        assert!(matches!(
            load_kernel(&ram, ram_size, &mut Cursor::new(img)),
            Err(LoadError::TooBig { .. })
        ));
        let img = image(u64::MAX - 8, 16, 64);
        assert!(matches!(
            load_kernel(&ram, ram_size, &mut Cursor::new(img)),
            Err(LoadError::TooBig { .. })
        ));
        let initrd = vec![7u8; (5 * MIB) as usize];
        assert!(matches!(
            load_initrd(&ram, ram_size, RAM_BASE + 2 * MIB, &mut Cursor::new(initrd)),
            Err(LoadError::TooBig { .. })
        ));
        assert!(load_dtb(&ram, ram_size, &vec![0; DTB_MAX_SIZE + 1]).is_err());
    }

    #[test]
    fn initrd_and_dtb_placement() {
        let ram_size = 16 * MIB;
        let ram = crate::memory::ram(RAM_BASE, ram_size).unwrap();
        let initrd = vec![0x5au8; 10_000];
        let (s, e) = load_initrd(&ram, ram_size, RAM_BASE + MIB, &mut Cursor::new(initrd)).unwrap();
        assert_eq!(s % 4096, 0);
        assert_eq!(e - s, 10_000);
        assert!(e <= dtb_addr(ram_size));
        let mut b = [0u8; 2];
        ram.read(e - 2, &mut b).unwrap();
        assert_eq!(b, [0x5a, 0x5a]);
        let d = load_dtb(&ram, ram_size, b"\xd0\x0d\xfe\xed").unwrap();
        assert_eq!(d, RAM_BASE + 14 * MIB);
    }
}
