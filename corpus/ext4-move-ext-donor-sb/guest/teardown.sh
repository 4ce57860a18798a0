L=$(grep ' /mnt/e ext4 ' /proc/mounts | cut -d' ' -f1)
umount /mnt/e
losetup -d $L
umount /mnt/t
