/* SPDX-License-Identifier: GPL-2.0 */
/*
 * stent/livepatch.h: what a fix built with `stent build` may use beyond
 * plain kernel C. `stent build` puts this header on the include path of
 * the files a fix patches; write `#include <stent/livepatch.h>` in the fix.
 * The unpatched kernel never sees it. docs/builder.md explains each part and
 * the rules the builder checks.
 *
 * Syscalls
 *   STENT_SYSCALL_DEFINE1(name, ...) .. STENT_SYSCALL_DEFINE6: write these
 *   in place of SYSCALL_DEFINEn when the fix changes a syscall's body. The
 *   kernel's SYSCALL_DEFINEn makes the body __do_sys_<name>, an inline
 *   (and so notrace) function that ftrace cannot redirect when the compiler
 *   keeps it out of line. These define the same syscall, with the same
 *   entry points (__x64_sys_<name>, __ia32_sys_<name>) and tracing
 *   metadata, but with the body in __stent_sys_<name>, an ordinary
 *   function: the builder replaces the entry points, which call the new
 *   body. STENT_COMPAT_SYSCALL_DEFINEn does the same for
 *   COMPAT_SYSCALL_DEFINEn (__ia32_compat_sys_<name>, __x64_compat_sys_<name>).
 *   (SYSCALL_DEFINE0 bodies are ordinary functions already; the 0 forms
 *   are the kernel's.)
 *
 * Callbacks
 *   STENT_PRE_PATCH(fn), STENT_POST_PATCH(fn), STENT_PRE_UNPATCH(fn),
 *   STENT_POST_UNPATCH(fn) register a function the fix adds as the klp
 *   callback of that kind of the object the file belongs to (vmlinux, or
 *   the module it is built into). fn takes the struct klp_object *; the
 *   pre-patch one returns 0 or a negative errno, which makes the kernel
 *   refuse the patch (or, for a module loaded later, the module). At most
 *   one of each kind per object.
 *
 * Shadow variables
 *   STENT_SHADOW(name, id, type) declares typed helpers over the kernel's
 *   klp_shadow_* API for new state attached to existing objects:
 *     type *name_get(void *obj);
 *     type *name_get_or_alloc(void *obj, gfp_t gfp);  zeroed when new
 *     void name_free(void *obj);
 *     void name_free_all(void);
 *   id is the shadow variable's number: keep it the same in later
 *   (cumulative) versions of the fix that use the same state, and make it
 *   unique among the fixes running on a host (e.g. a CVE's digits). The
 *   state is keyed by the object's address: free it where the object is
 *   freed (or a new object at that address finds it), and free all of it
 *   in a post-unpatch callback.
 */
#ifndef _STENT_LIVEPATCH_H
#define _STENT_LIVEPATCH_H

#include <linux/compat.h>
#include <linux/livepatch.h>
#include <linux/syscalls.h>

/* Syscalls (x86-64, arch/x86/include/asm/syscall_wrapper.h). */
#define STENT_SYSCALL_DEFINE0(sname)	SYSCALL_DEFINE0(sname)
#define STENT_SYSCALL_DEFINE1(name, ...) __STENT_SYSCALL_DEFINEx(1, _##name, __VA_ARGS__)
#define STENT_SYSCALL_DEFINE2(name, ...) __STENT_SYSCALL_DEFINEx(2, _##name, __VA_ARGS__)
#define STENT_SYSCALL_DEFINE3(name, ...) __STENT_SYSCALL_DEFINEx(3, _##name, __VA_ARGS__)
#define STENT_SYSCALL_DEFINE4(name, ...) __STENT_SYSCALL_DEFINEx(4, _##name, __VA_ARGS__)
#define STENT_SYSCALL_DEFINE5(name, ...) __STENT_SYSCALL_DEFINEx(5, _##name, __VA_ARGS__)
#define STENT_SYSCALL_DEFINE6(name, ...) __STENT_SYSCALL_DEFINEx(6, _##name, __VA_ARGS__)

#define __STENT_SYSCALL_DEFINEx(x, name, ...)				\
	SYSCALL_METADATA(name, x, __VA_ARGS__)				\
	static long __se_sys##name(__MAP(x, __SC_LONG, __VA_ARGS__));	\
	static noinline long __stent_sys##name(__MAP(x, __SC_DECL, __VA_ARGS__)); \
	__X64_SYS_STUBx(x, name, __VA_ARGS__)				\
	__IA32_SYS_STUBx(x, name, __VA_ARGS__)				\
	static long __se_sys##name(__MAP(x, __SC_LONG, __VA_ARGS__))	\
	{								\
		long ret = __stent_sys##name(__MAP(x, __SC_CAST, __VA_ARGS__)); \
		__MAP(x, __SC_TEST, __VA_ARGS__);			\
		__PROTECT(x, ret, __MAP(x, __SC_ARGS, __VA_ARGS__));	\
		return ret;						\
	}								\
	static noinline long __stent_sys##name(__MAP(x, __SC_DECL, __VA_ARGS__))

#define STENT_COMPAT_SYSCALL_DEFINE0(name)	COMPAT_SYSCALL_DEFINE0(name)
#define STENT_COMPAT_SYSCALL_DEFINE1(name, ...) __STENT_COMPAT_SYSCALL_DEFINEx(1, _##name, __VA_ARGS__)
#define STENT_COMPAT_SYSCALL_DEFINE2(name, ...) __STENT_COMPAT_SYSCALL_DEFINEx(2, _##name, __VA_ARGS__)
#define STENT_COMPAT_SYSCALL_DEFINE3(name, ...) __STENT_COMPAT_SYSCALL_DEFINEx(3, _##name, __VA_ARGS__)
#define STENT_COMPAT_SYSCALL_DEFINE4(name, ...) __STENT_COMPAT_SYSCALL_DEFINEx(4, _##name, __VA_ARGS__)
#define STENT_COMPAT_SYSCALL_DEFINE5(name, ...) __STENT_COMPAT_SYSCALL_DEFINEx(5, _##name, __VA_ARGS__)
#define STENT_COMPAT_SYSCALL_DEFINE6(name, ...) __STENT_COMPAT_SYSCALL_DEFINEx(6, _##name, __VA_ARGS__)

#define __STENT_COMPAT_SYSCALL_DEFINEx(x, name, ...)			\
	static long __se_compat_sys##name(__MAP(x, __SC_LONG, __VA_ARGS__)); \
	static noinline long __stent_compat_sys##name(__MAP(x, __SC_DECL, __VA_ARGS__)); \
	__IA32_COMPAT_SYS_STUBx(x, name, __VA_ARGS__)			\
	__X32_COMPAT_SYS_STUBx(x, name, __VA_ARGS__)			\
	static long __se_compat_sys##name(__MAP(x, __SC_LONG, __VA_ARGS__)) \
	{								\
		return __stent_compat_sys##name(__MAP(x, __SC_DELOUSE, __VA_ARGS__)); \
	}								\
	static noinline long __stent_compat_sys##name(__MAP(x, __SC_DECL, __VA_ARGS__))

/*
 * Callbacks: a pointer to fn in section .stent.<kind>, which the builder
 * reads (it is not part of the module) to fill in the klp_object's
 * klp_callbacks.
 */
#define __STENT_CALLBACK(kind, ret, fn)					\
	static ret (*const __stent_##kind##_##fn)(struct klp_object *)	\
	__used __section(".stent." #kind) = fn

#define STENT_PRE_PATCH(fn)	__STENT_CALLBACK(pre_patch, int, fn)
#define STENT_POST_PATCH(fn)	__STENT_CALLBACK(post_patch, void, fn)
#define STENT_PRE_UNPATCH(fn)	__STENT_CALLBACK(pre_unpatch, void, fn)
#define STENT_POST_UNPATCH(fn)	__STENT_CALLBACK(post_unpatch, void, fn)

/* Shadow variables (include/linux/livepatch.h, klp_shadow_*). */
#define STENT_SHADOW(name, id, type)					\
	static inline type *name##_get(void *obj)			\
	{								\
		return klp_shadow_get(obj, (id));			\
	}								\
	static inline type *name##_get_or_alloc(void *obj, gfp_t gfp)	\
	{								\
		return klp_shadow_get_or_alloc(obj, (id), sizeof(type), gfp, NULL, NULL); \
	}								\
	static inline void name##_free(void *obj)			\
	{								\
		klp_shadow_free(obj, (id), NULL);			\
	}								\
	static inline void name##_free_all(void)			\
	{								\
		klp_shadow_free_all((id), NULL);			\
	}

#endif /* _STENT_LIVEPATCH_H */
