// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `--screenshot FILE.png`: the framebuffer as an 8-bit RGB PNG (the `png`
//! crate), written when the VMM exits and whenever it receives `SIGUSR1`.
//!
//! The file is written next to its final name and renamed into place, so a
//! reader never sees half a picture. `SIGUSR1` is blocked in every thread
//! ([`block_sigusr1`], called before any thread starts) and taken by one
//! `sigwait` thread ([`spawn_sigusr1_writer`]).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::framebuffer::Framebuffer;

/// Why a screenshot could not be written.
#[derive(Debug, Error)]
pub enum ScreenshotError {
    /// Creating, writing or renaming the file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The PNG encoder failed.
    #[error("cannot encode {path}: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: png::EncodingError,
    },
}

/// Write the framebuffer's current picture to `path` as a PNG.
pub fn write_png(fb: &Framebuffer, path: &Path) -> Result<(), ScreenshotError> {
    let mode = fb.mode();
    let rgb = fb.rgb8();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    let io = |source| ScreenshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    let enc = |source| ScreenshotError::Encode {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(&tmp).map_err(io)?;
    let mut e = png::Encoder::new(BufWriter::new(file), mode.width, mode.height);
    e.set_color(png::ColorType::Rgb);
    e.set_depth(png::BitDepth::Eight);
    let mut w = e.write_header().map_err(enc)?;
    w.write_image_data(&rgb).map_err(enc)?;
    w.finish().map_err(enc)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Block `SIGUSR1` in the calling thread; threads started afterwards inherit
/// the mask, so the signal is only ever taken by [`spawn_sigusr1_writer`].
/// Call it first thing in `main`.
pub fn block_sigusr1() -> std::io::Result<()> {
    let set = sigusr1_set();
    // SAFETY: `set` is an initialised sigset_t; the old mask is not needed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r));
    }
    Ok(())
}

fn sigusr1_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
    }
    set
}

/// Start a thread that writes a screenshot of `fb` to `path` on every `SIGUSR1`
/// (which [`block_sigusr1`] must have blocked in every thread).
pub fn spawn_sigusr1_writer(fb: Framebuffer, path: PathBuf) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("screenshot".into())
        .spawn(move || {
            let set = sigusr1_set();
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` and `sig` are valid for the call.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                match write_png(&fb, &path) {
                    Ok(()) => eprintln!("kvm-nisv-vmm: screenshot written to {}", path.display()),
                    Err(e) => eprintln!("kvm-nisv-vmm: {e}"),
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip() {
        let fb = Framebuffer::new("3x2".parse().unwrap());
        let mut d = fb.bus_device();
        use crate::bus::BusDevice;
        d.write(0, &0xf800u16.to_le_bytes()).unwrap(); // (0,0) red
        d.write(2 * 3 + 4, &0x001fu16.to_le_bytes()).unwrap(); // (2,1) blue
        let dir = std::env::temp_dir().join(format!("kvm-nisv-shot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.png");
        write_png(&fb, &path).unwrap();
        let dec = png::Decoder::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&buf[..info.buffer_size()], &fb.rgb8()[..]);
        assert_eq!(&buf[0..3], &[255, 0, 0]);
        assert_eq!(&buf[15..18], &[0, 0, 255]);
        assert!(!dir.join("s.png.part").exists());
        assert!(matches!(
            write_png(&fb, &dir.join("missing/dir/s.png")),
            Err(ScreenshotError::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
