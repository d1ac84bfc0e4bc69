package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the USER_HZ unit of the CPU times in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcSample is one reading of a process's CPU time and memory.
type ProcSample struct {
	At time.Time
	// CPU is user plus system time since the process started.
	CPU time.Duration
	// RSSBytes is the resident set now; PeakRSSBytes the high-water mark
	// (VmHWM).
	RSSBytes     int64
	PeakRSSBytes int64
}

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	s.CPU, err = parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("pid %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	s.RSSBytes = parseStatusKiB(status, "VmRSS:") * 1024
	s.PeakRSSBytes = parseStatusKiB(status, "VmHWM:") * 1024
	return s, nil
}

// parseStatCPU returns utime+stime from a /proc/<pid>/stat line. The
// command name in brackets may hold spaces, so fields are counted after
// the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("stat has no ')' after the command name")
	}
	// Fields after ')' start at field 3 (state); utime is field 14 and
	// stime field 15.
	fields := strings.Fields(string(stat[end+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("stat has %d fields after the command, want at least 13",
			len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat CPU field %q: %w", f, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseStatusKiB returns the kB value of the line starting with name in a
// /proc/<pid>/status file; 0 when the line is missing.
func parseStatusKiB(status []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		fields := strings.Fields(strings.TrimPrefix(line, name))
		if len(fields) == 0 {
			return 0
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		return n
	}
	return 0
}

// CPUShare returns the share of one core used between two samples.
func CPUShare(from, to ProcSample) float64 {
	wall := to.At.Sub(from.At)
	if wall <= 0 {
		return 0
	}
	return float64(to.CPU-from.CPU) / float64(wall)
}

// Machine describes the host the benchmarks ran on.
type Machine struct {
	CPUModel    string
	Cores       int
	MemoryBytes int64
	Kernel      string
	GoVersion   string
}

// DescribeMachine reads /proc/cpuinfo, /proc/meminfo and the kernel
// release. Fields it cannot read stay empty.
func DescribeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok &&
				strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemoryBytes = parseStatusKiB(b, "MemTotal:") * 1024
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// String returns the description on one line.
func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %.1f GiB memory, Linux %s, %s",
		orUnknown(m.CPUModel), m.Cores, float64(m.MemoryBytes)/(1<<30),
		orUnknown(m.Kernel), m.GoVersion)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
