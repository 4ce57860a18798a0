/* The fix moves a function's static local into a new helper. The patched
 * code must not silently get a fresh, zeroed copy of the state the running
 * kernel keeps in the original (a counter here; a lock or a list head would
 * stop excluding or lose entries): the builder refuses it. */
#include "kernel.h"

extern int sink(int);

#ifdef PATCHED
static noinline int bump(int x)
{
	static int calls;
	calls++;
	return sink(x + calls);
}

int tally(int x)
{
	return bump(x) + 1;
}
#else
int tally(int x)
{
	static int calls;
	calls++;
	return sink(x + calls);
}
#endif
