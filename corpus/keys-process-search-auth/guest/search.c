/* request_key() of a key nobody has searches the process keyrings
 * (search_process_keyrings_rcu) and fails with ENOKEY; one added first is
 * found the same way. */
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/keyctl.h>

int main(void)
{
	long k = syscall(SYS_request_key, "user", "stent-nonexistent", NULL, 0);
	if (k >= 0 || errno != ENOKEY) { fprintf(stderr, "request_key of a missing key: %ld errno %d, want ENOKEY\n", k, errno); return 1; }
	long a = syscall(SYS_add_key, "user", "stent-search", "v", 1, KEY_SPEC_PROCESS_KEYRING);
	if (a < 0) { perror("add_key"); return 1; }
	k = syscall(SYS_request_key, "user", "stent-search", NULL, 0);
	if (k != a) { fprintf(stderr, "request_key found %ld, want %ld\n", k, a); return 1; }
	return 0;
}
