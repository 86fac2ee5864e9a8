#!/usr/bin/env bash
# Runs SCRIPT in the IPVS VM (/work/shared/tools/ipvs-vm) with synctool added to its initrd.
# Usage: rvs-sync/vm/run.sh SCRIPT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); vm=${IPVS_VM:-/work/shared/tools/ipvs-vm}; out=/tmp/ipvs-vm
"$vm/build.sh" "$out" >/dev/null
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root/bin"
gcc -O2 -static -o "$tmp/root/bin/synctool" "$here/synctool.c"
cp "$out/base.cpio" "$tmp/base.cpio"
(cd "$tmp/root" && echo bin/synctool | cpio -o -H newc -A -F "$tmp/base.cpio" --quiet)
# run.sh takes the base image from OUT: give it ours.
mkdir -p "$tmp/out"; cp "$out/vmlinuz" "$tmp/out/"; mv "$tmp/base.cpio" "$tmp/out/base.cpio"
"$vm/run.sh" "$1" "$tmp/out"
