/* Runs the three calls the fix changes on an xfs file system: FS_IOC_GETFSMAP
 * (xfs_getfsmap; the rmapbt feature makes it reach the capability check),
 * fchown (xfs_setattr_nonsize) and FS_IOC_FSSETXATTR (xfs_fileattr_set). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <linux/fsmap.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: fsmap MOUNTPOINT FILE\n");
		return 2;
	}
	int dir = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (dir < 0) {
		perror(argv[1]);
		return 1;
	}
	size_t n = 64;
	struct fsmap_head *h = calloc(1, fsmap_sizeof(n));
	h->fmh_count = n;
	h->fmh_keys[1].fmr_device = ~0U;
	h->fmh_keys[1].fmr_physical = ~0ULL;
	h->fmh_keys[1].fmr_owner = ~0ULL;
	h->fmh_keys[1].fmr_offset = ~0ULL;
	h->fmh_keys[1].fmr_flags = ~0U;
	if (ioctl(dir, FS_IOC_GETFSMAP, h) < 0) {
		perror("FS_IOC_GETFSMAP");
		return 1;
	}
	if (h->fmh_entries == 0) {
		fprintf(stderr, "FS_IOC_GETFSMAP: no extents\n");
		return 1;
	}
	printf("fsmap: %u extents\n", h->fmh_entries);

	int fd = open(argv[2], O_RDWR | O_CREAT, 0644);
	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	if (fchown(fd, 1000, 1000) < 0 || fchown(fd, 0, 0) < 0) {
		perror("fchown");
		return 1;
	}
	struct fsxattr fa;
	if (ioctl(fd, FS_IOC_FSGETXATTR, &fa) < 0) {
		perror("FS_IOC_FSGETXATTR");
		return 1;
	}
	fa.fsx_projid = 42;
	if (ioctl(fd, FS_IOC_FSSETXATTR, &fa) < 0) {
		perror("FS_IOC_FSSETXATTR");
		return 1;
	}
	memset(&fa, 0, sizeof(fa));
	if (ioctl(fd, FS_IOC_FSGETXATTR, &fa) < 0 || fa.fsx_projid != 42) {
		fprintf(stderr, "project id not set\n");
		return 1;
	}
	close(fd);
	return 0;
}
