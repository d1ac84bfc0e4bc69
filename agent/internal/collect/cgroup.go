package collect

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Default locations of the cgroup file system and of the process's own
// cgroup membership.
const (
	DefaultCgroupRoot = "/sys/fs/cgroup"
	DefaultSelfCgroup = "/proc/self/cgroup"
)

// v1Unlimited is the smallest cgroup v1 memory limit treated as "no limit":
// the kernel reports an unlimited group as a page-aligned value near
// math.MaxInt64.
const v1Unlimited = int64(1) << 62

// CgroupLimits are the CPU and memory limits of the agent's cgroup. A zero
// field means that no limit was found.
type CgroupLimits struct {
	// CPU is the CPU quota in cores (quota divided by period).
	CPU float64
	// Memory is the memory limit in bytes.
	Memory int64
	// Version is "v1" or "v2" when a cgroup file system was found.
	Version string
	// CPUFile and MemoryFile are the files the limits came from.
	CPUFile    string
	MemoryFile string

	// memoryDir is the cgroup folder with the tightest memory limit; its
	// usage gives the headroom left under the limit.
	memoryDir string
}

// cgroupPaths maps a controller name ("" for cgroup v2) to the process's
// path in that hierarchy, parsed from /proc/self/cgroup.
type cgroupPaths map[string]string

func readSelfCgroup(path string) (cgroupPaths, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	paths := make(cgroupPaths)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Each line is "hierarchy-ID:controller-list:path".
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			paths[""] = parts[2]
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			paths[ctrl] = parts[2]
		}
	}
	return paths, sc.Err()
}

// ReadCgroupLimits returns the CPU and memory limits of the process's cgroup
// under root, using the membership listed in selfCgroup. It walks from the
// process's cgroup up to the root and keeps the tightest limit, because a
// parent's limit applies to its children. Missing files mean "no limit".
func ReadCgroupLimits(root, selfCgroup string) (CgroupLimits, error) {
	paths, err := readSelfCgroup(selfCgroup)
	if errors.Is(err, os.ErrNotExist) {
		return CgroupLimits{}, nil
	}
	if err != nil {
		return CgroupLimits{}, fmt.Errorf("read %s: %w", selfCgroup, err)
	}

	// A cgroup v2 (unified) hierarchy mounted at root lists its
	// controllers in cgroup.controllers.
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		return readV2Limits(root, paths[""])
	}
	return readV1Limits(root, paths)
}

func readV2Limits(root, self string) (CgroupLimits, error) {
	lim := CgroupLimits{Version: "v2"}
	for _, dir := range ancestors(root, self) {
		cpuFile := filepath.Join(dir, "cpu.max")
		if cores, ok, err := readV2CPUMax(cpuFile); err != nil {
			return lim, err
		} else if ok && (lim.CPU == 0 || cores < lim.CPU) {
			lim.CPU, lim.CPUFile = cores, cpuFile
		}

		memFile := filepath.Join(dir, "memory.max")
		if bytes, ok, err := readLimitFile(memFile, "max"); err != nil {
			return lim, err
		} else if ok && (lim.Memory == 0 || bytes < lim.Memory) {
			lim.Memory, lim.MemoryFile, lim.memoryDir = bytes, memFile, dir
		}
	}
	return lim, nil
}

func readV1Limits(root string, paths cgroupPaths) (CgroupLimits, error) {
	lim := CgroupLimits{}
	for _, dir := range ancestors(v1Mount(root, "cpu"), paths["cpu"]) {
		cores, ok, err := readV1CPUQuota(dir)
		if err != nil {
			return lim, err
		}
		if ok && (lim.CPU == 0 || cores < lim.CPU) {
			lim.CPU = cores
			lim.CPUFile = filepath.Join(dir, "cpu.cfs_quota_us")
		}
		lim.Version = "v1"
	}
	for _, dir := range ancestors(v1Mount(root, "memory"), paths["memory"]) {
		memFile := filepath.Join(dir, "memory.limit_in_bytes")
		bytes, ok, err := readLimitFile(memFile, "")
		if err != nil {
			return lim, err
		}
		if ok && bytes < v1Unlimited && (lim.Memory == 0 || bytes < lim.Memory) {
			lim.Memory, lim.MemoryFile, lim.memoryDir = bytes, memFile, dir
		}
		lim.Version = "v1"
	}
	return lim, nil
}

// v1Mount returns the folder where a cgroup v1 controller is mounted; the
// cpu controller is often mounted together with cpuacct.
func v1Mount(root, controller string) string {
	names := []string{controller}
	if controller == "cpu" {
		names = append(names, "cpu,cpuacct")
	}
	for _, name := range names {
		dir := filepath.Join(root, name)
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
	}
	return filepath.Join(root, controller)
}

// ancestors returns the existing folders from mount/self up to mount. In a
// container without a cgroup namespace the listed path does not exist under
// the container's own mount; then only the mount itself is read.
func ancestors(mount, self string) []string {
	var dirs []string
	rel := filepath.Clean("/" + self)
	for {
		dir := filepath.Join(mount, rel)
		if _, err := os.Stat(dir); err == nil {
			dirs = append(dirs, dir)
		}
		if rel == "/" {
			return dirs
		}
		rel = filepath.Dir(rel)
	}
}

// readV2CPUMax parses cpu.max, "QUOTA PERIOD" or "max PERIOD".
func readV2CPUMax(path string) (cores float64, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read cgroup CPU limit: %w", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 || fields[0] == "max" {
		return 0, false, nil
	}
	return quotaCores(path, fields[0], fields[1])
}

// readV1CPUQuota parses cpu.cfs_quota_us (-1 means no limit) and
// cpu.cfs_period_us.
func readV1CPUQuota(dir string) (cores float64, ok bool, err error) {
	quota, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read cgroup CPU quota: %w", err)
	}
	period, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, false, fmt.Errorf("read cgroup CPU period: %w", err)
	}
	q := strings.TrimSpace(string(quota))
	if strings.HasPrefix(q, "-") {
		return 0, false, nil
	}
	return quotaCores(dir, q, strings.TrimSpace(string(period)))
}

func quotaCores(where, quota, period string) (float64, bool, error) {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false, fmt.Errorf("invalid cgroup CPU quota %q/%q in %s",
			quota, period, where)
	}
	return q / p, true, nil
}

// readLimitFile parses a file holding a byte count, or the word unlimited
// ("max" in cgroup v2).
func readLimitFile(path, unlimited string) (int64, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read cgroup memory limit: %w", err)
	}
	s := strings.TrimSpace(string(data))
	if unlimited != "" && s == unlimited {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("invalid cgroup memory limit %q in %s",
			s, path)
	}
	return n, true, nil
}

// memoryHeadroom returns the bytes the cgroup can still use: its limit
// minus its usage, where inactive page cache counts as free because the
// kernel reclaims it before the limit is hit.
func (l CgroupLimits) memoryHeadroom() (int64, error) {
	usageFile, statKey := "memory.current", "inactive_file"
	if l.Version == "v1" {
		usageFile, statKey = "memory.usage_in_bytes", "total_inactive_file"
	}
	usage, _, err := readLimitFile(filepath.Join(l.memoryDir, usageFile), "")
	if err != nil {
		return 0, err
	}
	usage -= readStat(filepath.Join(l.memoryDir, "memory.stat"), statKey)
	return max(0, l.Memory-max(0, usage)), nil
}

// readStat returns one counter of a memory.stat file, or 0 when it is
// missing.
func readStat(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && name == key {
			n, _ := strconv.ParseInt(value, 10, 64)
			return n
		}
	}
	return 0
}
