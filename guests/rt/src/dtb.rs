// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Just enough of a flattened device tree reader to find `/chosen/bootargs`
//! and its `key=value` words. Every offset is bounds-checked against the blob's
//! `totalsize` (capped at 2 MiB, the region the VMM places it in).

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// A device tree blob in guest memory.
#[derive(Clone, Copy, Debug)]
pub struct Fdt<'a> {
    blob: &'a [u8],
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn cstr(b: &[u8], off: usize) -> Option<&[u8]> {
    let tail = b.get(off..)?;
    let n = tail.iter().position(|&c| c == 0)?;
    tail.get(..n)
}

impl<'a> Fdt<'a> {
    /// The blob at `addr`, if it has the FDT magic and a sane size.
    ///
    /// # Safety
    /// `addr` must be 0 or point to readable memory of at least the blob's
    /// `totalsize` bytes (at most 2 MiB).
    pub unsafe fn from_addr(addr: u64) -> Option<Self> {
        if addr == 0 || !addr.is_multiple_of(4) {
            return None;
        }
        // SAFETY: the caller guarantees the header is readable.
        let hdr = unsafe { core::slice::from_raw_parts(addr as *const u8, 8) };
        if be32(hdr, 0)? != FDT_MAGIC {
            return None;
        }
        let total = be32(hdr, 4)? as usize;
        if !(40..=0x20_0000).contains(&total) {
            return None;
        }
        // SAFETY: the caller guarantees `totalsize` bytes are readable.
        let blob = unsafe { core::slice::from_raw_parts(addr as *const u8, total) };
        Some(Self { blob })
    }

    /// The value of property `name` of the node at `path` (e.g. "/chosen").
    pub fn property(&self, path: &str, name: &str) -> Option<&'a [u8]> {
        let b = self.blob;
        let off_struct = be32(b, 8)? as usize;
        let off_strings = be32(b, 12)? as usize;
        let want: heapless_path::Path<'_> = heapless_path::Path::new(path);
        let mut depth = 0usize;
        // How many leading components of `want` the current node matches.
        let mut matched = 0usize;
        let mut p = off_struct;
        loop {
            let tok = be32(b, p)?;
            p = p.checked_add(4)?;
            match tok {
                FDT_BEGIN_NODE => {
                    let nm = cstr(b, p)?;
                    p = p.checked_add(nm.len() + 1)?.checked_add(3)? & !3;
                    // The root node has an empty name; components start at depth 1.
                    if depth >= 1 && matched == depth - 1 && want.component(depth - 1) == Some(nm) {
                        matched = depth;
                    }
                    depth += 1;
                }
                FDT_END_NODE => {
                    depth = depth.checked_sub(1)?;
                    // The node that just closed was at level `depth`.
                    if depth >= 1 && matched == depth {
                        matched -= 1;
                    }
                }
                FDT_PROP => {
                    let len = be32(b, p)? as usize;
                    let nameoff = be32(b, p.checked_add(4)?)? as usize;
                    let val = p.checked_add(8)?;
                    let end = val.checked_add(len)?;
                    if depth >= 1 && depth - 1 == want.len() && matched == want.len() {
                        let pn = cstr(b, off_strings.checked_add(nameoff)?)?;
                        if pn == name.as_bytes() {
                            return b.get(val..end);
                        }
                    }
                    p = end.checked_add(3)? & !3;
                }
                FDT_NOP => {}
                FDT_END => return None,
                _ => return None,
            }
        }
    }

    /// The `/chosen/bootargs` string, without its NUL.
    pub fn bootargs(&self) -> Option<&'a str> {
        let v = self.property("/chosen", "bootargs")?;
        let v = v.split(|&c| c == 0).next()?;
        core::str::from_utf8(v).ok()
    }
}

/// `key=value` lookup in a bootargs string, parsed as a decimal or 0x-prefixed
/// hexadecimal number.
pub fn arg_u64(bootargs: &str, key: &str) -> Option<u64> {
    for w in bootargs.split_ascii_whitespace() {
        if let Some(v) = w.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
            return parse_u64(v);
        }
    }
    None
}

/// `key=value` lookup in a bootargs string: the raw value.
pub fn arg_str<'a>(bootargs: &'a str, key: &str) -> Option<&'a str> {
    bootargs
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Parses a decimal or 0x-prefixed hexadecimal number.
pub fn parse_u64(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

mod heapless_path {
    /// A "/a/b" path split on '/', without allocation.
    pub struct Path<'a>(&'a str);

    impl<'a> Path<'a> {
        pub fn new(s: &'a str) -> Self {
            Self(s.trim_matches('/'))
        }

        pub fn len(&self) -> usize {
            if self.0.is_empty() {
                0
            } else {
                self.0.split('/').count()
            }
        }

        pub fn component(&self, i: usize) -> Option<&'a [u8]> {
            if self.0.is_empty() {
                return None;
            }
            self.0.split('/').nth(i).map(str::as_bytes)
        }
    }
}
