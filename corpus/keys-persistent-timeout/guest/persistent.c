/* KEYCTL_GET_PERSISTENT links the user's persistent keyring into the
 * session keyring (key_get_persistent); twice, the second finds it. */
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/keyctl.h>

int main(void)
{
	for (int i = 0; i < 2; i++) {
		long r = syscall(SYS_keyctl, KEYCTL_GET_PERSISTENT, -1, KEY_SPEC_PROCESS_KEYRING);
		if (r < 0) { perror("KEYCTL_GET_PERSISTENT"); return 1; }
	}
	return 0;
}
