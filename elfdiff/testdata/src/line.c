/* Lines move: WARN_ON's bug table entry and might_sleep()'s line argument
 * change, the code does not. (#line stands in for lines added above.) */
#include "kernel.h"

extern int sink(int);
#ifdef PATCHED
#line 40
#endif

int warned(int x)
{
	might_sleep();
	WARN_ON(x < 0);
	return sink(x);
}
