package harness

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Names of the figures every scenario should record where they apply.
const (
	// FigureDetectionTime is from the fault to the moment the system
	// noticed it, such as a host turning unhealthy.
	FigureDetectionTime = "detection_time"
	// FigureRecoveryTime is from the end of the fault to full service.
	FigureRecoveryTime = "recovery_time"
	// FigureAcknowledged is the number of allocations acknowledged to
	// clients.
	FigureAcknowledged = "acknowledged"
	// FigureLost is the number of acknowledged allocations that vanished.
	FigureLost = "lost"
	// FigureOvercommitted is the number of overcommit and GPU-held-twice
	// violations found.
	FigureOvercommitted = "overcommitted"
)

// FiguresPrefix starts the one-line summary, so that
// go test -v ./integration/... | grep FIGURES collects every scenario.
const FiguresPrefix = "FIGURES"

// Figures records a scenario's measured numbers and logs them when the
// test ends, each on its own line and all together on one line:
//
//	FIGURES scenario=NAME detection_time=2.345s acknowledged=40 lost=0
//
// Durations are rounded to milliseconds in Go's duration syntax. It is
// safe for concurrent use.
type Figures struct {
	t        testing.TB
	scenario string

	// mu guards the fields below.
	mu       sync.Mutex
	keys     []string // in the order first set
	values   map[string]string
	reported bool
}

// NewFigures returns an empty record for scenario, which must be one word
// such as "etcd_leader_kill". The figures are logged when the test ends
// unless Report ran before.
func NewFigures(t testing.TB, scenario string) *Figures {
	t.Helper()
	if !validFigureName(scenario) {
		t.Fatalf("figures: invalid scenario name %q: use letters, digits, "+
			"'_', '-' and '.'", scenario)
	}
	f := &Figures{t: t, scenario: scenario, values: make(map[string]string)}
	t.Cleanup(f.reportOnce)
	return f
}

// Duration records a duration, rounded to milliseconds.
func (f *Figures) Duration(key string, d time.Duration) {
	f.set(key, d.Round(time.Millisecond).String())
}

// Since records the time passed since start.
func (f *Figures) Since(key string, start time.Time) time.Duration {
	d := time.Since(start)
	f.Duration(key, d)
	return d
}

// Count records a number.
func (f *Figures) Count(key string, n int) { f.set(key, strconv.Itoa(n)) }

// Set records a value that is one word.
func (f *Figures) Set(key, value string) {
	if strings.ContainsAny(value, " \t\n") || value == "" {
		f.t.Errorf("figures: value %q of %q must be one word", value, key)
		return
	}
	f.set(key, value)
}

// AddReport records the lost and overcommitted counts of an invariant
// check.
func (f *Figures) AddReport(r *InvariantReport) {
	f.Count(FigureLost, r.LostAcks)
	f.Count(FigureOvercommitted, r.Overcommitted)
}

func (f *Figures) set(key, value string) {
	if !validFigureName(key) {
		f.t.Errorf("figures: invalid key %q: use letters, digits, "+
			"'_', '-' and '.'", key)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.values[key]; !ok {
		f.keys = append(f.keys, key)
	}
	f.values[key] = value
}

// Get returns a recorded value and whether it was set.
func (f *Figures) Get(key string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.values[key]
	return v, ok
}

// Line returns the one-line summary.
func (f *Figures) Line() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	b.WriteString(FiguresPrefix + " scenario=" + f.scenario)
	for _, k := range f.keys {
		fmt.Fprintf(&b, " %s=%s", k, f.values[k])
	}
	return b.String()
}

// Report logs every figure and the one-line summary now; the end of the
// test then logs nothing more.
func (f *Figures) Report() {
	f.t.Helper()
	f.mu.Lock()
	f.reported = true
	f.mu.Unlock()
	f.log()
}

func (f *Figures) reportOnce() {
	f.mu.Lock()
	done := f.reported
	f.reported = true
	f.mu.Unlock()
	if !done {
		f.log()
	}
}

func (f *Figures) log() {
	f.t.Helper()
	f.mu.Lock()
	for _, k := range f.keys {
		f.t.Logf("figure %s %s = %s", f.scenario, k, f.values[k])
	}
	f.mu.Unlock()
	f.t.Log(f.Line())
}

func validFigureName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '_', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}
