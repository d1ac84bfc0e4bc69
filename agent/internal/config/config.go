package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/YoungBoyGod/remotegpu/pkg/cliutil"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdconn"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// GPU backends accepted by --gpu-backend.
const (
	// BackendNVML reads real GPUs through the NVIDIA driver.
	BackendNVML = "nvml"
	// BackendNone reports no GPUs.
	BackendNone = "none"
	// BackendMockDGXA100 simulates go-nvml's eight-GPU DGX A100 server,
	// with GPU UUIDs derived from the host ID.
	BackendMockDGXA100 = "mock-dgxa100"
)

// Defaults of the timing flags.
const (
	DefaultTTL               = 10 * time.Second
	DefaultInterval          = 2 * time.Second
	DefaultStatusMaxInterval = 30 * time.Second
	DefaultChangeThreshold   = 5.0
	DefaultGPURecoveryPeriod = 5 * time.Minute
)

// MinTTL is the smallest lease TTL the agent accepts. etcd raises a TTL
// below 1.5 election timeouts (2 s with its default 1 s election timeout)
// to that minimum, so a smaller --ttl would silently not apply.
const MinTTL = 2 * time.Second

// MaxTTL is the largest lease TTL the agent accepts. The TTL is how long
// a host that died stays healthy to the coordinators, so a larger value
// is more likely a typo (100000h for 10s) than a choice. etcd itself
// accepts TTLs up to 9,000,000,000 s (MaxLeaseTTL in etcd v3.7's lessor).
const MaxTTL = time.Hour

// MinInterval is the shortest sampling interval accepted, which keeps
// the agent's own CPU use and its etcd traffic small.
const MinInterval = 100 * time.Millisecond

// Config is every setting of the agent. The zero value is not useful;
// AddHostFlags and AddRunFlags set the defaults.
type Config struct {
	Etcd etcdconn.Config
	Log  cliutil.LogConfig

	// Prefix is the etcd key prefix.
	Prefix string
	// HostID is the flag value; empty means "derive it" (see ResolveHostID).
	HostID string
	// Name is a display name; empty means the hostname.
	Name string
	// Labels are the raw key=value flag values; see ParseLabels.
	Labels []string
	// AdvertiseAddr is a go-sockaddr template; empty means "pick one".
	AdvertiseAddr string

	TTL               time.Duration
	Interval          time.Duration
	StatusMaxInterval time.Duration
	// ChangeThreshold is the change, in percentage points, of CPU use,
	// memory use or a GPU's utilisation or memory use that makes the agent
	// write its status before StatusMaxInterval has passed.
	ChangeThreshold float64

	GPUBackend        string
	GPURecoveryPeriod time.Duration
}

// AddHostFlags registers the flags that describe the host and its GPUs.
// Both "run" and "inspect" take them.
func (c *Config) AddHostFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.HostID, "host-id", "",
		"host ID (default: /etc/machine-id, else the hostname)")
	fs.StringVar(&c.Name, "name", "",
		"display name of the host (default: the hostname)")
	fs.StringArrayVar(&c.Labels, "label", nil,
		"host label as key=value; repeat the flag for more labels")
	fs.StringVar(&c.AdvertiseAddr, "advertise-addr", "",
		"go-sockaddr template for the address clients use to reach "+
			"this host (default: first private IP, else first public IP)")
	fs.StringVar(&c.GPUBackend, "gpu-backend", BackendNVML,
		"GPU source: nvml, none or mock-dgxa100 (simulated 8-GPU server)")
	fs.DurationVar(&c.GPURecoveryPeriod, "gpu-recovery-period",
		DefaultGPURecoveryPeriod,
		"time without a new fault after which an unhealthy GPU is "+
			"healthy again")
	c.Log.AddFlags(fs)
}

// AddRunFlags registers the flags of the daemon: etcd connection, key
// prefix and timing.
func (c *Config) AddRunFlags(fs *pflag.FlagSet) {
	c.Etcd.AddFlags(fs, []string{etcdconn.DefaultEndpoint})
	fs.StringVar(&c.Prefix, "prefix", keyspace.DefaultPrefix,
		"etcd key prefix shared with the coordinators")
	fs.DurationVar(&c.TTL, "ttl", DefaultTTL,
		"lease TTL: the host is declared dead this long after its "+
			"last keepalive (2s to 1h)")
	fs.DurationVar(&c.Interval, "interval", DefaultInterval,
		"sampling interval of CPU, memory and GPU state (less than --ttl)")
	fs.DurationVar(&c.StatusMaxInterval, "status-max-interval",
		DefaultStatusMaxInterval,
		"maximum time between two status writes when nothing changes")
	fs.Float64Var(&c.ChangeThreshold, "status-change-threshold",
		DefaultChangeThreshold,
		"change in percentage points of CPU, memory or GPU use that "+
			"triggers a status write")
}

// ValidateHost checks the flags registered by AddHostFlags.
func (c *Config) ValidateHost() error {
	if c.HostID != "" {
		if err := keyspace.ValidID(c.HostID); err != nil {
			return fmt.Errorf("invalid --host-id: %w", err)
		}
	}
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	if _, err := ParseLabels(c.Labels); err != nil {
		return err
	}
	switch c.GPUBackend {
	case BackendNVML, BackendNone, BackendMockDGXA100:
	default:
		return fmt.Errorf("invalid --gpu-backend %q: use %s, %s or %s",
			c.GPUBackend, BackendNVML, BackendNone, BackendMockDGXA100)
	}
	if c.GPURecoveryPeriod <= 0 {
		return fmt.Errorf("invalid --gpu-recovery-period %s: must be positive",
			c.GPURecoveryPeriod)
	}
	if _, err := c.Log.NewLogger(io.Discard); err != nil {
		return err
	}
	return nil
}

// ValidateRun checks everything ValidateHost checks plus the flags
// registered by AddRunFlags.
func (c *Config) ValidateRun() error {
	if err := c.ValidateHost(); err != nil {
		return err
	}
	if err := c.Etcd.Validate(); err != nil {
		return err
	}
	if err := keyspace.ValidatePrefix(c.Prefix); err != nil {
		return fmt.Errorf("invalid --prefix: %w", err)
	}
	if err := ValidateTiming(c.TTL, c.Interval, c.StatusMaxInterval); err != nil {
		return err
	}
	if math.IsNaN(c.ChangeThreshold) || c.ChangeThreshold <= 0 ||
		c.ChangeThreshold > 100 {
		return fmt.Errorf("invalid --status-change-threshold %g: "+
			"use a number of percentage points above 0 and at most 100",
			c.ChangeThreshold)
	}
	return nil
}

// ValidateTiming checks the lease TTL, the sampling interval and the
// maximum time between status writes, and the relations between them.
func ValidateTiming(ttl, interval, statusMax time.Duration) error {
	if err := validateTTL(ttl); err != nil {
		return err
	}
	switch {
	case interval < MinInterval:
		return fmt.Errorf("invalid --interval %s: use at least %s",
			interval, MinInterval)
	case interval >= ttl:
		return fmt.Errorf("invalid --interval %s: must be less than --ttl %s",
			interval, ttl)
	case statusMax < interval:
		return fmt.Errorf("invalid --status-max-interval %s: must be at "+
			"least --interval %s", statusMax, interval)
	}
	return nil
}

// validateTTL checks that ttl is whole seconds from MinTTL to MaxTTL.
func validateTTL(ttl time.Duration) error {
	ttlRange := fmt.Sprintf("use --ttl from %s to %s",
		shortDuration(MinTTL), shortDuration(MaxTTL))
	switch {
	case ttl < 0:
		return fmt.Errorf("invalid --ttl %s: the TTL is negative; %s",
			shortDuration(ttl), ttlRange)
	case ttl == 0:
		return fmt.Errorf("invalid --ttl 0s: the TTL must be positive; %s",
			ttlRange)
	case ttl < MinTTL:
		return fmt.Errorf("invalid --ttl %s: etcd raises lease TTLs below "+
			"%s to its minimum; %s", shortDuration(ttl), MinTTL, ttlRange)
	case ttl > MaxTTL:
		return fmt.Errorf("invalid --ttl %s: a host that died would stay "+
			"healthy that long; %s", shortDuration(ttl), ttlRange)
	case ttl%time.Second != 0:
		return fmt.Errorf("invalid --ttl %s: etcd lease TTLs are whole "+
			"seconds; use --ttl %s or %s", ttl, ttl.Truncate(time.Second),
			ttl.Truncate(time.Second)+time.Second)
	}
	return nil
}

// shortDuration formats d without trailing zero units: "1h" rather than
// time.Duration's "1h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MaxNameLength is the longest --name accepted.
const MaxNameLength = 253

// ValidateName checks a display name: at most MaxNameLength bytes without
// control characters. An empty name is valid and means "the hostname".
func ValidateName(name string) error {
	if len(name) > MaxNameLength {
		return fmt.Errorf("invalid --name %q: %d bytes, more than the "+
			"maximum of %d", name, len(name), MaxNameLength)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("invalid --name %q: contains control "+
				"character %q", name, r)
		}
	}
	return nil
}

// ErrNoHostID is returned by ResolveHostID when no source yields a valid ID.
var ErrNoHostID = errors.New("no usable host ID")
