/* Without DWARF (this test compiles without -g), a function that passes
 * __LINE__ to might_sleep() and whose fix changes another constant
 * argument: a real change, not a moved line number. */
#include "kernel.h"

extern int sink(int);
extern void set_limit(int);

int limited(int x)
{
	might_sleep();
#ifdef PATCHED
	set_limit(64);
#else
	set_limit(63);
#endif
	return sink(x);
}
