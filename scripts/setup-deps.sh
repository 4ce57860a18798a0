#!/usr/bin/env bash
# Installs the Debian packages Stent's build, tests and demo need.
# Idempotent: packages already installed are left alone.
set -euo pipefail
pkgs=(
  qemu-system-x86 qemu-utils busybox-static cpio e2fsprogs kmod
  bc bison flex libelf-dev libssl-dev dwarves xz-utils zstd
  gcc binutils make patch chromium openssl
  systemd git
  mmdebstrap fdisk dpkg-dev apt-utils grub-pc-bin grub2-common e2fsprogs util-linux
  rpm
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  echo "setup: Go is at /usr/local/go/bin; add it to PATH" >&2
fi
