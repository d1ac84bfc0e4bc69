package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Config selects what Run measures and how long.
type Config struct {
	// Quick runs the smoke version: fewer and shorter runs, 1,000 agents
	// only, a 20 s agent window.
	Quick bool
	// Root is the module root; CoordinatorBin and AgentBin the built
	// binaries; GoBin the go command for the selection benchmark.
	Root           string
	CoordinatorBin string
	AgentBin       string
	GoBin          string
	// TempDir holds etcd data and process logs; os.TempDir() when empty.
	TempDir string
	// Progress receives one line per finished step; none when nil.
	Progress io.Writer
	// Skip names scenarios to leave out: "throughput", "selection",
	// "scale", "agent".
	Skip map[string]bool
}

// plan is the run counts and durations of one mode.
type plan struct {
	concurrencies  []int
	runs           int
	runDuration    time.Duration
	selectionCount int
	benchtime      time.Duration
	scaleSizes     []int
	scaleWindow    time.Duration
	agentWindow    time.Duration
}

func (cfg Config) plan() plan {
	if cfg.Quick {
		return plan{
			concurrencies: []int{1, 8, 32, 128}, runs: 3, runDuration: time.Second,
			selectionCount: 2, benchtime: 100 * time.Millisecond,
			scaleSizes: []int{1_000}, scaleWindow: 10 * time.Second,
			agentWindow: 20 * time.Second,
		}
	}
	return plan{
		concurrencies: []int{1, 8, 32, 128}, runs: 5, runDuration: 3 * time.Second,
		selectionCount: 5, benchtime: 500 * time.Millisecond,
		scaleSizes: []int{1_000, 10_000}, scaleWindow: 30 * time.Second,
		agentWindow: 60 * time.Second,
	}
}

// Env is the state the scenarios share: a folder, an etcd member and
// the binaries.
type Env struct {
	Dir            string
	Etcd           *Etcd
	CoordinatorBin string
	AgentBin       string
	GoBin          string
	progress       io.Writer
}

// Logf writes one progress line.
func (e *Env) Logf(format string, args ...any) {
	if e.progress != nil {
		fmt.Fprintf(e.progress, "bench: "+format+"\n", args...)
	}
}

// Report is every figure of one Run.
type Report struct {
	Machine    Machine
	Started    time.Time
	Took       time.Duration
	Quick      bool
	Throughput *ThroughputResult
	Selection  []SelectionRow
	Scale      []*ScaleResult
	Agent      *AgentResult
	// Profiles maps a title to the top functions of a CPU profile taken
	// where a target was missed.
	Profiles []Profile
	// Errors lists scenarios that failed; the others still report.
	Errors []string
}

// Run measures every scenario not skipped. A failing scenario is
// recorded in Report.Errors and the others still run.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	p := cfg.plan()
	rep := &Report{Machine: DescribeMachine(), Started: time.Now(), Quick: cfg.Quick}
	dir, err := os.MkdirTemp(cfg.TempDir, "remotegpu-bench-")
	if err != nil {
		return nil, fmt.Errorf("create bench folder: %w", err)
	}
	env := &Env{Dir: dir, CoordinatorBin: cfg.CoordinatorBin, AgentBin: cfg.AgentBin,
		GoBin: cfg.GoBin, progress: cfg.Progress}
	env.Etcd, err = StartEtcd(dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = env.Etcd.Close()
		_ = os.RemoveAll(dir)
	}()

	fail := func(name string, err error) {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", name, err))
		env.Logf("%s failed: %v", name, err)
	}
	if !cfg.Skip["throughput"] {
		rep.Throughput, err = RunThroughput(ctx, env, p.concurrencies, p.runs, p.runDuration)
		if err != nil {
			fail("throughput", err)
		} else if rep.Throughput.Missed() {
			rep.Profiles = append(rep.Profiles, profileThroughput(ctx, env)...)
		}
	}
	if !cfg.Skip["selection"] {
		env.Logf("selection: go test -bench BenchmarkSelect -count %d", p.selectionCount)
		rep.Selection, err = RunSelection(ctx, cfg.Root, cfg.GoBin, p.selectionCount, p.benchtime)
		if err != nil {
			fail("selection", err)
		}
		worst, name := WorstP99(rep.Selection, "/hosts=10000")
		if worst >= float64(selectionP99Target) {
			name = strings.TrimPrefix(name, "BenchmarkSelect/")
			rep.Profiles = append(rep.Profiles, ProfileSelection(ctx, env, cfg.Root, name))
		}
	}
	if !cfg.Skip["scale"] {
		for _, n := range p.scaleSizes {
			r, err := RunScale(ctx, env, n, p.scaleWindow)
			if err != nil {
				fail(fmt.Sprintf("scale %d", n), err)
				continue
			}
			rep.Scale = append(rep.Scale, r)
		}
	}
	if !cfg.Skip["agent"] {
		env.Logf("agent: measuring for %s", p.agentWindow)
		rep.Agent, err = RunAgent(ctx, env, p.agentWindow)
		if err != nil {
			fail("agent", err)
		}
	}
	rep.Took = time.Since(rep.Started)
	if ctx.Err() != nil {
		return rep, errors.Join(ctx.Err(), fmt.Errorf("bench interrupted"))
	}
	return rep, nil
}
