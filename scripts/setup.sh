#!/usr/bin/env bash
# Installs everything rvs's build, tests and lab need on a fresh Debian machine with rustup.
# Idempotent: each step checks before it acts. Needs root (apt, bpffs, namespaces).
set -euo pipefail

log() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs packages, mounts bpffs and builds network namespaces)" >&2
  exit 1
fi

# 1. Debian packages: iproute2 (ip netns, bridge), ethtool (veth checksum offload off in the
#    lab), keepalived (the real VRRP peer and config validator the tests compare against);
#    for `./x bench-compare`: iptables, nftables, haproxy, nginx and its stream module
#    (Debian builds ngx_stream as the dynamic module libnginx-mod-stream); for the package
#    and status-page tests: chromium (headless browser), systemd (systemd-analyze verify),
#    man-db (the manuals render), binutils (objcopy); bird2 (the BGP daemon rvsd drives for
#    ECMP scale-out, and the lab's router).
missing=()
for pkg in iproute2 ethtool keepalived iptables nftables haproxy nginx libnginx-mod-stream chromium systemd man-db binutils bird2; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  # haproxy's and nginx's packages start their service on install (nginx on the host's port
  # 80): the benchmarks run their own instances in a namespace, so deny service starts
  # during the install unless a policy is already in place.
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ -n "$own_policy" ]; then rm -f "$policy"; fi
fi

# 1b. bird2's package enables bird.service, which would start a BGP speaker with the host's
#     /etc/bird/bird.conf at the next boot. rvs runs its own bird instances (their own -c
#     config and -s socket; the lab's inside namespaces), so the system service stays off.
if command -v systemctl >/dev/null 2>&1 && systemctl list-unit-files bird.service >/dev/null 2>&1; then
  if [ "$(systemctl is-enabled bird.service 2>/dev/null || true)" != "masked" ]; then
    log "systemctl mask bird.service (rvs runs its own bird instances)"
    systemctl stop bird.service 2>/dev/null || true
    systemctl mask bird.service >/dev/null 2>&1 || true
  fi
fi

# 2. rust-src: the BPF target's `core` is built from source (-Z build-std=core).
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
  log "rustup component add rust-src"
  rustup component add rust-src
fi

# 3. bpf-linker, linked against rustc's own LLVM (this machine has no matching system LLVM).
sysroot=$(rustc --print sysroot)
llvm_lib=$(cd "$sysroot/lib" && ls libLLVM-*-rust-*.so 2>/dev/null | head -n1 || true)
if [ -z "$llvm_lib" ]; then
  echo "setup: no libLLVM-*-rust-*.so in $sysroot/lib; cannot build bpf-linker" >&2
  exit 1
fi
llvm_major=$(echo "$llvm_lib" | sed -E 's/^libLLVM-([0-9]+)-rust.*/\1/')
if ! command -v bpf-linker >/dev/null 2>&1 || ! bpf-linker --version >/dev/null 2>&1; then
  log "cargo install bpf-linker (LLVM $llvm_major from $llvm_lib)"
  RUSTFLAGS="-C link-arg=-L$sysroot/lib -C link-arg=-l:$llvm_lib -C link-arg=-Wl,-rpath,$sysroot/lib" \
    cargo install --locked bpf-linker --no-default-features --features "llvm-$llvm_major,no-llvm-linking"
fi

# 4. bpffs, where rvsd pins its maps and links.
if ! grep -qs '^bpf /sys/fs/bpf ' /proc/mounts; then
  log "mount -t bpf bpf /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
log "ready"
