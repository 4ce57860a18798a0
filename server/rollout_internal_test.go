package server

import "testing"

func TestAllowedFailures(t *testing.T) {
	tests := []struct {
		pct      float64
		released int
		want     int
	}{
		{5, 1, 0},
		{5, 19, 0},
		{5, 20, 1},
		{29, 100, 29},
		{57, 100, 57},
		{7, 300, 21},
		{0, 1000, 0},
		{100, 3, 3},
		{12.5, 8, 1},
	}
	for _, tt := range tests {
		if got := allowedFailures(tt.pct, tt.released); got != tt.want {
			t.Errorf("allowedFailures(%v, %d) = %d, want %d", tt.pct, tt.released, got, tt.want)
		}
	}
}
