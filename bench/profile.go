package bench

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Profile is the top of one CPU profile.
type Profile struct {
	Title string
	// Top is `go tool pprof -top` output, or why there is none.
	Top string
}

// profileSeconds is the length of each CPU profile.
const profileSeconds = 8

// Targets of the allocation throughput against raw etcd CAS.
const (
	spreadTarget    = 0.7
	contendedTarget = 0.5
)

// Missed reports whether any allocation ratio is under its target.
func (t *ThroughputResult) Missed() bool {
	for _, row := range t.Rows {
		for _, m := range row.Modes {
			if m.Ratio.N > 0 && m.Ratio.Median < modeTarget(m.Name) {
				return true
			}
		}
	}
	return false
}

func modeTarget(name string) float64 {
	if name == "contended" {
		return contendedTarget
	}
	return spreadTarget
}

// profileThroughput reruns spread allocation cycles at concurrency 32 and
// profiles, at the same time, this process (the embedded etcd and the
// load generator) and one coordinator through /debug/pprof when it serves
// one.
func profileThroughput(ctx context.Context, env *Env) []Profile {
	f, err := StartAllocFleet(ctx, env, "profile", 100, 32)
	if err != nil {
		return []Profile{{Title: "allocation profile", Top: "not taken: " + err.Error()}}
	}
	defer f.Close()
	env.Logf("profiling allocation cycles at concurrency 32 for %ds", profileSeconds)

	var wg sync.WaitGroup
	var coordTop string
	wg.Go(func() { coordTop = profileProcess(ctx, env, f.Coords[0]) })
	selfTop := profileSelf(env, func() {
		_, _ = f.Run(ctx, 32, profileSeconds*time.Second+time.Second)
	})
	wg.Wait()
	return []Profile{
		{Title: "coordinator process during allocate+release at concurrency 32",
			Top: coordTop},
		{Title: "bench process (embedded etcd server and HTTP load) during " +
			"allocate+release at concurrency 32", Top: selfTop},
	}
}

// profileSelf profiles this process while work runs.
func profileSelf(env *Env, work func()) string {
	path := filepath.Join(env.Dir, "self.pprof")
	out, err := os.Create(path)
	if err != nil {
		return "not taken: " + err.Error()
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		return "not taken: " + err.Error()
	}
	work()
	pprof.StopCPUProfile()
	return pprofTop(env, path)
}

// profileProcess takes a CPU profile of a coordinator from its
// /debug/pprof/profile, or with Linux perf when it serves none.
func profileProcess(ctx context.Context, env *Env, c *Coordinator) string {
	top, served := profileRemote(ctx, env, c.URL)
	if served {
		return top
	}
	perfTop, err := profilePerf(ctx, env, c.PID())
	if err != nil {
		return top + "\nperf fallback failed: " + err.Error()
	}
	return "(Linux perf, " + strconv.Itoa(perfHz) + " Hz; " +
		"the coordinator serves no /debug/pprof)\n" + perfTop
}

// perfHz is the sampling frequency of the perf fallback.
const perfHz = 499

// profilePerf samples pid with perf record and returns the 20 symbols
// with the most self time.
func profilePerf(ctx context.Context, env *Env, pid int) (string, error) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return "", fmt.Errorf("perf is not installed: %w", err)
	}
	path := filepath.Join(env.Dir, "coordinator.perf")
	rec := exec.CommandContext(ctx, perf, "record", "-F", strconv.Itoa(perfHz),
		"-p", strconv.Itoa(pid), "-o", path, "--", "sleep", strconv.Itoa(profileSeconds))
	if out, err := rec.CombinedOutput(); err != nil {
		return "", fmt.Errorf("perf record: %w: %s", err, out)
	}
	rep := exec.CommandContext(ctx, perf, "report", "-i", path, "--stdio",
		"--sort", "symbol", "-F", "overhead,sym")
	out, err := rep.Output()
	if err != nil {
		return "", fmt.Errorf("perf report: %w", err)
	}
	return topPerfLines(string(out), 20), nil
}

// topPerfLines returns the n lines of a perf report with the highest
// percentages, highest first.
func topPerfLines(report string, n int) string {
	type line struct {
		pct  float64
		text string
	}
	var lines []line
	for _, l := range strings.Split(report, "\n") {
		l = strings.TrimRight(l, " -")
		pct, _, ok := strings.Cut(strings.TrimSpace(l), "%")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		v, err := strconv.ParseFloat(pct, 64)
		if err != nil {
			continue
		}
		lines = append(lines, line{v, l})
	}
	slices.SortStableFunc(lines, func(a, b line) int { return cmp.Compare(b.pct, a.pct) })
	var b strings.Builder
	for i, l := range lines {
		if i == n {
			break
		}
		b.WriteString(l.text + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// profileRemote fetches a CPU profile from url's /debug/pprof/profile.
// served is false when the process has no such endpoint.
func profileRemote(ctx context.Context, env *Env, url string) (top string, served bool) {
	ctx, cancel := context.WithTimeout(ctx, (profileSeconds+20)*time.Second)
	defer cancel()
	u := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", url, profileSeconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "not taken: " + err.Error(), false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "not taken: " + err.Error(), false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "not taken: " + err.Error(), false
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("GET /debug/pprof/profile returned HTTP %d", resp.StatusCode), false
	}
	path := filepath.Join(env.Dir, "coordinator.pprof")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		return "not taken: " + err.Error(), false
	}
	return pprofTop(env, path), true
}

// pprofTop returns the 30 functions with the most CPU time, callees
// included.
func pprofTop(env *Env, path string) string {
	cmd := exec.Command(env.GoBin, "tool", "pprof", "-top", "-cum", "-nodecount=30", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Sprintf("go tool pprof failed: %v\n%s", err, out.String())
	}
	// Drop pprof's header lines about the file and build.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "flat ") {
			return strings.Join(lines[max(0, i-2):], "\n")
		}
	}
	return out.String()
}
