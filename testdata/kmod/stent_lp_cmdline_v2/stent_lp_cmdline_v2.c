// SPDX-License-Identifier: GPL-2.0
/*
 * stent_lp_cmdline_v2: a test live patch for Stent's QEMU tests. Reading
 * /proc/cmdline prints "stent-v2 patched: <original command line>". It is
 * the cumulative successor of stent_lp_cmdline_v1: the patch sets .replace,
 * so loading it atomically replaces v1 (or any earlier Stent test patch) and
 * leaves v1 disabled, ready to be unloaded. The code is in
 * ../include/stent_lp_cmdline.h.
 */
#define STENT_TAG "stent-v2"
#include "stent_lp_cmdline.h"
