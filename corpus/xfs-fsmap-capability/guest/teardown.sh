L=$(grep ' /mnt/x xfs ' /proc/mounts | cut -d' ' -f1)
umount /mnt/x
losetup -d $L
