// SPDX-License-Identifier: GPL-2.0
/*
 * stent_lp_cmdline_v1: a test live patch for Stent's QEMU tests. Reading
 * /proc/cmdline prints "stent-v1 patched: <original command line>". The
 * patch sets .replace, so loading it replaces any earlier Stent test patch
 * and stent_lp_cmdline_v2 replaces it in turn. The code is in
 * ../include/stent_lp_cmdline.h.
 */
#define STENT_TAG "stent-v1"
#include "stent_lp_cmdline.h"
