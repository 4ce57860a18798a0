# mkdir, symlink and mknod over NFSv4 are CREATE operations (nfsd4_create).
mkdir /mnt/nfs/dir
ln -s file /mnt/nfs/link
mkfifo /mnt/nfs/fifo
ls /export | grep -qx dir
[ "$(readlink /export/link)" = file ]
[ -p /export/fifo ]
rm -r /mnt/nfs/dir /mnt/nfs/link /mnt/nfs/fifo
