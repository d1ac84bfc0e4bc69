package config

import (
	"fmt"
	"os"
	"strings"

	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// Label limits. Labels travel in every registration document, so their
// number and size are bounded.
const (
	MaxLabels           = 64
	MaxLabelKeyLength   = 63
	MaxLabelValueLength = 128
)

// ParseLabels turns repeated --label key=value flags into a map. A key is 1
// to MaxLabelKeyLength letters, digits, '.', '_', '-' or '/', starting and
// ending with a letter or digit. A value may be empty and holds at most
// MaxLabelValueLength letters, digits, '.', '_', '-', ':' or '/'.
func ParseLabels(flags []string) (map[string]string, error) {
	if len(flags) > MaxLabels {
		return nil, fmt.Errorf("invalid --label: %d labels given, more "+
			"than the maximum of %d", len(flags), MaxLabels)
	}
	labels := make(map[string]string, len(flags))
	for _, kv := range flags {
		key, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("invalid --label %q: use key=value", kv)
		}
		if err := validateLabelKey(key); err != nil {
			return nil, fmt.Errorf("invalid --label %q: %w", kv, err)
		}
		if err := validateLabelValue(value); err != nil {
			return nil, fmt.Errorf("invalid --label %q: %w", kv, err)
		}
		if old, dup := labels[key]; dup {
			return nil, fmt.Errorf("invalid --label %q: key %q is already "+
				"set to %q", kv, key, old)
		}
		labels[key] = value
	}
	return labels, nil
}

func validateLabelKey(key string) error {
	if key == "" || len(key) > MaxLabelKeyLength {
		return fmt.Errorf("key must be 1 to %d characters long",
			MaxLabelKeyLength)
	}
	if !isAlnum(rune(key[0])) || !isAlnum(rune(key[len(key)-1])) {
		return fmt.Errorf("key %q must start and end with a letter or digit",
			key)
	}
	for _, r := range key {
		if !isAlnum(r) && !strings.ContainsRune("._-/", r) {
			return fmt.Errorf("key %q contains %q; use letters, digits, "+
				"'.', '_', '-' and '/'", key, r)
		}
	}
	return nil
}

func validateLabelValue(value string) error {
	if len(value) > MaxLabelValueLength {
		return fmt.Errorf("value is %d characters long, more than the "+
			"maximum of %d", len(value), MaxLabelValueLength)
	}
	for _, r := range value {
		if !isAlnum(r) && !strings.ContainsRune("._-:/", r) {
			return fmt.Errorf("value %q contains %q; use letters, digits, "+
				"'.', '_', '-', ':' and '/'", value, r)
		}
	}
	return nil
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// Sources of a host ID, in the order ResolveHostID tries them.
const (
	HostIDFromFlag      = "flag"
	HostIDFromMachineID = "machine-id"
	HostIDFromHostname  = "hostname"
)

// MachineIDPath is the systemd machine ID file.
const MachineIDPath = "/etc/machine-id"

// HostIdentity is a resolved host ID and where it came from.
type HostIdentity struct {
	ID string
	// Source is HostIDFromFlag, HostIDFromMachineID or HostIDFromHostname.
	Source string
	// Skipped explains why earlier sources were not used, for the log.
	Skipped []string
}

// ResolveHostID returns the --host-id value when set, else the content of
// machineIDPath, else the hostname. A source whose value is not a valid
// keyspace ID is skipped and the reason recorded. It returns ErrNoHostID,
// wrapped with the reasons, when no source works.
func ResolveHostID(flagValue, machineIDPath string,
	hostname func() (string, error)) (HostIdentity, error) {
	if flagValue != "" {
		if err := keyspace.ValidID(flagValue); err != nil {
			return HostIdentity{}, fmt.Errorf("invalid --host-id: %w", err)
		}
		return HostIdentity{ID: flagValue, Source: HostIDFromFlag}, nil
	}

	var skipped []string
	id, err := readMachineID(machineIDPath)
	if err == nil {
		return HostIdentity{ID: id, Source: HostIDFromMachineID}, nil
	}
	skipped = append(skipped, err.Error())

	name, err := hostname()
	if err == nil {
		err = keyspace.ValidID(name)
	}
	if err == nil {
		return HostIdentity{
			ID: name, Source: HostIDFromHostname, Skipped: skipped,
		}, nil
	}
	skipped = append(skipped, fmt.Sprintf("hostname: %v", err))
	return HostIdentity{}, fmt.Errorf("%w (%s); set --host-id",
		ErrNoHostID, strings.Join(skipped, "; "))
}

func readMachineID(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("machine ID: %w", err)
	}
	id := strings.TrimSpace(string(data))
	if err := keyspace.ValidID(id); err != nil {
		return "", fmt.Errorf("machine ID in %s: %w", path, err)
	}
	return id, nil
}
