/* The fix changes __init code, which ran at boot and was freed. */
#include "kernel.h"

extern int sink(int);

int __init setup(void)
{
#ifdef PATCHED
	return sink(2);
#else
	return sink(1);
#endif
}
