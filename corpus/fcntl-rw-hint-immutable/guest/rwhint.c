/* F_SET_RW_HINT on a file made immutable must fail with EPERM (the fix),
 * and still work on a writable one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	uint64_t hint = RWH_WRITE_LIFE_SHORT;
	int fd = open(argv[1], O_RDONLY | O_CREAT, 0600);
	if (fd < 0) { perror("open"); return 1; }
	if (fcntl(fd, F_SET_RW_HINT, &hint) != 0) { perror("F_SET_RW_HINT on a writable file"); return 1; }
	int flags = FS_IMMUTABLE_FL;
	if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) { perror("FS_IOC_SETFLAGS"); return 1; }
	int r = fcntl(fd, F_SET_RW_HINT, &hint);
	int e = errno;
	flags = 0;
	ioctl(fd, FS_IOC_SETFLAGS, &flags);
	if (r == 0 || e != EPERM) { fprintf(stderr, "F_SET_RW_HINT on an immutable file: %d, errno %d, want EPERM\n", r, e); return 1; }
	printf("immutable: EPERM\n");
	return 0;
}
