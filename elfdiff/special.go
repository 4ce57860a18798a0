package elfdiff

import "strings"

// special describes a kernel special section: an array of fixed-size
// entries, each tied to the code at the relocation at offset anchor of the
// entry. The sizes are those of x86-64 Linux 6.1 (struct bug_entry with
// relative pointers, struct exception_table_entry, struct jump_entry,
// struct alt_instr, struct static_call_site, struct paravirt_patch_site,
// struct orc_entry); Diff refuses a patch whose changed code has entries in
// a section it does not know, instead of building a module that would
// misbehave.
type special struct {
	name   string
	size   int
	anchor int // offset of the relocation that names the code location
	// mask lists byte ranges of an entry not compared when deciding whether
	// code changed (the line number of a bug_entry).
	mask [][2]int
	// compare says whether differing entries make the function changed
	// (false for tables derived from the code bytes themselves).
	compare bool
	// pair names a section whose entries follow this one index for index
	// and carry no relocations (.orc_unwind for .orc_unwind_ip).
	pair     string
	pairSize int
	// carve names a section whose byte ranges the entries point at and
	// that must be copied with them: .altinstr_replacement, with the
	// length at byte lenAt of the entry.
	carve string
	lenAt int
}

var specials = []*special{
	{name: "__bug_table", size: 12, mask: [][2]int{{8, 10}}, compare: true},
	{name: "__ex_table", size: 12, compare: true},
	{name: "__jump_table", size: 16, compare: true},
	{name: ".altinstructions", size: 12, compare: true, carve: ".altinstr_replacement", lenAt: 11},
	{name: ".static_call_sites", size: 8, compare: true},
	{name: ".parainstructions", size: 16, compare: true},
	{name: ".retpoline_sites", size: 4},
	{name: ".return_sites", size: 4},
	{name: ".call_sites", size: 4},
	{name: ".ibt_endbr_seal", size: 4},
	{name: ".smp_locks", size: 4},
	{name: "__mcount_loc", size: 8},
	{name: "__patchable_function_entries", size: 8},
	{name: ".orc_unwind_ip", size: 4, pair: ".orc_unwind", pairSize: 6},
}

func specialOf(name string) *special {
	for _, s := range specials {
		if s.name == name {
			return s
		}
	}
	return nil
}

// ignoredSection reports sections Diff neither compares nor carries:
// debugging information, objtool's and the compiler's annotations, exports
// (a live patch cannot add exports), and the tables a live patch must not
// touch because they only run at boot or module load.
func ignoredSection(name string) bool {
	for _, p := range []string{
		".debug", ".discard", ".comment", ".note", ".BTF", ".eh_frame", ".gnu.",
		"__ksymtab", "___ksymtab", "__kcrctab", "__ksymtab_strings",
		".modinfo", "__param", "__modver", ".orc_unwind", ".altinstr_replacement",
		".initcall", ".con_initcall", ".init.", ".exit.", ".llvm",
		callbackSection, // read by Diff's callbacks step, not carried
	} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return name == ".symtab" || name == ".strtab" || name == ".shstrtab"
}
