// Package policy decides, per host and per CVE, what to do about a fleet's
// kernel vulnerabilities and whether each host complies with the rules in
// force.
//
// The decision flow: a CVE is urgent when its CVSS base score reaches the
// urgent rule's threshold (or, unscored, its distribution urgency reaches
// the rule's level). An urgent CVE with a live patch for the host's kernel
// gets "apply the live patch now", and the kernel update still follows at
// the next scheduled reboot; an urgent CVE without one gets "emergency
// reboot into a fixed kernel before the deadline" (after upgrading the
// package when the fixed kernel is not installed yet). Other fixes are
// installed and booted in the host's next maintenance window. Live patches
// buy time: the max-kernel-age rule does not count them.
//
// Plan is a pure function of the inventories, the vulnerability database,
// the policy and the time given as now, so plans are reproducible.
package policy
