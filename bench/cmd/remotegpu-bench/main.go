// Command remotegpu-bench measures remotegpu on this machine and writes
// the results as Markdown to stdout and to --out. make bench runs it
// through scripts/bench.sh.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/YoungBoyGod/remotegpu/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "remotegpu-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := bench.Config{Progress: os.Stderr}
	var out, skip string
	flag.BoolVar(&cfg.Quick, "quick", os.Getenv("BENCH_QUICK") == "1",
		"run the smoke version, about 2 minutes (default from BENCH_QUICK=1)")
	flag.StringVar(&cfg.Root, "root", ".", "module root of remotegpu")
	flag.StringVar(&cfg.CoordinatorBin, "coordinator", "bin/remotegpu-coordinator",
		"remotegpu-coordinator binary")
	flag.StringVar(&cfg.AgentBin, "agent", "bin/remotegpu-agent", "remotegpu-agent binary")
	flag.StringVar(&cfg.GoBin, "go", "go", "go command for the selection benchmark and pprof")
	flag.StringVar(&out, "out", "docs/benchmarks.md",
		"Markdown file to write; its notes section is kept; empty writes none")
	flag.StringVar(&skip, "skip", "",
		"comma-separated scenarios to leave out: throughput, selection, scale, agent")
	flag.Parse()

	cfg.Skip = map[string]bool{}
	for _, s := range strings.Split(skip, ",") {
		switch s = strings.TrimSpace(s); s {
		case "":
		case "throughput", "selection", "scale", "agent":
			cfg.Skip[s] = true
		default:
			return fmt.Errorf("invalid -skip entry %q: use throughput, selection, "+
				"scale or agent", s)
		}
	}
	for _, p := range []*string{&cfg.CoordinatorBin, &cfg.AgentBin} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("binary %s: %w; run make build first", abs, err)
		}
		*p = abs
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, runErr := bench.Run(ctx, cfg)
	if rep == nil {
		return runErr
	}
	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	os.Stdout.Write(md.Bytes())
	if out != "" {
		if err := writeKeepingNotes(out, md.Bytes()); err != nil {
			return errors.Join(runErr, err)
		}
		fmt.Fprintf(os.Stderr, "remotegpu-bench: wrote %s\n", out)
	}
	if runErr == nil && len(rep.Errors) > 0 {
		runErr = fmt.Errorf("%d scenarios failed", len(rep.Errors))
	}
	return runErr
}

// writeKeepingNotes writes generated to path, followed by the notes marker
// and whatever followed the marker in the file before.
func writeKeepingNotes(path string, generated []byte) error {
	notes := "\n"
	if old, err := os.ReadFile(path); err == nil {
		if _, after, ok := strings.Cut(string(old), bench.NotesMarker); ok {
			notes = after
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create folder of %s: %w", path, err)
	}
	content := string(generated) + bench.NotesMarker + notes
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
