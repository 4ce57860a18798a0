package vmtest

import (
	"context"
	"testing"
	"time"
)

// BenchmarkBoot measures a boot to the guest's runner, one command and a
// power-off: go test -run '^$' -bench Boot -benchtime 5x ./internal/vmtest
func BenchmarkBoot(b *testing.B) {
	k := Kernel(b, DefaultABI)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := baseInitramfs(ctx, k, true, false, nil); err != nil { // build once, outside the timing
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vm, err := Start(ctx, Options{Kernel: k, LogDir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := vm.Run(ctx, "uname", "-r"); err != nil {
			b.Fatal(err)
		}
		vm.Close()
	}
}
