# An NFSv4.1 server on the loopback without nfs-utils: the export caches
# mountd would fill are written directly (entries that never expire).
ifconfig lo 127.0.0.1 up
mkdir -p /export /mnt/nfs
mountpoint -q /export || { mount -t tmpfs tmpfs /export && echo hello > /export/file; }
mountpoint -q /proc/fs/nfsd || mount -t nfsd nfsd /proc/fs/nfsd
echo "nfsd 127.0.0.1 2147483647 *" > /proc/net/rpc/auth.unix.ip/channel
# flags 9218 = NFSEXP_FSID|NOSUBTREECHECK|INSECURE_PORT; fsid 0 is the v4 root
echo "* /export 2147483647 9218 65534 65534 0" > /proc/net/rpc/nfsd.export/channel
echo "* 1 \\x00000000 2147483647 /export" > /proc/net/rpc/nfsd.fh/channel
if [ "$(cat /proc/fs/nfsd/threads)" = 0 ]; then
	echo "-2 -3 +4 +4.1" > /proc/fs/nfsd/versions
	echo 10 > /proc/fs/nfsd/nfsv4gracetime
	echo 10 > /proc/fs/nfsd/nfsv4leasetime
	echo 1 > /proc/fs/nfsd/threads
fi
mount -t nfs4 -o vers=4.1,addr=127.0.0.1,clientaddr=127.0.0.1 127.0.0.1:/ /mnt/nfs
