# Shared helpers for the kvm-nisv scripts. Source it; do not run it.
# SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

# Repository root.
KVM_NISV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KVM_NISV_ROOT
# Downloads and extracted kernels/headers live outside the work tree so that a
# fresh clone on the same machine reuses them.
export KVM_NISV_CACHE="${KVM_NISV_CACHE:-$HOME/.cache/kvm-nisv}"

log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2; }

# Run a command as root (CI and the dev machines run as root; elsewhere use sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG...: install the Debian packages that are not installed yet.
apt_install() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    apt_update_once
    # Never remove an installed package silently. The one case seen: the CI
    # machine kind ships qemu-utils 10.0.2 from bookworm-backports, whose
    # `Breaks: qemu-system-common (<< 8.0)` makes apt remove it for Debian 12's
    # qemu-system-arm 7.2. A package apt would remove is kept in the version
    # the configured sources offer (Debian 12's qemu-utils 7.2: qemu-img and
    # qemu-nbd stay installed), said loudly; if there is none, nothing happens
    # and the install fails (--no-remove). README.md, "On a fresh machine".
    local sim removed=() keep=() r cand
    sim=$(LC_ALL=C apt-get -s install --no-install-recommends "${missing[@]}" 2>&1) || {
        printf '%s\n' "$sim" >&2
        log "apt cannot install ${missing[*]}"
        return 1
    }
    mapfile -t removed < <(sed -n 's/^Remv \([^ ]*\) .*/\1/p' <<<"$sim")
    for r in "${removed[@]}"; do
        # The newest version the sources offer (not the installed one).
        cand=$(LC_ALL=C apt-cache madison "$r" | awk -F' [|] ' 'NR == 1 {print $2}')
        if [ -n "$cand" ]; then
            log "NOTE: installing ${missing[*]} would REMOVE $r $(dpkg-query -W -f='${Version}' "$r" 2>/dev/null);" \
                "keeping it in the version apt's sources offer instead: $r $cand"
            keep+=("$r=$cand")
        else
            log "installing ${missing[*]} would remove $r, which apt's sources no longer offer:" \
                "not doing that. Remove $r yourself (apt-get remove $r) or install ${missing[*]} by hand."
            return 1
        fi
    done
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        --no-remove ${keep[@]:+--allow-downgrades} "${missing[@]}" ${keep[@]:+"${keep[@]}"} >&2
}

# apt-get update at most once per hour (and after adding the arm64 architecture).
apt_update_once() {
    local stamp="$KVM_NISV_CACHE/apt-updated"
    mkdir -p "$KVM_NISV_CACHE"
    if [ -z "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
        as_root apt-get update -q >&2
        touch "$stamp"
    fi
}

# Make arm64 packages visible to apt (kernel images are downloaded, not installed).
ensure_arm64_arch() {
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        as_root dpkg --add-architecture arm64
        rm -f "$KVM_NISV_CACHE/apt-updated"
    fi
}

# The Rust toolchain pieces every script needs. rustup and cargo download over
# TLS and check the peer against the system's CA store, which a minimal
# Debian 12 lacks: ca-certificates first.
ensure_rust() {
    apt_install ca-certificates
    if ! command -v cargo >/dev/null 2>&1; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            # Debian 12's rustc (1.63) is too old for edition 2024: use rustup.
            log "installing the stable Rust toolchain with rustup"
            apt_install curl
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2
            export PATH="$HOME/.cargo/bin:$PATH"
        fi
    fi
    local have
    have=$(rustup component list --installed 2>/dev/null)
    for c in rustfmt clippy; do
        grep -q "^$c" <<<"$have" || rustup component add "$c" >&2
    done
    have=$(rustup target list --installed 2>/dev/null)
    for t in aarch64-unknown-linux-musl aarch64-unknown-none aarch64-apple-darwin; do
        grep -qx "$t" <<<"$have" || rustup target add "$t" >&2
    done
}

# failure_digest LOG...: the lines of failed runs' logs that say what failed,
# for the very end of a run's output (CI keeps only the end, and a step's last
# lines are often a long table of passing tests). Picks a kernel's PROBLEM line,
# FAILED or missing tests, a non-zero executable exit, a panic with the two
# lines after it, compiler and cargo errors and kernel oopses; each line once,
# at most 60 (then how many more the logs hold).
failure_digest() {
    awk '
        function out(l,  k) {
            k = l; gsub(/^[[:space:]]+|[[:space:]]+$/, "", k)
            if (!(k in seen)) { seen[k] = 1; lines[n++] = l }
        }
        after > 0 { out($0); after--; next }
        /panicked at/ { out($0); after = 2; next }
        /[0-9]+ passed, [1-9][0-9]* failed|PROBLEM:|[[:space:]]FAILED([[:space:].,(:]|$)|^FAILED|[[:space:]]missing[[:space:]]*$|exit=([1-9]|timeout|signal)/ { out($0); next }
        /(^|\] )error(\[E[0-9]+\])?:|Kernel panic|Unable to handle kernel|Internal error:|BUG:|timed out|zero tests ran/ { out($0) }
        END {
            for (i = 0; i < n && i < 60; i++) print lines[i]
            if (n > 60) printf "(%d more lines in the log)\n", n - 60
        }' "$@"
}
