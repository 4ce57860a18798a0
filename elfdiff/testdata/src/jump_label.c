/* A changed function with a static branch keeps its __jump_table entry. */
#include "kernel.h"

extern int sink(int);
struct static_key feature_key;

int branchy(int x)
{
	if (static_branch(&feature_key))
		return sink(x);
#ifdef PATCHED
	return x + 2;
#else
	return x;
#endif
}

int plain(int x)
{
	if (static_branch(&feature_key))
		return 1;
	return 0;
}
