/* A function whose behaviour changes; its neighbour does not. */
#include "kernel.h"

int value(int x)
{
#ifdef PATCHED
	return x * 3;
#else
	return x * 2;
#endif
}

int untouched(int x)
{
	return x + 1;
}
