package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// NotesMarker starts the hand-written part of the report file, which
// WriteMarkdown's caller keeps when it rewrites the file.
const NotesMarker = "<!-- notes below this line are kept by make bench -->"

// Targets of the fleet, selection and agent figures.
const (
	selectionP99Target = 100 * time.Microsecond
	coordRSSTarget     = 1 << 30
	agentRSSTarget     = 40 << 20
	agentCPUTarget     = 0.01
	// detectSlack is added to the lease TTL for the detection target.
	detectSlack = time.Second
)

// WriteMarkdown writes the report as Markdown.
func (r *Report) WriteMarkdown(w io.Writer) {
	mode := "full"
	if r.Quick {
		mode = "quick (BENCH_QUICK=1)"
	}
	fmt.Fprintf(w, "# Benchmarks\n\n")
	fmt.Fprintf(w, "Written by `make bench` (scripts/bench.sh, which runs "+
		"bench/cmd/remotegpu-bench). Do not edit above the notes marker: the "+
		"next run replaces it.\n\n")
	fmt.Fprintf(w, "- Date: %s\n", r.Started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "- Machine: %s\n", r.Machine)
	fmt.Fprintf(w, "- Mode: %s; the run took %s\n", mode, r.Took.Round(time.Second))
	fmt.Fprintf(w, "- Figures are the median and, in brackets, the min–max over "+
		"the runs. Ratios are taken per run against the etcd CAS run made just "+
		"before, then summarised, so machine noise affects both sides alike.\n\n")

	r.writeTargets(w)
	r.writeThroughput(w)
	r.writeSelection(w)
	r.writeScale(w)
	r.writeAgent(w)
	r.writeProfiles(w)
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "## Failed scenarios\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(w, "- %s\n", oneLine(e))
		}
		fmt.Fprintln(w)
	}
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func (r *Report) writeTargets(w io.Writer) {
	fmt.Fprintf(w, "## Targets\n\n| Target | Measured | Result |\n|---|---|---|\n")
	if t := r.Throughput; t != nil {
		for _, row := range t.Rows {
			for _, m := range row.Modes {
				target := modeTarget(m.Name)
				ok := m.Ratio.N > 0 && m.Ratio.Median >= target
				extra := ""
				if m.Name == "contended" {
					ok = ok && t.Overcommitted == 0
					extra = fmt.Sprintf(", overcommitted hosts %d", t.Overcommitted)
				}
				fmt.Fprintf(w, "| %s allocation ≥ %.1f× etcd CAS at concurrency %d%s | %s%s | %s |\n",
					m.Name, target, row.Concurrency, zeroOvercommit(m.Name),
					m.Ratio.Format("%.2f", "×"), extra, verdict(ok))
			}
		}
	}
	if p99, name := WorstP99(r.Selection, "/hosts=10000"); p99 >= 0 {
		d := time.Duration(p99)
		fmt.Fprintf(w, "| selection p99 < %s at 10,000 hosts, every strategy | "+
			"worst %s (%s) | %s |\n", selectionP99Target, d.Round(100*time.Nanosecond),
			strings.TrimPrefix(name, "BenchmarkSelect/"), verdict(d < selectionP99Target))
	}
	for _, s := range r.Scale {
		r.writeScaleTargets(w, s)
	}
	if a := r.Agent; a != nil {
		fmt.Fprintf(w, "| agent peak RSS < 40 MiB | %.1f MiB | %s |\n",
			mib(a.PeakRSSBytes), verdict(a.PeakRSSBytes < agentRSSTarget))
		fmt.Fprintf(w, "| agent CPU < 1 %% of one core | %.2f %% | %s |\n",
			100*a.CPUShare, verdict(a.CPUShare < agentCPUTarget))
	}
	fmt.Fprintln(w)
}

func zeroOvercommit(mode string) string {
	if mode == "contended" {
		return ", zero overcommit"
	}
	return ""
}

func (r *Report) writeScaleTargets(w io.Writer, s *ScaleResult) {
	limit := s.TTL + detectSlack
	p99 := DurationQuantile(s.Detect, 0.99)
	fmt.Fprintf(w, "| %d agents: coordinator peak RSS < 1 GiB | %.0f MiB | %s |\n",
		s.Hosts, mib(s.PeakRSSBytes), verdict(s.PeakRSSBytes < coordRSSTarget))
	fmt.Fprintf(w, "| %d agents: detection p99 ≤ TTL + 1 s (%s), all detected, "+
		"no false positives | p99 %s, undetected %d, false positives %d | %s |\n",
		s.Hosts, limit, p99.Round(time.Millisecond), s.Undetected, s.FalsePositives,
		verdict(len(s.Detect) > 0 && p99 <= limit && s.Undetected == 0 && s.FalsePositives == 0))
}

func (r *Report) writeThroughput(w io.Writer) {
	t := r.Throughput
	if t == nil {
		return
	}
	fmt.Fprintf(w, "## 1–2. etcd compare-and-swap and allocation throughput\n\n")
	fmt.Fprintf(w, "%d runs of %s per cell. *etcd CAS*: `Txn(If ModRevision == x "+
		"Then Put)` of a 512-byte value on one key per worker, through one "+
		"clientv3 client, on the embedded member the coordinators use. "+
		"*Allocation*: allocate (1 CPU, 1 GiB, 1 GPU) then release through "+
		"pkg/client, workers split over two `remotegpu-coordinator serve "+
		"--etcd-endpoints` processes sharing that member; *spread* has 100 "+
		"simulated hosts, *contended* 4 (32 GPUs in all). Latency is of the "+
		"whole allocate+release cycle. *no cap.* counts 409 no_capacity "+
		"answers, *gave up* 409 conflict and 503 answers (every CAS attempt "+
		"lost a race). *CAS conflicts* (lost transactions of allocations and "+
		"releases) and *retries* (allocation commit attempts after the first) "+
		"come from the coordinators' /metrics. *writes/cycle* is etcd revision growth per cycle; "+
		"*coord. CPU/cycle* the two coordinator processes' CPU time per "+
		"cycle.\n\n",
		t.Runs, t.Duration)
	fmt.Fprintf(w, "| Workers | etcd CAS txn/s | CAS p99 ms | Fleet | cycles/s | "+
		"ratio to CAS | p50 ms | p99 ms | no cap. | gave up | CAS conflicts | "+
		"retries | writes/cycle | coord. CPU/cycle ms |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range t.Rows {
		for i, m := range row.Modes {
			cas, casP99 := row.CAS.Format("%.0f", ""), row.CASP99.Format("%.1f", "")
			if i > 0 {
				cas, casP99 = "″", "″"
			}
			fmt.Fprintf(w, "| %d | %s | %s | %s (%d hosts) | %s | %s | %s | %s | %d | %d | %s | %s | %s | %s |\n",
				row.Concurrency, cas, casP99, m.Name, m.Hosts,
				m.Rate.Format("%.0f", ""), m.Ratio.Format("%.2f", "×"),
				m.P50.Format("%.1f", ""), m.P99.Format("%.1f", ""),
				m.NoCapacity, m.GaveUp, counted(m.CASConflicts), counted(m.Retries),
				m.WritesPerOp.Format("%.1f", ""), m.CoordCPUPerOp.Format("%.2f", ""))
		}
	}
	fmt.Fprintf(w, "\nInvariant check after all runs (integration/harness.CheckInvariants), "+
		"%d violations:\n\n", t.Violations)
	for _, l := range t.Invariants {
		fmt.Fprintf(w, "- %s\n", l)
	}
	fmt.Fprintln(w)
}

// counted formats a /metrics total, negative when there was none.
func counted(v float64) string {
	if v < 0 {
		return "n/a (no /metrics)"
	}
	return fmt.Sprintf("%.0f", v)
}

func (r *Report) writeSelection(w io.Writer) {
	if len(r.Selection) == 0 {
		return
	}
	fmt.Fprintf(w, "## 3. Host selection (pkg/host BenchmarkSelect)\n\n")
	fmt.Fprintf(w, "`go test -bench ^BenchmarkSelect$ -benchmem` over runs of "+
		"`-count`; a request for 4 CPUs, 16 GiB, 1 GPU over hosts with random "+
		"usage. p99 is of single Select calls timed inside the benchmark.\n\n")
	fmt.Fprintf(w, "| Strategy / hosts | ns/op | p99 µs | allocs/op | B/op |\n|---|---|---|---|---|\n")
	for _, s := range r.Selection {
		p99 := s.P99Ns
		p99.Median, p99.Min, p99.Max = p99.Median/1e3, p99.Min/1e3, p99.Max/1e3
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n",
			strings.TrimPrefix(s.Name, "BenchmarkSelect/"),
			s.NsPerOp.Format("%.0f", ""), p99.Format("%.1f", ""),
			s.AllocsOp.Format("%.0f", ""), s.BytesOp.Format("%.0f", ""))
	}
	fmt.Fprintln(w)
}

func (r *Report) writeScale(w io.Writer) {
	if len(r.Scale) == 0 {
		return
	}
	fmt.Fprintf(w, "## 4. Fleet scale\n\n")
	fmt.Fprintf(w, "Simulated agents, each with its own lease (TTL %s, renewed "+
		"by clientv3 every TTL/3) and an info and status document of 8 GPUs, "+
		"status rewritten every %s like an idle agent, all over one clientv3 "+
		"client in the bench process, against a fresh embedded etcd member and "+
		"one `remotegpu-coordinator serve --etcd-endpoints` process. *Cold "+
		"start*: process start to /readyz 200, and to GET /v1/hosts listing "+
		"every host healthy. *Steady state*: etcd revision growth (writes), "+
		"keepalive responses and coordinator CPU over the window. "+
		"*Detection*: the keepalives of %d agents stop at once; each one's "+
		"GET /v1/hosts/{id}/health is polled until unhealthy, while the full "+
		"host list is checked every 2 s for live hosts not healthy.\n\n",
		scaleTTL, scaleStatusInterval, killBatch)
	fmt.Fprintf(w, "| Agents | register | ready | view built | window | etcd writes/s | "+
		"keepalives/s | coordinator CPU | coordinator peak RSS | detection p50 / p99 / max | "+
		"after lease end p50 / p99 / max | undetected | false positives |\n"+
		"|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Scale {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %.0f | %.0f | %.1f %% | %.0f MiB | %s | %s | %d | %d |\n",
			s.Hosts, s.Register.Round(100*time.Millisecond), s.Ready.Round(time.Millisecond),
			s.View.Round(time.Millisecond), s.Window, s.WritesPerSec, s.KeepAlivesPS,
			100*s.CoordCPU, mib(s.PeakRSSBytes),
			spreadOf(s.Detect), spreadOf(s.AfterLeaseEnd),
			s.Undetected, s.FalsePositives)
	}
	fmt.Fprintf(w, "\nDetection starts when the keepalive stops, so it includes "+
		"up to one TTL for the lease to run out (less the time since the last "+
		"renewal), etcd's expiry check, the watch event and the coordinator's "+
		"view update. *After lease end* starts at the last renewal the bench "+
		"process received plus the TTL: it is etcd's expiry check, the watch "+
		"and the coordinator alone, plus the polling period (about 30 ms).\n\n")
}

// spreadOf formats the p50, p99 and max of ds.
func spreadOf(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s / %s / %s",
		DurationQuantile(ds, 0.5).Round(time.Millisecond),
		DurationQuantile(ds, 0.99).Round(time.Millisecond),
		DurationQuantile(ds, 1).Round(time.Millisecond))
}

func (r *Report) writeAgent(w io.Writer) {
	a := r.Agent
	if a == nil {
		return
	}
	fmt.Fprintf(w, "## 5. Agent footprint\n\n")
	fmt.Fprintf(w, "One `remotegpu-agent run` with the default --interval and "+
		"--ttl, real CPU and memory collectors and the simulated 8-GPU backend "+
		"(`--gpu-backend mock-dgxa100`, since the machine may have no GPU), "+
		"against the embedded etcd member, measured from /proc/<pid>/stat and "+
		"status over %s after its first status write.\n\n", a.Window)
	rss := Summarize(a.RSS)
	fmt.Fprintf(w, "| CPU (share of one core) | RSS per second | peak RSS (VmHWM) |\n|---|---|---|\n")
	fmt.Fprintf(w, "| %.2f %% | %.1f MiB (%.1f–%.1f) | %.1f MiB |\n\n",
		100*a.CPUShare, mib(int64(rss.Median)), mib(int64(rss.Min)), mib(int64(rss.Max)),
		mib(a.PeakRSSBytes))
}

func (r *Report) writeProfiles(w io.Writer) {
	if len(r.Profiles) == 0 {
		return
	}
	fmt.Fprintf(w, "## CPU profiles where a target was missed\n\n")
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "### %s\n\n```\n%s\n```\n\n", p.Title, strings.TrimSpace(p.Top))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
