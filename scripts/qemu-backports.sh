#!/usr/bin/env bash
# QEMU from bookworm-backports for the emulated arm64 host, without installing
# anything into the system: a second emulated CPU next to Debian 12's QEMU 7.2.
#
#   scripts/qemu-backports.sh fetch     download + extract (once); print the path
#                                       of the qemu-system-aarch64 wrapper
#   scripts/qemu-backports.sh path      print that path if it is there (exit 1 if not)
#   scripts/qemu-backports.sh version   the version bookworm-backports offers
#
# The packages come through debian-archive.sh's private apt configuration, here
# for the host's architecture and the suites bookworm, bookworm-updates,
# bookworm-security and bookworm-backports, in its own directory
# ${KVM_NISV_CACHE:-$HOME/.cache/kvm-nisv}/apt-qemu-<arch> (the system's apt
# sources and lists are never touched). Which packages are needed is what apt
# itself says: a simulated `apt-get install -t bookworm-backports
# qemu-system-arm` against the system's dpkg status lists the QEMU packages and
# every library the installed system does not already satisfy (none on a Debian
# 12 machine that has QEMU 7.2 installed). Those .debs are unpacked with
# dpkg-deb -x into $KVM_NISV_CACHE/qemu-backports-<version>/root; the wrapper
# qemu-system-aarch64 next to it runs the unpacked binary with LD_LIBRARY_PATH
# on the unpacked libraries, QEMU_MODULE_DIR on its own (absent) module
# directory, so that QEMU 7.2's modules in /usr/lib/<triplet>/qemu are never
# loaded into it, and -L on its own firmware/ROM directory.
# SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

QB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/debian-archive.sh
source "$QB_ROOT/scripts/debian-archive.sh"

QB_SUITE=bookworm-backports
# The packages whose files are used: the binary, its keymaps/ROMs/firmware,
# and the common files it depends on. Other qemu-* packages apt would upgrade
# alongside (qemu-user, qemu-utils: Breaks) are not needed.
QB_QEMU_PKGS=(qemu-system-arm qemu-system-common qemu-system-data)

qb_log() { printf 'qemu-backports: %s\n' "$*" >&2; }

# Point debian-archive.sh's functions at the host-architecture configuration.
qb_config() {
    DA_ARCH=$(dpkg --print-architecture)
    DA_DIR="$DA_CACHE/apt-qemu-$DA_ARCH"
    DA_SUITES=(bookworm bookworm-updates "$QB_SUITE")
    DA_SECURITY_SUITES=(bookworm-security)
    da_config
}

# qb_version: the version of qemu-system-arm in bookworm-backports.
qb_version() {
    da_apt_cache madison qemu-system-arm 2>/dev/null |
        awk -F'|' -v s="$QB_SUITE" '$3 ~ s { gsub(/ /, "", $2); print $2 }' | sort -V | tail -n 1
}

# qb_dir VERSION: the cache directory of that version (epoch "N:" dropped).
qb_dir() { echo "$DA_CACHE/qemu-backports-${1#*:}"; }

# qb_path: the wrapper of the newest version already unpacked, if any.
qb_path() {
    local d
    d=$(compgen -G "$DA_CACHE/qemu-backports-*/done" | sort -V | tail -n 1) || return 1
    [ -n "$d" ] || return 1
    echo "$(dirname "$d")/qemu-system-aarch64"
}

# qb_packages VERSION: "PACKAGE VERSION" of every package to unpack.
qb_packages() {
    local ver=$1 sim
    sim=$(LC_ALL=C da_apt_get -s -q install --no-install-recommends -t "$QB_SUITE" \
        "qemu-system-arm=$ver" 2>&1) || {
        printf '%s\n' "$sim" >&2
        qb_log "apt cannot resolve qemu-system-arm=$ver from $QB_SUITE"
        return 1
    }
    # "Inst NAME [OLD] (NEW SUITE [ARCH])": keep the QEMU packages above and the
    # libraries; skip other qemu-* packages (pulled in only by Breaks).
    sed -n 's/^Inst \([^ ]*\) \(\[[^]]*\] \)\{0,1\}(\([^ ]*\) .*/\1 \3/p' <<<"$sim" |
        while read -r pkg v; do
            case "$pkg" in
                qemu-*)
                    if printf '%s\n' "${QB_QEMU_PKGS[@]}" | grep -qx "$pkg"; then echo "$pkg $v"; fi
                    ;;
                *) echo "$pkg $v" ;;
            esac
        done
}

# qb_fetch: make sure the newest bookworm-backports QEMU is unpacked; print the wrapper.
qb_fetch() {
    local ver dir tmp pkg v deb libdirs triplet missing
    da_update_if_stale || qb_log "warning: cannot refresh the private package lists; using what is cached"
    ver=$(qb_version)
    if [ -z "$ver" ]; then
        qb_path && return 0
        qb_log "no qemu-system-arm in $QB_SUITE"
        return 1
    fi
    dir=$(qb_dir "$ver")
    if [ -f "$dir/done" ]; then
        echo "$dir/qemu-system-aarch64"
        return 0
    fi
    qb_log "fetching qemu-system-arm $ver from $QB_SUITE into $dir"
    tmp=$(mktemp -d)
    rm -rf "$dir.part"
    mkdir -p "$dir.part/root"
    local list
    list=$(qb_packages "$ver") || {
        qb_log "cannot list the packages of qemu-system-arm $ver"
        rm -rf "$tmp" "$dir.part"
        return 1
    }
    while read -r pkg v; do
        [ -n "$pkg" ] || continue
        qb_log "  $pkg $v"
        deb=$(da_download "$pkg" "$v" "$tmp") || { rm -rf "$tmp" "$dir.part"; return 1; }
        dpkg-deb -x "$deb" "$dir.part/root"
        echo "$pkg $v" >>"$dir.part/packages"
    done <<<"$list"
    rm -rf "$tmp"
    [ -x "$dir.part/root/usr/bin/qemu-system-aarch64" ] || {
        qb_log "the packages hold no usr/bin/qemu-system-aarch64"
        rm -rf "$dir.part"
        return 1
    }
    case "$DA_ARCH" in
        amd64) triplet=x86_64-linux-gnu ;;
        arm64) triplet=aarch64-linux-gnu ;;
        *) triplet="$(uname -m)-linux-gnu" ;;
    esac
    libdirs="\$d/root/usr/lib/$triplet:\$d/root/lib/$triplet"
    cat >"$dir.part/qemu-system-aarch64" <<EOF
#!/bin/sh
# QEMU $ver from $QB_SUITE, unpacked by scripts/qemu-backports.sh (nothing installed).
d=\$(dirname "\$(readlink -f "\$0")")
LD_LIBRARY_PATH="$libdirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \\
QEMU_MODULE_DIR="\$d/root/usr/lib/$triplet/qemu" \\
    exec "\$d/root/usr/bin/qemu-system-aarch64" -L "\$d/root/usr/share/qemu" "\$@"
EOF
    chmod +x "$dir.part/qemu-system-aarch64"
    # Every shared library must resolve (from the system or the unpacked ones).
    missing=$(cd "$dir.part" && LD_LIBRARY_PATH="root/usr/lib/$triplet:root/lib/$triplet" \
        ldd root/usr/bin/qemu-system-aarch64 2>&1 | grep -E 'not found|version .* not found' || true)
    if [ -n "$missing" ]; then
        qb_log "unresolved libraries:"$'\n'"$missing"
        rm -rf "$dir.part"
        return 1
    fi
    "$dir.part/qemu-system-aarch64" --version | head -n 1 >"$dir.part/version" || {
        qb_log "the unpacked QEMU does not run"
        rm -rf "$dir.part"
        return 1
    }
    touch "$dir.part/done"
    rm -rf "$dir"
    mv "$dir.part" "$dir"
    qb_log "$(cat "$dir/version") in $dir ($(du -sh "$dir" | cut -f1))"
    echo "$dir/qemu-system-aarch64"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    qb_config
    case "${1:-}" in
        fetch) qb_fetch ;;
        path) qb_path ;;
        version) da_update_if_stale && qb_version ;;
        *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; [ -z "${1:-}" ] || [ "$1" = -h ] || [ "$1" = --help ] || exit 2 ;;
    esac
fi
