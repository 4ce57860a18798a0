/* O_TMPFILE in a directory, written, then linked in: vfs_tmpfile's path. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char path[256], proc[64];
	int fd = open(argv[1], O_TMPFILE | O_RDWR, 0600);
	if (fd < 0) { perror("open O_TMPFILE"); return 1; }
	if (write(fd, "x", 1) != 1) { perror("write"); return 1; }
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	snprintf(path, sizeof path, "%s/linked", argv[1]);
	if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) != 0) { perror("linkat"); return 1; }
	if (access(path, F_OK) != 0) { perror(path); return 1; }
	unlink(path);
	return 0;
}
