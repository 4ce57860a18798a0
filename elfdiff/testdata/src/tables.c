/* Tracepoint output functions (notrace) with static print tables, as
 * __print_symbolic makes them: symbols.N, one per use. print_state uses
 * two tables, print_twice two of identical contents, print_other one
 * identical to print_state's first. The fix changes report, which uses
 * tables too, and adds a table-using function below them all (GCC numbers
 * from the end: every symbols.N moves). The notrace functions are
 * unchanged and must stay so: a live patch could not replace them. */
#include "kernel.h"

struct print_flags { unsigned long mask; const char *name; };
extern const char *print_symbols(unsigned long v, const struct print_flags *t);
extern int seq_printf(void *m, const char *fmt, ...);

#define print_symbolic(v, ...) ({					\
	static const struct print_flags symbols[] =			\
		{ __VA_ARGS__, { -1, 0 } };				\
	print_symbols(v, symbols); })

#define STATUS	{ 0, "continue" }, { 1, "skipped" }, { 2, "complete" }
#define ZONES	{ 0, "DMA" }, { 1, "Normal" }, { 2, "Movable" }

notrace int print_state(void *m, int status, int zone)
{
	return seq_printf(m, "status=%s zone=%s\n", print_symbolic(status, STATUS), print_symbolic(zone, ZONES));
}

notrace int print_twice(void *m, int from, int to)
{
	return seq_printf(m, "%s -> %s\n", print_symbolic(from, ZONES), print_symbolic(to, ZONES));
}

notrace int print_other(void *m, int status)
{
	return seq_printf(m, "%s\n", print_symbolic(status, STATUS));
}

int report(void *m, int status, int zone)
{
#ifdef PATCHED
	return seq_printf(m, "[%s/%s]\n", print_symbolic(status, STATUS), print_symbolic(zone, ZONES));
#else
	return seq_printf(m, "%s/%s\n", print_symbolic(status, STATUS), print_symbolic(zone, ZONES));
#endif
}

#ifdef PATCHED
notrace int print_added(void *m, int a)
{
	return seq_printf(m, "%s\n", print_symbolic(a, { 7, "seven" }));
}
#endif
