// SPDX-License-Identifier: GPL-2.0
/*
 * stent_plain: a trivial module that is not a live patch. Stent must refuse
 * to apply it as one (it has no "livepatch=Y" modinfo and no klp_patch).
 */
#include <linux/kernel.h>
#include <linux/module.h>

static int __init stent_plain_init(void)
{
	pr_info("stent_plain: loaded\n");
	return 0;
}

static void __exit stent_plain_exit(void)
{
	pr_info("stent_plain: unloaded\n");
}

module_init(stent_plain_init);
module_exit(stent_plain_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Stent test module that is not a live patch");
