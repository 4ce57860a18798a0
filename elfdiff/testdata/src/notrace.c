/* The fix changes a function ftrace cannot redirect. */
#include "kernel.h"

notrace int raw(int x)
{
#ifdef PATCHED
	return x - 1;
#else
	return x + 1;
#endif
}
