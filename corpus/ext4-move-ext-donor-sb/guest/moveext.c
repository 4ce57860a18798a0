/* EXT4_IOC_MOVE_EXT with a donor file on another file system must fail
 * with EXDEV (the fix checks the donor's superblock first). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct move_extent {
	uint32_t reserved;
	uint32_t donor_fd;
	uint64_t orig_start;
	uint64_t donor_start;
	uint64_t len;
	uint64_t moved_len;
};
#define EXT4_IOC_MOVE_EXT _IOWR('f', 15, struct move_extent)

int main(int argc, char **argv)
{
	int o = open(argv[1], O_RDWR | O_CREAT, 0600);
	int d = open(argv[2], O_RDWR | O_CREAT, 0600);
	if (o < 0 || d < 0) { perror("open"); return 1; }
	if (write(o, "orig", 4) != 4 || write(d, "dono", 4) != 4) { perror("write"); return 1; }
	fsync(o);
	struct move_extent me = { .donor_fd = d, .len = 1 };
	if (ioctl(o, EXT4_IOC_MOVE_EXT, &me) == 0 || errno != EXDEV) {
		fprintf(stderr, "EXT4_IOC_MOVE_EXT with a tmpfs donor: errno %d (%s), want EXDEV\n", errno, strerror(errno));
		return 1;
	}
	return 0;
}
