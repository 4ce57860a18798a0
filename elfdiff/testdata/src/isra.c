/* GCC numbers the clones it makes of a function (foo.isra.0,
 * foo.constprop.1, ...); a fix that makes GCC clone a function once more
 * renumbers the clone that was already there. The assembler names below
 * reproduce that: the unchanged helper is helper.isra.0 before the fix and
 * helper.isra.1 after it, when a new helper.isra.0 appears. */
#include "kernel.h"

extern int sink(int);

#ifdef PATCHED
static noinline int helper_new(int x) __asm__("helper.isra.0");
static noinline int helper_new(int x)
{
	return sink(x * 9);
}

static noinline int helper(int x) __asm__("helper.isra.1");
#else
static noinline int helper(int x) __asm__("helper.isra.0");
#endif
static noinline int helper(int x)
{
	return sink(x + 1);
}

int user(int *p)
{
#ifdef PATCHED
	return helper(*p) + helper_new(*p);
#else
	return helper(*p) + 1;
#endif
}

int bystander(int *p)
{
	return helper(*p) * 2;
}
