package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/fleet"
	"github.com/YoungBoyGod/remotegpu/pkg/cliutil"
	"github.com/YoungBoyGod/remotegpu/pkg/etcdconn"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// serveOptions are the flags of the serve command.
type serveOptions struct {
	listen          string
	shutdownTimeout time.Duration
	log             cliutil.LogConfig

	// Embedded etcd member, used unless --etcd-endpoints is set.
	dataDir            string
	etcdName           string
	etcdListenClient   string
	etcdListenPeer     string
	etcdInitialCluster string
	etcdClusterToken   string

	etcd etcdconn.Config

	prefix               string
	maxAttempts          int
	busyGPUMemory        byteSize
	defaultAllocationTTL time.Duration
	releasedRetention    time.Duration
	etcdCallTimeout      time.Duration

	ops      opsOptions
	lifetime lifetimeOptions
}

// embeddedOnlyFlags apply only to the embedded etcd member.
var embeddedOnlyFlags = []string{
	"data-dir", "etcd-name", "etcd-listen-client", "etcd-listen-peer",
	"etcd-initial-cluster", "etcd-initial-cluster-token",
}

func newServeCommand() *cobra.Command {
	o := &serveOptions{busyGPUMemory: byteSize(fleet.DefaultBusyGPUMemoryBytes)}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a coordinator: watch etcd and serve the HTTP API",
		Long: "serve runs a coordinator. By default it starts an embedded etcd member " +
			"with its data in --data-dir; with --etcd-endpoints it uses that cluster " +
			"instead and starts no etcd of its own. Several coordinators may serve " +
			"one cluster at once. SIGINT or SIGTERM stops it gracefully.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(cmd.Flags()); err != nil {
				return usageError{err}
			}
			logger, err := o.log.NewLogger(cmd.ErrOrStderr())
			if err != nil {
				return usageError{err}
			}
			return runServe(cmd.Context(), o, logger)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *serveOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080",
		"host:port of the HTTP API")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second,
		"maximum time to finish in-flight HTTP requests on shutdown")
	o.log.AddFlags(fs)

	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir(),
		"folder of the embedded etcd member's data")
	fs.StringVar(&o.etcdName, "etcd-name", "default",
		"name of the embedded etcd member")
	fs.StringVar(&o.etcdListenClient, "etcd-listen-client", etcdconn.DefaultEndpoint,
		"client URL of the embedded etcd member, for agents and other coordinators")
	fs.StringVar(&o.etcdListenPeer, "etcd-listen-peer", "http://127.0.0.1:2380",
		"peer URL of the embedded etcd member")
	fs.StringVar(&o.etcdInitialCluster, "etcd-initial-cluster", "",
		"name=peerURL,... of every member when several coordinators each embed "+
			"one member of one cluster; empty starts a single-member cluster")
	fs.StringVar(&o.etcdClusterToken, "etcd-initial-cluster-token", "",
		"token that keeps the embedded cluster apart from others on the same peers")
	o.etcd.AddFlags(fs, nil)

	fs.StringVar(&o.prefix, "prefix", keyspace.DefaultPrefix,
		"etcd key prefix of this fleet")
	fs.IntVar(&o.maxAttempts, "max-attempts", fleet.DefaultMaxAttempts,
		"compare-and-swap attempts per allocation, release or drain before giving up")
	fs.Var(&o.busyGPUMemory, "busy-gpu-memory",
		"memory use (bytes, or with a unit such as 1GiB) above which a GPU that no "+
			"allocation holds counts as busy and is not handed out")
	fs.DurationVar(&o.defaultAllocationTTL, "default-allocation-ttl", 0,
		"lifetime of an allocation whose request sets no ttl_seconds; 0 means until released")
	fs.DurationVar(&o.releasedRetention, "released-retention", fleet.DefaultReleasedRetention,
		"minimum time released allocations stay readable (at least 2s)")
	fs.DurationVar(&o.etcdCallTimeout, "etcd-call-timeout", fleet.DefaultCallTimeout,
		"deadline of each etcd call")
	o.ops.addFlags(fs)
	o.lifetime.addFlags(fs)
}

// validate checks the flags without touching the network or disk.
func (o *serveOptions) validate(fs *pflag.FlagSet) error {
	if err := o.validateListen(fs); err != nil {
		return err
	}
	if err := keyspace.ValidatePrefix(o.prefix); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	if o.shutdownTimeout <= 0 {
		return fmt.Errorf("invalid --shutdown-timeout %s: must be positive", o.shutdownTimeout)
	}
	if o.maxAttempts < 1 {
		return fmt.Errorf("invalid --max-attempts %d: must be at least 1", o.maxAttempts)
	}
	if err := checkTTL(o.defaultAllocationTTL, "no expiry"); err != nil {
		return fmt.Errorf("invalid --default-allocation-ttl %s: %w", o.defaultAllocationTTL, err)
	}
	if o.releasedRetention < 2*time.Second {
		return fmt.Errorf("invalid --released-retention %s: must be at least 2s, "+
			"etcd's minimum lease TTL", o.releasedRetention)
	}
	if o.etcdCallTimeout <= 0 {
		return fmt.Errorf("invalid --etcd-call-timeout %s: must be positive", o.etcdCallTimeout)
	}
	if err := o.ops.validate(); err != nil {
		return err
	}
	if err := o.lifetime.validate(); err != nil {
		return err
	}
	return o.validateEtcd(fs)
}

// validateListen checks that --listen is host:port with a port number
// from 0 to 65535, where 0 picks a free port.
func (o *serveOptions) validateListen(fs *pflag.FlagSet) error {
	if o.listen == "" {
		return fmt.Errorf("%s is empty: give host:port, e.g. 127.0.0.1:8080",
			flagSource(fs, "listen"))
	}
	note := envNote(fs, "listen")
	_, port, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("invalid --listen %q%s: use host:port, e.g. 127.0.0.1:8080",
			o.listen, note)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("invalid --listen %q%s: port %q is not a number from 0 to 65535; "+
			"use host:port, e.g. 127.0.0.1:8080", o.listen, note, port)
	}
	return nil
}

func (o *serveOptions) validateEtcd(fs *pflag.FlagSet) error {
	if len(o.etcd.Endpoints) == 0 {
		if o.dataDir == "" {
			return errors.New("--data-dir is empty: name a folder for the embedded " +
				"etcd, or use --etcd-endpoints for an external cluster")
		}
		// The client flags, such as --etcd-user, also apply to the
		// connection to the embedded member, so check them before it
		// starts.
		embedded := o.etcd
		embedded.Endpoints = []string{o.etcdListenClient}
		return embedded.Validate()
	}
	if err := o.etcd.Validate(); err != nil {
		return err
	}
	var set []string
	for _, name := range embeddedOnlyFlags {
		if f := fs.Lookup(name); f != nil && f.Changed {
			set = append(set, flagSource(fs, name))
		}
	}
	switch len(set) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%s applies only to the embedded etcd, which %s turns off; "+
			"unset one of the two", set[0], flagSource(fs, "etcd-endpoints"))
	default:
		return fmt.Errorf("%s apply only to the embedded etcd, which %s turns off; "+
			"unset those or --etcd-endpoints", strings.Join(set, ", "),
			flagSource(fs, "etcd-endpoints"))
	}
}

// defaultDataDir is the first folder of $STATE_DIRECTORY, which systemd
// sets for a unit with StateDirectory=; else /var/lib/remotegpu for root
// and the XDG state folder for other users.
func defaultDataDir() string {
	if dir, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); filepath.IsAbs(dir) {
		return dir
	}
	if os.Geteuid() == 0 {
		return "/var/lib/remotegpu"
	}
	if dir := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "remotegpu")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".local", "state", "remotegpu")
}

// logAttrs returns the settings worth logging at start-up.
func (o *serveOptions) logAttrs(embedded bool) []any {
	attrs := []any{"listen", o.listen, "prefix", o.prefix, "embedded_etcd", embedded}
	if embedded {
		return append(attrs, "data_dir", o.dataDir, "etcd_client_url", o.etcdListenClient,
			"etcd_peer_url", o.etcdListenPeer)
	}
	return append(attrs, "etcd_endpoints", strings.Join(o.etcd.Endpoints, ","))
}
