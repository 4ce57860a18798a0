/* fspick() of a mounted tmpfs works; the fix refuses SB_NOUSER ones. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	int fd = syscall(SYS_fspick, AT_FDCWD, "/proc", 0);
	if (fd < 0) { perror("fspick /proc"); return 1; }
	close(fd);
	return 0;
}
