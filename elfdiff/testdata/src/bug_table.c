/* A changed function with WARN_ON keeps its __bug_table entry. */
#include "kernel.h"

extern int sink(int);

int guarded(int x)
{
#ifdef PATCHED
	WARN_ON(x < 0 || x > 1000);
#else
	WARN_ON(x < 0);
#endif
	return sink(x);
}

int other(int x)
{
	WARN_ON(x == 3);
	return sink(x + 1);
}
