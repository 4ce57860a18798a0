# Every NFSv4.1 compound starts with SEQUENCE (nfsd4_sequence).
ls /mnt/nfs | grep -qx file
stat /mnt/nfs/file >/dev/null
