/* The fix adds a global function here that another file of the fix
 * (newglobal_use.c) calls; nothing in this file calls it. */
#include "kernel.h"

extern int sink(int);

int kept(int x)
{
	return sink(x);
}

#ifdef PATCHED
int clamp_new(int x)
{
	return x < 0 ? 0 : sink(x);
}
#endif
