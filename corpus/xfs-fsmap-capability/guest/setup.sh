# An xfs file system (made on the host: mkfs.xfs -m rmapbt=1, the smallest
# size mkfs.xfs allows, gzipped) unpacked sparse onto a file in the
# initramfs, on a loop device. The reverse map makes FS_IOC_GETFSMAP reach
# the capability check the fix changes.
mkdir -p /mnt/x /var/tmp
[ -f /var/tmp/xfs.img ] || gunzip -c $FIX/xfs.img.gz | $FIX/sparse /var/tmp/xfs.img
L=$(losetup -f)
losetup $L /var/tmp/xfs.img
mount -t xfs $L /mnt/x
grep -q ' /mnt/x xfs ' /proc/mounts
