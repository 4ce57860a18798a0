/* The fix adds a function the changed one calls. */
#include "kernel.h"

extern int sink(int);

#ifdef PATCHED
static noinline int check(int x)
{
	if (x > 100)
		return sink(-x);
	return x;
}
#endif

int handle(int x)
{
#ifdef PATCHED
	x = check(x);
#endif
	return sink(x);
}
