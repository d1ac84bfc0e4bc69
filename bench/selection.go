package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// SelectionRow summarises one selector at one fleet size over the
// benchmark's -count runs.
type SelectionRow struct {
	Name     string
	NsPerOp  Summary
	P99Ns    Summary
	AllocsOp Summary
	BytesOp  Summary
}

// RunSelection runs pkg/host's BenchmarkSelect with -benchmem in the
// module at root and summarises its output.
func RunSelection(ctx context.Context, root, goBin string, count int,
	benchtime time.Duration) ([]SelectionRow, error) {
	cmd := exec.CommandContext(ctx, goBin, "test", "-run", "^$",
		"-bench", "^BenchmarkSelect$", "-benchmem",
		"-count", strconv.Itoa(count), "-benchtime", benchtime.String(), "./pkg/host")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench in pkg/host: %w\n%s", err, out)
	}
	return ParseBenchOutput(strings.NewReader(string(out)))
}

// ParseBenchOutput reads `go test -bench` output and summarises each
// benchmark over its repeated lines, in order of first appearance. The
// "-N" GOMAXPROCS suffix is dropped from names.
func ParseBenchOutput(r io.Reader) ([]SelectionRow, error) {
	type samples struct{ ns, p99, allocs, bytes []float64 }
	byName := map[string]*samples{}
	var order []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := trimProcs(fields[0])
		s := byName[name]
		if s == nil {
			s = &samples{}
			byName[name] = s
			order = append(order, name)
		}
		// After the name and iteration count come value-unit pairs.
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: value %q: %w",
					sc.Text(), fields[i], err)
			}
			switch fields[i+1] {
			case "ns/op":
				s.ns = append(s.ns, v)
			case "p99-ns":
				s.p99 = append(s.p99, v)
			case "allocs/op":
				s.allocs = append(s.allocs, v)
			case "B/op":
				s.bytes = append(s.bytes, v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read benchmark output: %w", err)
	}
	rows := make([]SelectionRow, 0, len(order))
	for _, name := range order {
		s := byName[name]
		rows = append(rows, SelectionRow{
			Name: name, NsPerOp: Summarize(s.ns), P99Ns: Summarize(s.p99),
			AllocsOp: Summarize(s.allocs), BytesOp: Summarize(s.bytes),
		})
	}
	return rows, nil
}

// trimProcs drops a trailing "-<digits>" from a benchmark name.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// WorstP99 returns the largest median p99 of rows whose name ends with
// suffix, and that row's name; -1 when none does.
func WorstP99(rows []SelectionRow, suffix string) (float64, string) {
	worst, name := -1.0, ""
	for _, r := range rows {
		if strings.HasSuffix(r.Name, suffix) && r.P99Ns.N > 0 && r.P99Ns.Median > worst {
			worst, name = r.P99Ns.Median, r.Name
		}
	}
	return worst, name
}

// ProfileSelection runs one benchmark of BenchmarkSelect, such as
// "least_used/hosts=10000", with a CPU profile and returns its top.
func ProfileSelection(ctx context.Context, env *Env, root, name string) Profile {
	title := "pkg/host BenchmarkSelect/" + name
	path := filepath.Join(env.Dir, "select.pprof")
	cmd := exec.CommandContext(ctx, env.GoBin, "test", "-run", "^$",
		"-bench", "^BenchmarkSelect$/^"+regexp.QuoteMeta(name)+"$",
		"-benchtime", "2s", "-cpuprofile", path, "-o", filepath.Join(env.Dir, "host.test"),
		"./pkg/host")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return Profile{Title: title, Top: fmt.Sprintf("not taken: %v\n%s", err, out)}
	}
	return Profile{Title: title, Top: pprofTop(env, path)}
}
