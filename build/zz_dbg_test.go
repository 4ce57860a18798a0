package build
import ("context";"fmt";"path/filepath";"testing";"time";"strings"
 "github.com/stent-dev/stent/elfdiff")
func TestZZDbg(t *testing.T){
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	k, tree, cache := prepared(t, ctx)
	vmsyms, _, _ := KernelSymbols(ctx, k.Vmlinuz, filepath.Join(cache, "build", k.Release))
	symvers, _ := ReadSymvers(filepath.Join(k.HeadersDir, "Module.symvers"))
	files := strings.Fields("fs/ext4/inode.c arch/x86/kernel/process.c")
	var patches []string; var changes []FileChange; var objs []string
	for _, f := range files { patches = append(patches, shiftPatch(t, tree.Dir, f)); changes = append(changes, FileChange{Path: f}); objs = append(objs, strings.TrimSuffix(f, ".c")+".o") }
	pairs, err := tree.Compile(ctx, cache, patches, changes, objs, "/tmp/dbgwork", testWriter{t})
	if err != nil { t.Fatal(err) }
	for i, p := range pairs {
		symtab := vmsyms
		if p.Target != "vmlinux" { symtab, _, _ = ModuleSymbols(k.ModulesDir, p.Target, p.ModFile) }
		res, err := diffPair(p, elfdiff.Options{Object: p.Target, File: p.Source, Symtab: symtab, Exported: symvers.Exported, Prefix: fmt.Sprint(i)})
		if err != nil { t.Log(err); continue }
		for _, f := range res.Funcs { t.Log(p.Source, f.Name) }
	}
}
