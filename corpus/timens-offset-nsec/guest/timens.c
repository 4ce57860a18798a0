/* In a new time namespace, /proc/self/timens_offsets refuses a nanosecond
 * field out of [0, 1s) and accepts a valid offset. The file's parser
 * already refuses 1000000000 unpatched, but it reads the field with %lu
 * into a long and compares it signed, so 18446744073709551615 (2^64-1, a
 * tv_nsec of -1) gets through to proc_timens_set_offset: the fix's check
 * there refuses it (EINVAL); unpatched it is accepted. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int put(const char *s)
{
	int fd = open("/proc/self/timens_offsets", O_WRONLY);
	if (fd < 0) { perror("open timens_offsets"); return -2; }
	int r = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	return r < 0 ? e : 0;
}

int main(void)
{
	if (unshare(CLONE_NEWTIME) != 0) { perror("unshare CLONE_NEWTIME"); return 1; }
	int e = put("monotonic 1 1000000000");
	if (e != EINVAL) { fprintf(stderr, "nsec 1000000000: %s, want EINVAL\n", e ? strerror(e) : "accepted"); return 1; }
	e = put("monotonic 1 18446744073709551615");
	if (e != EINVAL) { fprintf(stderr, "nsec 2^64-1 (-1 as a long): %s, want EINVAL\n", e ? strerror(e) : "accepted"); return 1; }
	e = put("monotonic 1 999999999");
	if (e != 0) { fprintf(stderr, "valid offset: %s\n", strerror(e)); return 1; }
	return 0;
}
