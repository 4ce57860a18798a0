/* The fix makes user call clamp_new, which it adds to another file
 * (newglobal_def.c): the running kernel has no clamp_new. */
#include "kernel.h"

extern int sink(int);
extern int clamp_new(int);

int user(int x)
{
#ifdef PATCHED
	return clamp_new(x) + 1;
#else
	return sink(x) + 1;
#endif
}
