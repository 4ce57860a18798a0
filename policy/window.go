package policy

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones even on hosts without /usr/share/zoneinfo
)

// Window is a recurring maintenance window in a time zone:
// "Tue 03:00-05:00 Europe/Berlin", "Mon-Fri 22:00-02:00 UTC",
// "daily 01:00-03:00 Asia/Tokyo", "second Sunday of the month 02:00-06:00
// America/New_York", "last Sat 23:00-01:00 Europe/London".
type Window struct {
	Name  string   `json:"name"`
	When  string   `json:"when"`
	Hosts []string `json:"hosts,omitempty"` // host name globs; none: every host

	loc        *time.Location
	days       [7]bool // for weekday lists
	nth        int     // 1..5 for "first".."fifth", -1 for "last", 0 for weekday lists
	nthDay     time.Weekday
	start, end int // minutes after midnight
}

type windowFile struct {
	Name  string   `json:"name"`
	When  string   `json:"when"`
	Hosts []string `json:"hosts"`
}

func (wf windowFile) build() (Window, error) {
	if wf.Name == "" {
		return Window{}, errors.New("name: missing required field")
	}
	w, err := ParseWindow(wf.When)
	if err != nil {
		return Window{}, fmt.Errorf("%s: when: %w", wf.Name, err)
	}
	w.Name = wf.Name
	for _, h := range wf.Hosts {
		if _, err := path.Match(h, ""); err != nil {
			return Window{}, fmt.Errorf("%s: hosts: bad pattern %q", wf.Name, h)
		}
	}
	w.Hosts = wf.Hosts
	return w, nil
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

func parseWeekday(s string) (time.Weekday, bool) {
	s = strings.ToLower(s)
	if len(s) < 3 {
		return 0, false
	}
	d, ok := weekdays[s[:3]]
	if !ok {
		return 0, false
	}
	full := strings.ToLower(d.String())
	if s != s[:3] && s != full && !(len(s) == 4 && strings.HasPrefix(full, s)) { // "tues", "thur"
		return 0, false
	}
	return d, true
}

var ordinals = map[string]int{
	"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1,
	"1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5,
}

// ParseWindow parses a window specification (see Window).
func ParseWindow(spec string) (Window, error) {
	w := Window{When: spec}
	f := strings.Fields(spec)
	if len(f) < 3 {
		return Window{}, fmt.Errorf("%q: want DAYS HH:MM-HH:MM ZONE, e.g. \"Tue 03:00-05:00 Europe/Berlin\"", spec)
	}
	loc, err := time.LoadLocation(f[len(f)-1])
	if err != nil {
		return Window{}, fmt.Errorf("%q: time zone %q: want an IANA name such as Europe/Berlin or UTC", spec, f[len(f)-1])
	}
	w.loc = loc
	from, to, ok := strings.Cut(f[len(f)-2], "-")
	if !ok {
		return Window{}, fmt.Errorf("%q: %q: want HH:MM-HH:MM", spec, f[len(f)-2])
	}
	if w.start, err = parseClock(from); err != nil {
		return Window{}, fmt.Errorf("%q: %w", spec, err)
	}
	if w.end, err = parseClock(to); err != nil {
		return Window{}, fmt.Errorf("%q: %w", spec, err)
	}
	if w.start == w.end {
		return Window{}, fmt.Errorf("%q: the window is empty", spec)
	}
	days := f[:len(f)-2]
	// "of the month", "of month", "of every month"
	if n := len(days); n >= 2 && strings.EqualFold(days[n-1], "month") {
		days = days[:n-1]
		for len(days) > 0 && (strings.EqualFold(days[len(days)-1], "the") || strings.EqualFold(days[len(days)-1], "every") || strings.EqualFold(days[len(days)-1], "of")) {
			days = days[:len(days)-1]
		}
	}
	switch {
	case len(days) == 1 && (strings.EqualFold(days[0], "daily") || strings.EqualFold(days[0], "every-day")):
		for i := range w.days {
			w.days[i] = true
		}
	case len(days) == 2 && ordinals[strings.ToLower(days[0])] != 0:
		d, ok := parseWeekday(days[1])
		if !ok {
			return Window{}, fmt.Errorf("%q: %q is not a weekday", spec, days[1])
		}
		w.nth, w.nthDay = ordinals[strings.ToLower(days[0])], d
	case len(days) == 1:
		for _, part := range strings.Split(days[0], ",") {
			a, b, isRange := strings.Cut(part, "-")
			da, ok := parseWeekday(a)
			if !ok {
				return Window{}, fmt.Errorf("%q: %q is not a weekday", spec, a)
			}
			if !isRange {
				w.days[da] = true
				continue
			}
			db, ok := parseWeekday(b)
			if !ok {
				return Window{}, fmt.Errorf("%q: %q is not a weekday", spec, b)
			}
			for d := da; ; d = (d + 1) % 7 {
				w.days[d] = true
				if d == db {
					break
				}
			}
		}
	default:
		return Window{}, fmt.Errorf("%q: days %q: want a weekday list (Tue, Mon-Fri, Sat,Sun), daily, or an ordinal weekday (second Sunday of the month)", spec, strings.Join(days, " "))
	}
	return w, nil
}

func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) || len(m) != 2 {
		return 0, fmt.Errorf("time %q: want HH:MM", s)
	}
	return hh*60 + mm, nil
}

// matchesDay tells whether the window opens on the calendar day of t (in
// the window's zone).
func (w *Window) matchesDay(y int, m time.Month, d int) bool {
	wd := time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Weekday()
	if w.nth == 0 {
		return w.days[wd]
	}
	if wd != w.nthDay {
		return false
	}
	if w.nth > 0 {
		return (d-1)/7+1 == w.nth
	}
	// last: a week later is another month
	return time.Date(y, m, d+7, 12, 0, 0, 0, time.UTC).Month() != m
}

// Slot is one occurrence of a window.
type Slot struct {
	Window string    `json:"window"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Zone   string    `json:"zone"`
}

// Next returns the occurrence of the window that is open at now or opens
// next. Local times that a daylight saving change skips open (or close)
// the window at the change; repeated ones take the first.
func (w *Window) Next(now time.Time) (Slot, bool) {
	local := now.In(w.loc)
	y, m, d := local.Date()
	for i := -1; i < 400; i++ {
		dy, dm, dd := time.Date(y, m, d+i, 12, 0, 0, 0, time.UTC).Date()
		if !w.matchesDay(dy, dm, dd) {
			continue
		}
		start := skippedToChange(time.Date(dy, dm, dd, w.start/60, w.start%60, 0, 0, w.loc), w.start)
		endDay := dd
		if w.end <= w.start {
			endDay++
		}
		end := skippedToChange(time.Date(dy, dm, endDay, w.end/60, w.end%60, 0, 0, w.loc), w.end)
		if !end.After(start) {
			continue
		}
		if end.After(now) {
			return Slot{Window: w.Name, Start: start.UTC(), End: end.UTC(), Zone: w.loc.String()}, true
		}
	}
	return Slot{}, false
}

// skippedToChange moves a local time that a daylight saving change skips
// (time.Date moves it forward by the gap: 02:30 becomes 03:30 CEST) back to
// the change itself (03:00 CEST), the first local time after the gap.
// Without this "02:30-03:30" on that day would be a window of zero length.
func skippedToChange(t time.Time, minutes int) time.Time {
	if t.Hour()*60+t.Minute() == minutes%(24*60) {
		return t
	}
	from, _ := t.ZoneBounds()
	if from.IsZero() {
		return t
	}
	return from
}

// appliesTo tells whether the window is for host.
// AppliesTo reports whether the window covers the host named host (its
// Hosts globs; none: every host).
func (w *Window) AppliesTo(host string) bool { return w.appliesTo(host) }

func (w *Window) appliesTo(host string) bool {
	if len(w.Hosts) == 0 {
		return true
	}
	for _, g := range w.Hosts {
		if ok, _ := path.Match(g, host); ok {
			return true
		}
	}
	return false
}

// Contains reports whether the window is open at t.
func (w *Window) Contains(t time.Time) bool {
	s, ok := w.Next(t)
	return ok && !t.Before(s.Start)
}

// NextOpening returns when the window opens next after t (t itself when
// it opens exactly then); false when it never does within the next 400
// days.
func (w *Window) NextOpening(t time.Time) (time.Time, bool) {
	s, ok := w.Next(t)
	for ok && s.Start.Before(t) {
		s, ok = w.Next(s.End)
	}
	if !ok {
		return time.Time{}, false
	}
	return s.Start, true
}

// Location is the window's time zone.
func (w *Window) Location() *time.Location {
	if w.loc == nil {
		return time.UTC
	}
	return w.loc
}
