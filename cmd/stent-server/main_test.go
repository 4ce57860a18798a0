package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestSubcommands(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"fingerprint", "--data-dir", dir}, &out, &errb); err != nil {
		t.Fatalf("fingerprint: %v (%s)", err, errb.String())
	}
	fp := strings.TrimSpace(out.String())
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != 7+64 {
		t.Errorf("fingerprint = %q", fp)
	}
	out.Reset()
	// The same certificate the next time.
	if err := run(context.Background(), []string{"fingerprint", "--data-dir", dir}, &out, &errb); err != nil || strings.TrimSpace(out.String()) != fp {
		t.Errorf("second fingerprint = %q, %v; want %q", out.String(), err, fp)
	}
	out.Reset()
	t.Setenv("STENT_SERVER_DATA_DIR", dir) // through the environment this time
	if err := run(context.Background(), []string{"token", "create", "--name", "ci", "--role", "viewer"}, &out, &errb); err != nil {
		t.Fatalf("token create: %v", err)
	}
	if !strings.HasPrefix(out.String(), "sta_") {
		t.Errorf("token create printed %q", out.String())
	}
	if err := run(context.Background(), []string{"token", "create", "--role", "root"}, &out, &errb); err == nil {
		t.Errorf("token create --role root succeeded")
	}
	if err := run(context.Background(), []string{"--log-level", "loud", "--data-dir", dir, "--listen", "127.0.0.1:0"}, &out, &errb); err == nil {
		t.Errorf("a bad --log-level was accepted")
	}
}
