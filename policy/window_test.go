package policy

import (
	"strings"
	"testing"
	"time"
)

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestWindowNext(t *testing.T) {
	tests := []struct {
		spec, now, start, end string
	}{
		// Friday noon → next Tuesday, 03:00 CET = 02:00 UTC.
		{"Tue 03:00-05:00 Europe/Berlin", "2026-11-20T12:00:00Z", "2026-11-24T02:00:00Z", "2026-11-24T04:00:00Z"},
		// In summer Berlin is UTC+2.
		{"Tue 03:00-05:00 Europe/Berlin", "2026-07-01T00:00:00Z", "2026-07-07T01:00:00Z", "2026-07-07T03:00:00Z"},
		// Inside the window: the open occurrence.
		{"Tue 03:00-05:00 Europe/Berlin", "2026-11-24T03:00:00Z", "2026-11-24T02:00:00Z", "2026-11-24T04:00:00Z"},
		// Second Sunday of December 2026 is the 13th; New York is UTC-5.
		{"second Sunday of the month 02:00-06:00 America/New_York", "2026-11-20T12:00:00Z", "2026-12-13T07:00:00Z", "2026-12-13T11:00:00Z"},
		{"2nd Sun 02:00-06:00 America/New_York", "2026-11-01T00:00:00Z", "2026-11-08T07:00:00Z", "2026-11-08T11:00:00Z"},
		// Last Saturday of November 2026 is the 28th; across midnight.
		{"last Sat 23:00-01:00 Europe/London", "2026-11-20T12:00:00Z", "2026-11-28T23:00:00Z", "2026-11-29T01:00:00Z"},
		// A window that opened yesterday evening is still open.
		{"Mon-Fri 22:00-02:00 UTC", "2026-11-21T01:00:00Z", "2026-11-20T22:00:00Z", "2026-11-21T02:00:00Z"},
		{"Mon-Fri 22:00-02:00 UTC", "2026-11-21T03:00:00Z", "2026-11-23T22:00:00Z", "2026-11-24T02:00:00Z"},
		{"Sat,Sun 01:00-03:00 Asia/Tokyo", "2026-11-20T12:00:00Z", "2026-11-20T16:00:00Z", "2026-11-20T18:00:00Z"},
		{"daily 01:00-03:00 UTC", "2026-11-20T02:00:00Z", "2026-11-20T01:00:00Z", "2026-11-20T03:00:00Z"},
		// The first Sunday of November 2026 ends US daylight saving time:
		// 01:30 happens twice; Go takes the first (EDT, UTC-4).
		{"first Sunday of the month 01:30-03:00 America/New_York", "2026-11-01T00:00:00Z", "2026-11-01T05:30:00Z", "2026-11-01T08:00:00Z"},
		// The last Sunday of March 2027 starts Berlin's summer time at 02:00:
		// 02:30 does not exist: the window opens at the change, 03:00 CEST.
		{"last Sun 02:30-04:00 Europe/Berlin", "2027-03-20T00:00:00Z", "2027-03-28T01:00:00Z", "2027-03-28T02:00:00Z"},
		// A window inside and past the gap keeps what is left of it
		// (03:00-03:30 CEST), not an empty slot at 03:30.
		{"last Sun 02:30-03:30 Europe/Berlin", "2026-03-20T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"},
		// A window wholly inside the gap does not happen that day.
		{"last Sun 02:10-02:50 Europe/Berlin", "2026-03-20T00:00:00Z", "2026-04-26T00:10:00Z", "2026-04-26T00:50:00Z"},
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.spec)
		if err != nil {
			t.Errorf("ParseWindow(%q) = %v", tt.spec, err)
			continue
		}
		s, ok := w.Next(mustTime(tt.now))
		if !ok || !s.Start.Equal(mustTime(tt.start)) || !s.End.Equal(mustTime(tt.end)) {
			t.Errorf("ParseWindow(%q).Next(%s) = %s..%s, want %s..%s", tt.spec, tt.now, s.Start.Format(time.RFC3339), s.End.Format(time.RFC3339), tt.start, tt.end)
		}
	}
}

func TestParseWindowErrors(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{"Tue 03:00-05:00 Mars/Olympus", "time zone \"Mars/Olympus\""},
		{"Funday 03:00-05:00 UTC", "\"Funday\" is not a weekday"},
		{"Tue 3-5 UTC", "time \"3\": want HH:MM"},
		{"Tue 03:00 UTC", "want HH:MM-HH:MM"},
		{"sixth Sunday 01:00-02:00 UTC", "days \"sixth Sunday\""},
		{"Tue 03:00-03:00 UTC", "the window is empty"},
		{"03:00-05:00", "want DAYS HH:MM-HH:MM ZONE"},
		{"Tue 25:00-26:00 UTC", "time \"25:00\""},
	} {
		if _, err := ParseWindow(tt.spec); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseWindow(%q) = %v, want %q", tt.spec, err, tt.want)
		}
	}
}

func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"Tue 03:00-05:00 Europe/Berlin", "last Sat 23:00-01:00 UTC", "Mon-Fri 22:00-02:00 UTC"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		w, err := ParseWindow(spec)
		if err != nil {
			return
		}
		if s, ok := w.Next(mustTime("2026-11-20T12:00:00Z")); ok && !s.End.After(s.Start) {
			t.Fatalf("%q: slot %v..%v ends before it starts", spec, s.Start, s.End)
		}
	})
}

func TestWindowContainsAndNextOpening(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	tests := []struct {
		when     string
		at       time.Time
		inside   bool
		nextOpen time.Time
	}{
		{"Tue 03:00-05:00 Europe/Berlin", time.Date(2026, 12, 1, 4, 0, 0, 0, berlin), true, time.Date(2026, 12, 8, 3, 0, 0, 0, berlin)},
		{"Tue 03:00-05:00 Europe/Berlin", time.Date(2026, 12, 1, 3, 0, 0, 0, berlin), true, time.Date(2026, 12, 1, 3, 0, 0, 0, berlin)},
		{"Tue 03:00-05:00 Europe/Berlin", time.Date(2026, 12, 1, 5, 0, 0, 0, berlin), false, time.Date(2026, 12, 8, 3, 0, 0, 0, berlin)},
		{"Tue 03:00-05:00 Europe/Berlin", time.Date(2026, 11, 30, 23, 0, 0, 0, berlin), false, time.Date(2026, 12, 1, 3, 0, 0, 0, berlin)},
		// Across midnight: Monday 23:30 is inside "Mon 22:00-02:00", and so is Tuesday 01:00.
		{"Mon 22:00-02:00 UTC", time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC), true, time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)},
		{"second Sunday of the month 02:00-06:00 UTC", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), false, time.Date(2026, 12, 13, 2, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.when)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.Contains(tt.at); got != tt.inside {
			t.Errorf("%q.Contains(%v) = %v, want %v", tt.when, tt.at, got, tt.inside)
		}
		if got, ok := w.NextOpening(tt.at); !ok || !got.Equal(tt.nextOpen) {
			t.Errorf("%q.NextOpening(%v) = %v, %v; want %v", tt.when, tt.at, got, ok, tt.nextOpen)
		}
	}
}
