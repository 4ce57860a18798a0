/* The fix adds a member in the middle of a struct whose instances the
 * running kernel already holds (through a pointer: no variable's bytes
 * change). Compiled with -g: DWARF tells the layout. */
#include "kernel.h"

struct conn {
	int id;
#ifdef PATCHED
	int flags;
#endif
	int state;
};

struct conn *current_conn;

int conn_state(void)
{
	return current_conn->state;
}
