/* The fix changes the initial value of existing data. */
#include "kernel.h"

#ifdef PATCHED
int limit = 6;
#else
int limit = 5;
#endif

int over(int x)
{
	return x > limit;
}
