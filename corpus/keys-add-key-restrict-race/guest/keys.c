/* add_key into a new keyring (key_create_or_update), describe and read it
 * back (keyctl_describe_key, keyctl_read_key), and add to a restricted
 * keyring, which must be refused. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/keyctl.h>

static long add_key(const char *type, const char *desc, const void *p, size_t n, int ring)
{
	return syscall(SYS_add_key, type, desc, p, n, ring);
}
static long keyctl(int cmd, long a, long b, long c, long d) { return syscall(SYS_keyctl, cmd, a, b, c, d); }

int main(void)
{
	long ring = add_key("keyring", "stent-ring", NULL, 0, KEY_SPEC_PROCESS_KEYRING);
	if (ring < 0) { perror("add_key keyring"); return 1; }
	long k = add_key("user", "stent-key", "payload", 7, ring);
	if (k < 0) { perror("add_key user"); return 1; }
	char buf[256];
	long n = keyctl(KEYCTL_DESCRIBE, k, (long)buf, sizeof buf, 0);
	if (n < 0 || !strstr(buf, "stent-key")) { perror("KEYCTL_DESCRIBE"); return 1; }
	n = keyctl(KEYCTL_READ, k, (long)buf, sizeof buf, 0);
	if (n != 7 || memcmp(buf, "payload", 7)) { fprintf(stderr, "KEYCTL_READ = %ld\n", n); return 1; }
	/* Updating the same description goes through key_create_or_update again. */
	if (add_key("user", "stent-key", "payload2", 8, ring) != k) { perror("add_key update"); return 1; }
	long r2 = add_key("keyring", "stent-restricted", NULL, 0, KEY_SPEC_PROCESS_KEYRING);
	if (r2 < 0 || keyctl(KEYCTL_RESTRICT_KEYRING, r2, 0, 0, 0) != 0) { perror("KEYCTL_RESTRICT_KEYRING"); return 1; }
	if (add_key("user", "blocked", "x", 1, r2) >= 0 || errno != EPERM) { fprintf(stderr, "add_key to a restricted keyring: errno %d, want EPERM\n", errno); return 1; }
	return 0;
}
