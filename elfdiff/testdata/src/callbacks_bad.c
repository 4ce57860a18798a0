/* Callbacks the builder refuses: a function the running kernel already
 * has (it would need the original's address, and is no part of the fix),
 * and two of one kind for one object (the kernel has one slot). */
#include "kernel.h"

struct klp_object;
extern int sink(int);

#define __used __attribute__((used))
#define STENT_CALLBACK(kind, ret, fn) \
	static ret (*const __stent_##kind##_##fn)(struct klp_object *) __used __section(".stent." #kind) = fn

int existing(struct klp_object *obj)
{
	return sink(1);
}

#ifdef PATCHED
STENT_CALLBACK(pre_patch, int, existing);

static void first(struct klp_object *obj)
{
	sink(2);
}
STENT_CALLBACK(post_patch, void, first);

static void second(struct klp_object *obj)
{
	sink(3);
}
STENT_CALLBACK(post_patch, void, second);
#endif
