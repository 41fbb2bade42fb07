#!/usr/bin/env bash
# Debian's archive through a private apt configuration: arm64 kernels and uapi
# headers of every suite, without touching the system's apt sources or lists.
#
# Source it from a script (after lib.sh or on its own) and call the da_* functions,
# or run it:
#
#   scripts/debian-archive.sh update            refresh the private package lists
#   scripts/debian-archive.sh resolve SERIES    print "PACKAGE VERSION" of the newest
#                                               package that holds the series' kernel
#                                               Image (exit 1 if the archive has none)
#   scripts/debian-archive.sh headers SERIES    print "PACKAGE VERSION" of the
#                                               linux-libc-dev that carries SERIES
#   scripts/debian-archive.sh source SERIES     print "PACKAGE VERSION" of linux-source-*
#   scripts/debian-archive.sh candidates SERIES every Image package version, newest first
#   scripts/debian-archive.sh fetch-image SERIES / fetch-headers SERIES
#                                               download + unpack into the cache
#   scripts/debian-archive.sh download PKG[=VER] DIR   apt-get download into DIR
#   scripts/debian-archive.sh series            list the known series
#   scripts/debian-archive.sh apt-get|apt-cache ARGS...   run apt with the private config
#
# The configuration lives in $DA_DIR = ${KVM_NISV_CACHE:-$HOME/.cache/kvm-nisv}/apt:
# its own sources.list (bullseye, bookworm, trixie, sid, experimental and the
# -security suites of the first three; `main`; arm64 only; the mirror URIs of the
# system's /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list; signed
# by /usr/share/keyrings/debian-archive-keyring.gpg),
# its own lists/, cache/ and an empty preferences and sources.list.d. The system's
# dpkg status is read (apt needs one) but nothing is installed with it: packages are
# only downloaded and unpacked with dpkg-deb.
# SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

DA_CACHE="${KVM_NISV_CACHE:-$HOME/.cache/kvm-nisv}"
DA_DIR="$DA_CACHE/apt"
DA_SUITES=(bullseye bookworm trixie sid experimental)
DA_SECURITY_SUITES=(bullseye-security bookworm-security trixie-security)
DA_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# The one architecture of the private lists (scripts/qemu-backports.sh sets the
# host's, with its own DA_DIR and suites, for QEMU from bookworm-backports).
DA_ARCH=arm64
# Oldest first. "-16k": the 16 KiB-page build; "rc": a release candidate (the
# 7.3 packages in experimental carry a ~rcN Debian version).
DA_SERIES=(5.10 6.1 6.12 6.12-16k 7.2 7.3-rc 7.3-rc-16k)
# Package lists older than this (minutes) are refreshed by da_update_if_stale.
DA_MAX_AGE_MIN="${KVM_NISV_APT_MAX_AGE_MIN:-360}"

da_log() { printf 'debian-archive: %s\n' "$*" >&2; }

# The Debian mirror the system uses (deb822 or one-line format), default
# deb.debian.org; `da_mirror security` gives the security mirror.
da_mirror() {
    local want=${1:-main} uri=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        # The first URIs: line of a stanza whose Suites are (not) -security.
        uri=$(awk -v want="$want" '
            function out() { if (u != "" && (sec == (want == "security"))) { print u; exit } }
            /^[[:space:]]*$/ { out(); u=""; sec=0; next }
            /^URIs:/ { u=$2 }
            /^Suites:/ { if ($0 ~ /-security/) sec=1 }
            END { out() }' /etc/apt/sources.list.d/debian.sources | head -n 1)
    fi
    if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk -v want="$want" '$1 == "deb" && (($0 ~ /-security/) == (want == "security")) {
                for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
    fi
    if [ -z "$uri" ]; then
        [ "$want" = security ] && uri=http://deb.debian.org/debian-security || uri=http://deb.debian.org/debian
    fi
    echo "$uri"
}

# Write the private configuration (idempotent).
da_config() {
    mkdir -p "$DA_DIR/lists/partial" "$DA_DIR/cache/archives/partial" "$DA_DIR/sources.list.d" \
        "$DA_DIR/preferences.d"
    [ -r "$DA_KEYRING" ] || { da_log "missing $DA_KEYRING (package debian-archive-keyring)"; return 1; }
    local mirror security s list
    mirror=$(da_mirror)
    security=$(da_mirror security)
    list=""
    for s in "${DA_SUITES[@]}"; do
        list+="deb [arch=$DA_ARCH signed-by=$DA_KEYRING] $mirror $s main"$'\n'
    done
    # Kernel security uploads of the stable suites land in -security first.
    for s in "${DA_SECURITY_SUITES[@]}"; do
        list+="deb [arch=$DA_ARCH signed-by=$DA_KEYRING] $security $s main"$'\n'
    done
    if [ ! -f "$DA_DIR/sources.list" ] || [ "$(cat "$DA_DIR/sources.list")"$'\n' != "$list" ]; then
        printf '%s' "$list" >"$DA_DIR/sources.list"
        rm -f "$DA_DIR/updated"
    fi
    # apt-get download runs the fetch as _apt when root: it must be able to
    # write the lists and the download directory.
    if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
        chown -R _apt:root "$DA_DIR/lists/partial" "$DA_DIR/cache/archives/partial" 2>/dev/null || true
    fi
}

# The apt options of the private configuration (one per array element).
da_opts() {
    DA_OPTS=(
        -o "Dir::Etc::sourcelist=$DA_DIR/sources.list"
        -o "Dir::Etc::sourceparts=$DA_DIR/sources.list.d"
        -o "Dir::Etc::preferences=$DA_DIR/preferences"
        -o "Dir::Etc::preferencesparts=$DA_DIR/preferences.d"
        -o "Dir::State::Lists=$DA_DIR/lists"
        -o "Dir::Cache=$DA_DIR/cache"
        -o "Dir::Cache::pkgcache=$DA_DIR/cache/pkgcache.bin"
        -o "Dir::Cache::srcpkgcache=$DA_DIR/cache/srcpkgcache.bin"
        -o "APT::Architecture=$DA_ARCH"
        -o "APT::Architectures::=$DA_ARCH"
        -o "Acquire::Languages=none"
        -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false"
        -o "APT::Sandbox::User=root"
        -o "Debug::NoLocking=true"
        # sid's, experimental's and the -security suites' Release files carry a
        # Valid-Until a week or so ahead; a mirror that is a snapshot of the
        # archive (as on the CI machine kind) serves them expired, and apt would
        # then refuse the whole update. The signatures are still checked: only
        # the freshness date is not.
        -o "Acquire::Check-Valid-Until=false"
    )
}

da_apt_get() { da_opts; apt-get "${DA_OPTS[@]}" "$@"; }
da_apt_cache() { da_opts; apt-cache "${DA_OPTS[@]}" "$@"; }

# Refresh the private package lists.
da_update() {
    da_config || return 1
    da_log "apt-get update (private lists for ${DA_SUITES[*]}, $DA_ARCH, in $DA_DIR)"
    if da_apt_get -q update >&2; then
        touch "$DA_DIR/updated"
    else
        da_log "apt-get update failed"
        return 1
    fi
}

# Refresh only when the lists are missing or older than DA_MAX_AGE_MIN.
da_update_if_stale() {
    da_config || return 1
    if [ -z "$(find "$DA_DIR/updated" -mmin "-$DA_MAX_AGE_MIN" 2>/dev/null)" ]; then
        da_update
    fi
}

# da_names REGEX: package names matching REGEX (extended, anchored by the caller).
da_names() {
    da_apt_cache pkgnames 2>/dev/null | grep -E "$1" | sort -u
}

# da_version PKG: the candidate (highest) version of PKG in the private lists.
da_version() {
    da_apt_cache show --no-all-versions "$1" 2>/dev/null | awk '/^Version:/ { print $2; exit }'
}

# da_newest_version PKG: the highest version of PKG over every suite.
da_newest_version() {
    da_apt_cache madison "$1" 2>/dev/null | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' \
        | sort -V | tail -n 1
}

# The package that holds a series' kernel Image, newest first by name (sort -V).
#  5.10:       linux-image-5.10.0-<abi>-arm64            (bullseye)
#  6.1:        linux-image-6.1.0-<abi>-arm64             (bookworm)
#  6.12:       linux-image-6.12.<n>+deb<m>-arm64         (bookworm, trixie)
#  6.12-16k:   linux-image-6.12.<n>+deb<m>-arm64-16k     (trixie)
#  7.2:        linux-binary-7.2.<n>+deb<m>-arm64         (sid; linux-image-* is a metapackage)
#  7.3-rc:     linux-binary-7.3-arm64 at a ~rcN version  (experimental)
#  7.3-rc-16k: linux-binary-7.3-arm64-16k                (experimental)
da_series_regex() {
    case "$1" in
        5.10) echo '^linux-image-5\.10\.0-[0-9]+-arm64$' ;;
        6.1) echo '^linux-image-6\.1\.0-[0-9]+-arm64$' ;;
        6.12) echo '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-arm64$' ;;
        6.12-16k) echo '^linux-image-6\.12\.[0-9]+\+deb[0-9]+-arm64-16k$' ;;
        7.2) echo '^linux-binary-7\.2(\.[0-9]+)?(\+deb[0-9]+)?-arm64$' ;;
        7.3-rc) echo '^linux-binary-7\.3(\.[0-9]+)?(\+deb[0-9]+)?-arm64$' ;;
        7.3-rc-16k) echo '^linux-binary-7\.3(\.[0-9]+)?(\+deb[0-9]+)?-arm64-16k$' ;;
        *) return 1 ;;
    esac
}

# da_candidates SERIES: "PACKAGE VERSION" lines of every package version that holds
# the series' Image, newest first (package names by sort -V, then versions).
# "-rc" series only accept ~rc versions, the others only releases.
da_candidates() {
    local s=$1 re pkg ver
    re=$(da_series_regex "$s") || { da_log "unknown series $s (${DA_SERIES[*]})"; return 2; }
    while read -r pkg; do
        [ -n "$pkg" ] || continue
        while read -r ver; do
            [ -n "$ver" ] || continue
            case "$s:$ver" in
                *-rc*:*~rc*) ;;
                *-rc*:*) continue ;;
                *:*~rc*) continue ;;
            esac
            echo "$pkg $ver"
        done < <(da_versions "$pkg")
    done < <(da_names "$re" | sort -V -r)
}

# da_versions PKG: every version of PKG in the private lists, newest first.
da_versions() {
    da_apt_cache madison "$1" 2>/dev/null | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' \
        | sort -V -r -u
}

# da_resolve SERIES: "PACKAGE VERSION" of the newest package holding the series'
# Image, or nothing (status 1) if the archive has none (a series that left the archive).
da_resolve() {
    local first
    first=$(da_candidates "$1" | head -n 1)
    [ -n "$first" ] || return 1
    echo "$first"
}

# da_headers_candidates SERIES: "linux-libc-dev VERSION" lines whose upstream
# version is in the series (5.10, 6.1, 6.12, 7.2, 7.3-rc; -16k series share the
# headers), newest first.
da_headers_candidates() {
    local s=${1%-16k} esc pat
    esc=${s%-rc}
    esc=${esc//./\\.}
    case "$s" in
        *-rc) pat="^$esc~rc" ;;
        *) pat="^$esc\\.[0-9]+-|^$esc-" ;;
    esac
    da_versions linux-libc-dev | grep -E "$pat" | sed 's/^/linux-libc-dev /'
}

da_headers_resolve() {
    local first
    first=$(da_headers_candidates "$1" | head -n 1)
    [ -n "$first" ] || return 1
    echo "$first"
}

# da_source_resolve SERIES: "linux-source-X VERSION" with the full kernel source.
da_source_resolve() {
    local s=${1%-16k} pkg ver
    s=${s%-rc}
    pkg="linux-source-$s"
    ver=$(da_newest_version "$pkg")
    [ -n "$ver" ] || return 1
    echo "$pkg $ver"
}

# da_download PKG VERSION DIR: download PKG=VERSION ($DA_ARCH or all) into DIR; print the .deb path.
da_download() {
    local pkg=$1 ver=$2 dir=$3 arch deb
    mkdir -p "$dir"
    # apt-get download runs as _apt when root: the directory must be writable by it.
    [ "$(id -u)" = 0 ] && chmod 1777 "$dir"
    arch=$(da_apt_cache show "$pkg=$ver" 2>/dev/null | awk '/^Architecture:/ { print $2; exit }')
    [ -n "$arch" ] || { da_log "$pkg=$ver is not in the private lists"; return 1; }
    (cd "$dir" && da_apt_get -q download "$pkg:$arch=$ver" >&2) || return 1
    deb=$(compgen -G "$dir/${pkg}_*_${arch}.deb" | head -n 1)
    [ -n "$deb" ] || { da_log "download of $pkg=$ver left no .deb in $dir"; return 1; }
    echo "$deb"
}

# da_fetch_image SERIES: make $DA_CACHE/vmlinuz-<name> hold the Image of the newest
# downloadable package of SERIES, point the $DA_CACHE/kernel-SERIES symlink at it
# and write "PACKAGE VERSION" to $DA_CACHE/kernel-SERIES.pkg. A version the lists
# name but the mirror does not serve (yet, or any more) is skipped with a message.
# Status 1 if no version of the series can be had.
da_fetch_image() {
    local s=$1 pkg ver img tmp deb v tried=0
    while read -r pkg ver; do
        [ -n "$pkg" ] || continue
        tried=$((tried + 1))
        [ "$tried" -le 40 ] || break
        img="$DA_CACHE/vmlinuz-${pkg#linux-*-}"
        # 7.3-rc: the package name carries no version; add the Debian version.
        case "$ver" in *~rc*) img="$img-${ver%%-*}" ;; esac
        if [ -s "$img" ] && [ "$(cat "$img.pkg" 2>/dev/null)" = "$pkg $ver" ]; then
            da_log "kernel $s: $pkg $ver (cached)"
        else
            da_log "kernel $s: downloading $pkg $ver"
            tmp=$(mktemp -d)
            if ! deb=$(da_download "$pkg" "$ver" "$tmp"); then
                da_log "kernel $s: $pkg $ver cannot be downloaded; trying the next older one"
                rm -rf "$tmp"
                continue
            fi
            dpkg-deb -x "$deb" "$tmp/x"
            v=$(compgen -G "$tmp/x/boot/vmlinuz-*" || compgen -G "$tmp/x/usr/lib/modules/*/vmlinuz" || true)
            v=$(head -n 1 <<<"$v")
            if [ -z "$v" ]; then
                da_log "$pkg has neither boot/vmlinuz-* nor usr/lib/modules/*/vmlinuz"
                rm -rf "$tmp"
                continue
            fi
            cp "$v" "$img.part" && mv "$img.part" "$img"
            echo "$pkg $ver" >"$img.pkg"
            rm -rf "$tmp"
        fi
        ln -sfn "$(basename "$img")" "$DA_CACHE/kernel-$s"
        echo "$pkg $ver" >"$DA_CACHE/kernel-$s.pkg"
        return 0
    done < <(da_candidates "$s")
    da_log "series $s: no downloadable package in the archive"
    return 1
}

# da_fetch_headers SERIES: make $DA_CACHE/libc-dev-<ver>/usr/include hold the uapi
# headers of the series' newest downloadable linux-libc-dev:arm64; print that
# include directory and write "PACKAGE VERSION" to $DA_CACHE/libc-dev-SERIES.pkg.
da_fetch_headers() {
    local s=$1 pkg ver dir tmp deb
    while read -r pkg ver; do
        [ -n "$pkg" ] || continue
        dir="$DA_CACHE/libc-dev-$ver"
        if [ ! -f "$dir/done" ]; then
            da_log "headers $s: downloading $pkg $ver"
            tmp=$(mktemp -d)
            if ! deb=$(da_download "$pkg" "$ver" "$tmp"); then
                da_log "headers $s: $pkg $ver cannot be downloaded; trying the next older one"
                rm -rf "$tmp"
                continue
            fi
            rm -rf "$dir"
            mkdir -p "$dir"
            dpkg-deb -x "$deb" "$dir"
            echo "$pkg $ver" >"$dir/done"
            rm -rf "$tmp"
        fi
        echo "$pkg $ver" >"$DA_CACHE/libc-dev-$s.pkg"
        echo "$dir/usr/include"
        return 0
    done < <(da_headers_candidates "$s" | head -n 40)
    # The series left the archive (a release candidate once the release is out):
    # the headers downloaded earlier still describe it.
    if read -r pkg ver <"$DA_CACHE/libc-dev-$s.pkg" 2>/dev/null && [ -f "$DA_CACHE/libc-dev-$ver/done" ]; then
        da_log "series $s: no linux-libc-dev in the archive any more; using the cached $pkg $ver"
        echo "$DA_CACHE/libc-dev-$ver/usr/include"
        return 0
    fi
    da_log "series $s: no downloadable linux-libc-dev in the archive"
    return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    cmd=${1:-}
    shift || true
    case "$cmd" in
        update) da_update ;;
        resolve) da_update_if_stale && da_resolve "${1:?series}" ;;
        headers) da_update_if_stale && da_headers_resolve "${1:?series}" ;;
        candidates) da_update_if_stale && da_candidates "${1:?series}" ;;
        fetch-image) da_update_if_stale && da_fetch_image "${1:?series}" ;;
        fetch-headers) da_update_if_stale && da_fetch_headers "${1:?series}" ;;
        source) da_update_if_stale && da_source_resolve "${1:?series}" ;;
        download)
            da_update_if_stale
            pkg=${1:?package[=version]}
            dir=${2:-.}
            ver=${pkg#*=}
            pkg=${pkg%%=*}
            [ "$ver" != "$pkg" ] || ver=$(da_newest_version "$pkg")
            da_download "$pkg" "$ver" "$dir"
            ;;
        series) printf '%s\n' "${DA_SERIES[@]}" ;;
        apt-get) da_config && da_apt_get "$@" ;;
        apt-cache) da_config && da_apt_cache "$@" ;;
        *) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] || [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2 ;;
    esac
fi
