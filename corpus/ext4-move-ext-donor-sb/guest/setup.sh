# An ext4 file system on a loop device over a file in the initramfs, and a
# tmpfs beside it for a donor on another file system. (busybox mke2fs
# formats block devices only: the loop device, not the file.)
mkdir -p /mnt/e /mnt/t /var/tmp
[ -f /var/tmp/ext4.img ] || dd if=/dev/zero of=/var/tmp/ext4.img bs=1M count=16 2>/dev/null
L=$(losetup -f)
losetup $L /var/tmp/ext4.img
mke2fs -q $L
mount -t ext4 $L /mnt/e
grep -q ' /mnt/e ext4 ' /proc/mounts
mountpoint -q /mnt/t || mount -t tmpfs tmpfs /mnt/t
