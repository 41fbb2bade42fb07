// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The framebuffer workload: the ways Linux software draws on `/dev/fb0`, one
//! phase each, so that the VMM's exit counters show which of them reach it as
//! NISV exits and which as plain MMIO exits.
//!
//! * `fbwrite` / `fbread`: `pwrite`/`pread` of 16 lines on /dev/fb0, i.e. the
//!   kernel's `fb_write`/`fb_read` (`memcpy_toio`/`memcpy_fromio`).
//! * `fbcon` (with `--fbcon`): the kernel's framebuffer console takes over
//!   (FBIOPUT_CON2FBMAP), clears the screen and prints text
//!   (`cfb_fillrect`/`cfb_imageblit`, `fb_writel`).
//! * `fbuser`: a user process `mmap`s /dev/fb0 (write-combining, Normal
//!   non-cacheable memory) and copies a whole frame into it with
//!   `copy_from_slice` (musl's memcpy), then reads the text area back.
//! * `fbdraw`: the same process redraws the first 8 lines of the colour bars
//!   in place with an indexed loop over the pixels (the compiler's code).
//!
//! The final picture is the test pattern of docs/guest-interface.md
//! ("Framebuffer test pattern"): colour bars, a gradient, two lines of text.

// The indexed loops, element-wise struct copies and manual swaps are the
// workload: what ordinary code does, compiled as the compiler sees fit.
#![allow(
    clippy::needless_range_loop,
    clippy::manual_memcpy,
    clippy::manual_swap
)]
use std::ffi::CString;
use std::io::{self, Write};

use crate::font::glyph;
use crate::testdev::Ctrl;

const FBIOGET_VSCREENINFO: libc::c_ulong = 0x4600;
const FBIOGET_FSCREENINFO: libc::c_ulong = 0x4602;
const FBIOPUT_CON2FBMAP: libc::c_ulong = 0x4610;

/// The eight colour bars, r5g6b5: white, yellow, cyan, green, magenta, red,
/// blue, black.
pub const BARS: [u16; 8] = [
    0xffff, 0xffe0, 0x07ff, 0x07e0, 0xf81f, 0xf800, 0x001f, 0x0000,
];
/// Text area background and text colour (r5g6b5).
pub const TEXT_BG: u16 = 0x0010;
pub const TEXT_FG: u16 = 0xffe0;

/// The mode as the kernel reports it.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub width: usize,
    pub height: usize,
    pub bpp: usize,
    pub stride: usize,
    pub smem_len: usize,
}

/// Widen r5g6b5 to 8-bit channels by replicating the top bits.
pub fn expand(c: u16) -> [u8; 3] {
    let r = ((c >> 11) & 0x1f) as u8;
    let g = ((c >> 5) & 0x3f) as u8;
    let b = (c & 0x1f) as u8;
    [r << 3 | r >> 2, g << 2 | g >> 4, b << 3 | b >> 2]
}

/// The pattern colour (r5g6b5) of pixel (x, y) outside the text area.
pub fn pattern(x: usize, y: usize, w: usize, h: usize) -> u16 {
    if y < h / 2 {
        BARS[x * 8 / w]
    } else {
        let r = (x * 32 / w) as u16;
        let g = ((y - h / 2) * 64 / (h / 4).max(1)).min(63) as u16;
        let b = 31 - r;
        r << 11 | g << 5 | b
    }
}

fn put(buf: &mut [u8], m: &Mode, x: usize, y: usize, c: u16) {
    let o = y * m.stride + x * m.bpp / 8;
    if m.bpp == 16 {
        buf[o..o + 2].copy_from_slice(&c.to_le_bytes());
    } else {
        let [r, g, b] = expand(c);
        buf[o..o + 4].copy_from_slice(&[b, g, r, 0xff]);
    }
}

/// Draw the whole picture into `buf` (a frame in the framebuffer's format).
pub fn render(buf: &mut [u8], m: &Mode, lines: &[String]) {
    let text_top = m.height * 3 / 4;
    for y in 0..m.height {
        for x in 0..m.width {
            let c = if y < text_top {
                pattern(x, y, m.width, m.height)
            } else {
                TEXT_BG
            };
            put(buf, m, x, y, c);
        }
    }
    // 5x7 glyphs at scale 2, 12 pixels apart, lines 20 pixels apart.
    for (l, text) in lines.iter().enumerate() {
        let y0 = text_top + 8 + 20 * l;
        for (i, ch) in text.chars().enumerate() {
            let x0 = 4 + 12 * i;
            if x0 + 10 > m.width {
                break;
            }
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..5 {
                    if bits >> (4 - col) & 1 == 1 {
                        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            let (x, y) = (x0 + 2 * col + dx, y0 + 2 * row + dy);
                            if y < m.height {
                                put(buf, m, x, y, TEXT_FG);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn ioctl(fd: i32, req: libc::c_ulong, arg: *mut u8) -> io::Result<()> {
    // SAFETY: `arg` points to a buffer at least as large as the structure the
    // request reads or writes (callers pass 160/80/8-byte buffers).
    let r = unsafe { libc::ioctl(fd, req as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn u32_at(b: &[u8], o: usize) -> usize {
    u32::from_ne_bytes(b[o..o + 4].try_into().unwrap_or([0; 4])) as usize
}

/// Open /dev/fb0 and read its mode (FBIOGET_VSCREENINFO/FSCREENINFO).
fn open_fb() -> io::Result<(i32, Mode, String)> {
    let c = CString::new("/dev/fb0").map_err(io::Error::other)?;
    // SAFETY: valid path; fd checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::other(format!(
            "open /dev/fb0: {}",
            io::Error::last_os_error()
        )));
    }
    let mut var = [0u8; 160];
    let mut fix = [0u8; 80];
    ioctl(fd, FBIOGET_VSCREENINFO, var.as_mut_ptr())?;
    ioctl(fd, FBIOGET_FSCREENINFO, fix.as_mut_ptr())?;
    let id = String::from_utf8_lossy(&fix[..16])
        .trim_end_matches('\0')
        .to_string();
    Ok((
        fd,
        Mode {
            width: u32_at(&var, 0),
            height: u32_at(&var, 4),
            bpp: u32_at(&var, 24),
            stride: u32_at(&fix, 48),
            smem_len: u32_at(&fix, 24),
        },
        id,
    ))
}

fn report(name: &str, ok: bool, detail: &str, nisv: u64) -> bool {
    println!(
        "@nisv rs fb {name} {} nisv={nisv}{}{detail}",
        if ok { "ok" } else { "FAIL" },
        if detail.is_empty() { "" } else { " " }
    );
    ok
}

fn mismatch(a: &[u8], b: &[u8]) -> String {
    let bad = a.iter().zip(b).filter(|(x, y)| x != y).count();
    if bad == 0 {
        String::new()
    } else {
        let first = a.iter().zip(b).position(|(x, y)| x != y);
        format!("{bad} bytes differ, first at +{first:#x?}")
    }
}

/// Run every phase; `lines` are the two text lines. Returns whether all passed.
pub fn run(ctrl: &Ctrl, lines: &[String], fbcon: bool) -> io::Result<bool> {
    let (fd, m, id) = open_fb()?;
    println!(
        "@nisv rs fb info id={id} width={} height={} bpp={} stride={} smem_len={}",
        m.width, m.height, m.bpp, m.stride, m.smem_len
    );
    if !(m.bpp == 16 || m.bpp == 32) || m.stride < m.width * m.bpp / 8 {
        return Err(io::Error::other("unsupported framebuffer mode"));
    }
    let frame = m.stride * m.height;
    let mut ok = true;

    // fb_write / fb_read on the first 16 lines: a grey ramp.
    let n = m.stride * 16.min(m.height);
    let ramp: Vec<u8> = (0..n).map(|i| (i * 7 + i / m.stride) as u8).collect();
    ctrl.set_phase("fbwrite");
    let n0 = ctrl.nisv_count();
    // SAFETY: `ramp` is n bytes; fd is open.
    let w = unsafe { libc::pwrite(fd, ramp.as_ptr().cast(), n, 0) };
    ok &= report(
        "fbwrite",
        w == n as isize,
        &if w == n as isize {
            String::new()
        } else {
            format!("pwrite returned {w}")
        },
        ctrl.nisv_count() - n0,
    );
    ctrl.set_phase("fbread");
    let n0 = ctrl.nisv_count();
    let mut back = vec![0u8; n];
    // SAFETY: `back` is n bytes; fd is open.
    let r = unsafe { libc::pread(fd, back.as_mut_ptr().cast(), n, 0) };
    let d = mismatch(&back, &ramp);
    ok &= report(
        "fbread",
        r == n as isize && d.is_empty(),
        &d,
        ctrl.nisv_count() - n0,
    );

    if fbcon {
        ctrl.set_phase("fbcon");
        let n0 = ctrl.nisv_count();
        ok &= report("fbcon", fbcon_text(fd).is_ok(), "", ctrl.nisv_count() - n0);
    }

    // A user process mmaps the framebuffer and copies whole frames.
    // SAFETY: a shared mapping of the open framebuffer; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            frame,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::other(format!(
            "mmap /dev/fb0: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: the mapping is `frame` bytes long and stays mapped until the
    // munmap below; nothing else in this process aliases it.
    let screen = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), frame) };
    let mut picture = vec![0u8; frame];
    render(&mut picture, &m, lines);

    // The whole frame goes in; the text area (the last quarter) is read back
    // (the screenshot checks every pixel the VMM holds).
    ctrl.set_phase("fbuser");
    let n0 = ctrl.nisv_count();
    screen.copy_from_slice(&picture);
    let text = m.height * 3 / 4 * m.stride..frame;
    let mut back = vec![0u8; frame];
    back[text.clone()].copy_from_slice(std::hint::black_box(&screen[text.clone()]));
    let d = mismatch(&back[text.clone()], &picture[text]);
    ok &= report("fbuser", d.is_empty(), &d, ctrl.nisv_count() - n0);

    // Redraw the first lines of the colour bars in place, pixel by pixel.
    ctrl.set_phase("fbdraw");
    let n0 = ctrl.nisv_count();
    let bar_rows = 8.min(m.height / 2);
    if m.bpp == 16 {
        for y in 0..bar_rows {
            let row = &mut screen[y * m.stride..y * m.stride + m.width * 2];
            // SAFETY: a 2-aligned (page-aligned mapping, even stride) run of
            // `width` u16 pixels inside the mapping.
            let px =
                unsafe { std::slice::from_raw_parts_mut(row.as_mut_ptr().cast::<u16>(), m.width) };
            for x in 0..m.width {
                px[x] = BARS[x * 8 / m.width];
            }
        }
    } else {
        for y in 0..bar_rows {
            let row = &mut screen[y * m.stride..y * m.stride + m.width * 4];
            // SAFETY: as above, 4-aligned u32 pixels.
            let px =
                unsafe { std::slice::from_raw_parts_mut(row.as_mut_ptr().cast::<u32>(), m.width) };
            for x in 0..m.width {
                let [r, g, b] = expand(BARS[x * 8 / m.width]);
                px[x] = 0xff00_0000 | u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b);
            }
        }
    }
    let n = bar_rows * m.stride;
    back[..n].copy_from_slice(std::hint::black_box(&screen[..n]));
    let d = mismatch(&back[..n], &picture[..n]);
    ok &= report("fbdraw", d.is_empty(), &d, ctrl.nisv_count() - n0);

    // SAFETY: the mapping made above; `screen` is not used after this.
    unsafe { libc::munmap(p, frame) };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    Ok(ok)
}

/// Map console 1 to fb0 (the framebuffer console takes over and clears the
/// screen), hide its cursor and stop it blinking, and print a few lines.
fn fbcon_text(fb: i32) -> io::Result<()> {
    let mut map = [0u8; 8];
    map[..4].copy_from_slice(&1u32.to_ne_bytes());
    map[4..].copy_from_slice(&0u32.to_ne_bytes());
    ioctl(fb, FBIOPUT_CON2FBMAP, map.as_mut_ptr())?;
    let _ = std::fs::write("/sys/class/graphics/fbcon/cursor_blink", "0");
    let mut tty = std::fs::OpenOptions::new().write(true).open("/dev/tty1")?;
    // Hide the cursor, then text.
    tty.write_all(b"\x1b[?25l")?;
    tty.write_all(b"kvm-nisv: the kernel's framebuffer console\r\n")?;
    tty.write_all(b"drawing through fb_writel on simplefb\r\n")?;
    tty.flush()
}
