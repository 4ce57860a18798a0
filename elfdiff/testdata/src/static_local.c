/* A changed function keeps using the original's static local counter, even
 * though a new static local in another function renumbers it. */
#include "kernel.h"

#ifdef PATCHED
int other(void)
{
	static int count;
	return ++count;
}
#endif

int counter(int step)
{
	static int count;
#ifdef PATCHED
	count += step * 2;
#else
	count += step;
#endif
	return count;
}
