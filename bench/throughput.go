package bench

import (
	"context"
	"fmt"
	"time"
)

// ThroughputRow is the result at one concurrency: raw etcd CAS, and
// allocation cycles spread over many hosts and contended on few, each
// with its per-run ratio to the CAS run taken just before it.
type ThroughputRow struct {
	Concurrency int
	CAS         Summary
	CASP99      Summary
	Modes       []ModeResult
}

// ModeResult is the allocation figures of one fleet at one concurrency.
type ModeResult struct {
	Name  string
	Hosts int
	Rate  Summary
	Ratio Summary
	P50   Summary
	P99   Summary
	// NoCapacity, GaveUp, CASConflicts and Retries are totals over all
	// runs; CASConflicts and Retries are negative when no /metrics
	// exposes them.
	NoCapacity   int64
	GaveUp       int64
	CASConflicts float64
	Retries      float64
	// WritesPerOp is etcd revisions per cycle; CoordCPUPerOp the
	// coordinators' CPU milliseconds per cycle.
	WritesPerOp   Summary
	CoordCPUPerOp Summary
}

// ThroughputResult is scenario 1 and 2 together.
type ThroughputResult struct {
	Runs     int
	Duration time.Duration
	Rows     []ThroughputRow
	// Invariants holds one line per fleet from the invariant checker;
	// Overcommitted sums overcommit violations over the fleets.
	Invariants    []string
	Violations    int
	Overcommitted int
}

// fleetSpec names an allocation fleet and its host count.
type fleetSpec struct {
	name  string
	hosts int
}

var throughputFleets = []fleetSpec{{"spread", 100}, {"contended", 4}}

// RunThroughput measures raw etcd CAS and allocation cycles at each
// concurrency. Runs alternate CAS, spread, contended, so each ratio
// compares runs taken seconds apart.
func RunThroughput(ctx context.Context, env *Env, concurrencies []int,
	runs int, d time.Duration) (*ThroughputResult, error) {
	maxWorkers := 0
	for _, c := range concurrencies {
		maxWorkers = max(maxWorkers, c)
	}
	var fleets []*AllocFleet
	defer func() {
		for _, f := range fleets {
			f.Close()
		}
	}()
	for _, spec := range throughputFleets {
		f, err := StartAllocFleet(ctx, env, spec.name, spec.hosts, maxWorkers)
		if err != nil {
			return nil, fmt.Errorf("start %s fleet: %w", spec.name, err)
		}
		fleets = append(fleets, f)
	}

	res := &ThroughputResult{Runs: runs, Duration: d}
	for _, c := range concurrencies {
		row, err := throughputRow(ctx, env, fleets, c, runs, d)
		if err != nil {
			return nil, err
		}
		res.Rows = append(res.Rows, row)
	}
	for _, f := range fleets {
		rep, err := f.Check(ctx, env)
		if err != nil {
			return nil, fmt.Errorf("check invariants of %s fleet: %w", f.Name, err)
		}
		res.Invariants = append(res.Invariants, f.Name+": "+rep.Summary())
		res.Violations += len(rep.Violations)
		res.Overcommitted += rep.Overcommitted
	}
	return res, nil
}

func throughputRow(ctx context.Context, env *Env, fleets []*AllocFleet,
	c, runs int, d time.Duration) (ThroughputRow, error) {
	row := ThroughputRow{Concurrency: c}
	var cas, casP99 []float64
	rates := make([][]float64, len(fleets))
	ratios := make([][]float64, len(fleets))
	p50s := make([][]float64, len(fleets))
	p99s := make([][]float64, len(fleets))
	modes := make([]ModeResult, len(fleets))
	writes := make([][]float64, len(fleets))
	coordCPU := make([][]float64, len(fleets))
	for r := range runs {
		prefix := fmt.Sprintf("/bench-cas/c%d/r%d", c, r)
		cr, err := RunCAS(ctx, env.Etcd.Client, prefix, c, d)
		if err != nil {
			return row, err
		}
		cas = append(cas, cr.Rate())
		casP99 = append(casP99, ms(DurationQuantile(cr.Latencies, 0.99)))
		for i, f := range fleets {
			ar, err := f.Run(ctx, c, d)
			if err != nil {
				return row, fmt.Errorf("%s fleet at concurrency %d: %w", f.Name, c, err)
			}
			rates[i] = append(rates[i], ar.Rate())
			if cr.Rate() > 0 {
				ratios[i] = append(ratios[i], ar.Rate()/cr.Rate())
			}
			p50s[i] = append(p50s[i], ms(DurationQuantile(ar.Latencies, 0.5)))
			p99s[i] = append(p99s[i], ms(DurationQuantile(ar.Latencies, 0.99)))
			writes[i] = append(writes[i], ar.WritesPerOp)
			coordCPU[i] = append(coordCPU[i], ms(ar.CoordCPUPerOp))
			modes[i].NoCapacity += ar.NoCapacity
			modes[i].GaveUp += ar.GaveUp
			if ar.CASConflicts < 0 || (r > 0 && modes[i].CASConflicts < 0) {
				modes[i].CASConflicts, modes[i].Retries = -1, -1
			} else {
				modes[i].CASConflicts += ar.CASConflicts
				modes[i].Retries += ar.Retries
			}
		}
		env.Logf("concurrency %d run %d/%d: cas %.0f/s, spread %.0f/s, contended %.0f/s",
			c, r+1, runs, cr.Rate(), rates[0][r], rates[len(rates)-1][r])
	}
	row.CAS, row.CASP99 = Summarize(cas), Summarize(casP99)
	for i, f := range fleets {
		m := modes[i]
		m.Name, m.Hosts = f.Name, f.Hosts
		m.Rate, m.Ratio = Summarize(rates[i]), Summarize(ratios[i])
		m.P50, m.P99 = Summarize(p50s[i]), Summarize(p99s[i])
		m.WritesPerOp, m.CoordCPUPerOp = Summarize(writes[i]), Summarize(coordCPU[i])
		row.Modes = append(row.Modes, m)
	}
	return row, nil
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
