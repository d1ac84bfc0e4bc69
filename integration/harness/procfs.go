package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// allThreadsStopped reports whether every thread of pid is in the stopped
// state ('T' or 't' in /proc/<pid>/task/<tid>/stat). Threads that are
// exiting ('Z', 'X') count as stopped. An error means pid has no /proc
// entry, such as after it exited.
func allThreadsStopped(pid int) (bool, error) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil {
		return false, err
	}
	if len(stats) == 0 {
		return false, fmt.Errorf("process %d has no threads in /proc", pid)
	}
	for _, path := range stats {
		state, err := threadState(path)
		if err != nil {
			// The thread exited between the listing and the read.
			continue
		}
		switch state {
		case 'T', 't', 'Z', 'X':
		default:
			return false, nil
		}
	}
	return true, nil
}

// threadState returns the state letter from a /proc stat file. The
// command name before it is in parentheses and may contain spaces, so the
// state is found after the last ')'.
func threadState(path string) (byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, fmt.Errorf("parse %s: no state after the command name", path)
	}
	return s[i+2], nil
}
