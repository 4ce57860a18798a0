/* A module's file (compiled with -DMODULE in the kernel) whose fix calls
 * status_word, a function the same fix adds to a file of vmlinux
 * (newglobal_def.c's pattern): the running kernel has no status_word, and
 * the module reaches it through the livepatch module's own link. The
 * module's static state stays the running module's. */
#include "kernel.h"

extern int sink(int);
extern const char *status_word(int on);

static int enabled = 1;

const char *status_read(void)
{
#ifdef PATCHED
	return status_word(enabled);
#else
	return enabled ? "enabled\n" : "disabled\n";
#endif
}

int status_write(int on)
{
	enabled = on;
	return sink(on);
}
