/* Copies standard input to FILE, seeking over blocks of zeros so that a
 * mostly empty file system image takes little of the guest's memory. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char buf[4096], zero[4096];
	off_t off = 0;
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: sparse FILE <DATA\n");
		return 2;
	}
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	for (;;) {
		size_t got = 0;
		while (got < sizeof(buf) && (n = read(0, buf + got, sizeof(buf) - got)) > 0)
			got += n;
		if (n < 0) {
			perror("read");
			return 1;
		}
		if (got == 0)
			break;
		if (got == sizeof(buf) && memcmp(buf, zero, got) == 0) {
			off += got;
		} else if (pwrite(fd, buf, got, off) != (ssize_t)got) {
			perror("write");
			return 1;
		} else {
			off += got;
		}
		if (got < sizeof(buf))
			break;
	}
	if (ftruncate(fd, off) < 0) {
		perror("ftruncate");
		return 1;
	}
	return close(fd) < 0;
}
