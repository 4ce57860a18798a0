umount /mnt/nfs
echo 0 > /proc/fs/nfsd/threads
umount /proc/fs/nfsd
