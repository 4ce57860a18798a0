/* Functions with pr_debug (dynamic debug descriptors holding __LINE__)
 * below lines the fix adds, a pr_debug among them (every __UNIQUE_ID
 * below is renumbered): only the function the fix changes is carried,
 * with a copy of its descriptor. */
#include "kernel.h"

extern int sink(int);

#ifdef PATCHED
int added(int x)
{
	pr_debug("added %d\n", x);
	return sink(x);
}
#endif

int once(int x)
{
	pr_debug("once %d\n", x);
	return sink(x + 1);
}

int twice(int x)
{
	pr_debug("twice %d\n", x);
	if (x > 2)
		pr_debug("twice again %d\n", x);
	return sink(x * 3);
}

int fixed(int x)
{
	pr_debug("fixed %d\n", x);
#ifdef PATCHED
	if (x < 0)
		return 0;
#endif
	return sink(x - 1);
}
