#!/bin/bash
# Builds debvm's Debian 12 base image; run by Image (image.go) as root.
# Inputs (environment): OUT (the qcow2 to write), WORK (a scratch folder),
# KERNEL_DEB (the kernel's .deb, pinned as the default), KERNEL_ABI (its
# uname -r), OLDER_DEB (optional: another kernel's .deb, installed too),
# GUEST (folder whose tree is copied over the root file system: units,
# scripts), MIRROR_DEBIAN, MIRROR_SECURITY, SIZE (raw disk size, e.g. 4G).
set -euo pipefail
: "${OUT:?}" "${WORK:?}" "${KERNEL_DEB:?}" "${KERNEL_ABI:?}" "${GUEST:?}" "${SIZE:=4G}"
: "${MIRROR_DEBIAN:=http://deb.debian.org/debian}" "${MIRROR_SECURITY:=http://deb.debian.org/debian-security}"

raw=$WORK/disk.raw
mnt=$WORK/root
loop=""
uuidlink=""
cleanup() {
	set +e
	[ -n "$uuidlink" ] && rm -f "$uuidlink"
	for m in dev/pts dev proc sys; do mountpoint -q "$mnt/$m" && umount -l "$mnt/$m"; done
	mountpoint -q "$mnt" && umount "$mnt"
	if [ -n "$loop" ]; then partx -d "$loop" 2>/dev/null; losetup -d "$loop"; fi
}
trap cleanup EXIT
step() { echo "debvm-image: $* ($(date +%T))"; }

step "partitioning a $SIZE disk"
rm -f "$raw"
truncate -s "$SIZE" "$raw"
echo 'label: dos
start=2048, type=83, bootable' | sfdisk -q "$raw"
loop=$(losetup -f --show "$raw")
# This machine's kernel does not scan partitions of loop devices: partx does.
partx -a "$loop" 2>/dev/null || true
part=${loop}p1
for i in $(seq 50); do [ -b "$part" ] && break; sleep 0.1; done
[ -b "$part" ] || { echo "debvm-image: no $part after partx -a $loop" >&2; exit 1; }
mkfs.ext4 -q -L debvm-root "$part"
uuid=$(blkid -s UUID -o value "$part")
mkdir -p "$mnt"
mount "$part" "$mnt"
mountpoint -q "$mnt" || { echo "debvm-image: $part is not mounted on $mnt" >&2; exit 1; }

# The kernel's initramfs is built in the chroot, where MODULES=dep would
# look at the loop device: build it with the listed virtio modules instead,
# and switch to MODULES=dep (fast, right inside the guest) afterwards.
step "mmdebstrap"
mmdebstrap --variant=apt --mode=root --quiet \
	--dpkgopt=force-unsafe-io \
	--include=systemd,systemd-sysv,udev,dbus,grub-pc,initramfs-tools,apt,kmod,iproute2,ca-certificates,procps,e2fsprogs,util-linux,"$KERNEL_DEB"${OLDER_DEB:+,$OLDER_DEB} \
	--essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"' \
	--essential-hook='printf "MODULES=list\n" > "$1/etc/initramfs-tools/conf.d/debvm-modules"' \
	--essential-hook="cp '$GUEST/etc/initramfs-tools/hooks/debvm-virtio' \"\$1/etc/initramfs-tools/hooks/\"" \
	--essential-hook='printf "grub-pc grub-pc/install_devices multiselect \ngrub-pc grub-pc/install_devices_empty boolean true\n" | chroot "$1" debconf-set-selections' \
	--customize-hook='rm -f "$1/etc/initramfs-tools/conf.d/debvm-modules"' \
	bookworm "$mnt" \
	"deb $MIRROR_DEBIAN bookworm main" \
	"deb $MIRROR_DEBIAN bookworm-updates main" \
	"deb $MIRROR_SECURITY bookworm-security main"

step "configuring"
cp -a "$GUEST/." "$mnt/"
printf 'UUID=%s / ext4 errors=remount-ro 0 0\n' "$uuid" > "$mnt/etc/fstab"
echo debvm > "$mnt/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 debvm\n' > "$mnt/etc/hosts"
# Only the host's local repository; the config disk writes its line.
rm -f "$mnt/etc/apt/sources.list"
rm -rf "$mnt/var/lib/apt/lists/"*
mkdir -p "$mnt/var/log/journal"
chroot "$mnt" systemctl enable systemd-networkd.service debvm-config.service debvm-late.service debvm-guestrun.service
chroot "$mnt" systemctl mask apt-daily.timer apt-daily-upgrade.timer serial-getty@ttyS0.service \
	getty@tty1.service e2scrub_all.timer e2scrub_reap.service fstrim.timer
# A kernel for the loop device must never be installed on the host's disks.
for m in dev dev/pts proc sys; do mount --bind "/$m" "$mnt/$m"; done

step "grub-install"
chroot "$mnt" grub-install --target=i386-pc --boot-directory=/boot "$loop"
# No udev here: update-grub writes root=UUID= only when the by-uuid link exists.
mkdir -p /dev/disk/by-uuid
uuidlink=/dev/disk/by-uuid/$uuid
[ -e "$uuidlink" ] && { echo "debvm-image: $uuidlink exists already" >&2; exit 1; }
ln -s "$part" "$uuidlink"
chroot "$mnt" update-grub 2>&1 | sed 's/^/  /'
rm -f "$uuidlink"; uuidlink=""
grep -q "root=UUID=$uuid" "$mnt/boot/grub/grub.cfg" || { echo "debvm-image: grub.cfg does not say root=UUID=$uuid" >&2; exit 1; }
entry="gnulinux-advanced-$uuid>gnulinux-$KERNEL_ABI-advanced-$uuid"
grep -q "gnulinux-$KERNEL_ABI-advanced-$uuid" "$mnt/boot/grub/grub.cfg" || { echo "debvm-image: grub.cfg has no entry for $KERNEL_ABI" >&2; exit 1; }
chroot "$mnt" grub-set-default "$entry"
grep -q "saved_entry=$entry" "$mnt/boot/grub/grubenv"
ls -l "$mnt/boot"
echo "$uuid" > "$WORK/uuid"
chroot "$mnt" dpkg-query -W -f '${Package} ${Version}\n' > "$WORK/packages"
for m in dev/pts dev proc sys; do umount -l "$mnt/$m"; done
umount "$mnt"
partx -d "$loop" 2>/dev/null || true
losetup -d "$loop"; loop=""

step "converting to qcow2"
qemu-img convert -O qcow2 "$raw" "$OUT.tmp"
rm -f "$raw"
mv "$OUT.tmp" "$OUT"
step "done"
