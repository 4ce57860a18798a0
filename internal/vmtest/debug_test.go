package vmtest

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestDebugBoot(t *testing.T) {
	if os.Getenv("VMTEST_DEBUG") == "" {
		t.Skip()
	}
	k := Kernel(t, DefaultABI)
	ctx := context.Background()
	s := time.Now()
	if _, err := baseInitramfs(ctx, k, true, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("initramfs %v", time.Since(s))
	os.RemoveAll("/tmp/vmlog")
	for i := 0; i < 2; i++ {
		s = time.Now()
		vm := Boot(ctx, t, Options{Kernel: k, LogDir: "/tmp/vmlog", Append: os.Getenv("VMTEST_APPEND")})
		t.Logf("boot %v", time.Since(s))
		vm.Close()
	}
}
