package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/YoungBoyGod/remotegpu/agent/internal/config"
	"github.com/YoungBoyGod/remotegpu/agent/internal/heartbeat"
	"github.com/YoungBoyGod/remotegpu/agent/internal/report"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

func newRunCommand(cfg *config.Config) *cobra.Command {
	var ops opsOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Register the host in etcd and keep it registered",
		Long: "run registers the host in etcd under a lease, keeps the lease " +
			"alive and writes the host's status when it changes.\n" +
			"SIGTERM or SIGINT marks the host stopped and exits.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgent(cfg, &ops)
		},
	}
	cfg.AddHostFlags(cmd.Flags())
	cfg.AddRunFlags(cmd.Flags())
	ops.addFlags(cmd.Flags())
	return cmd
}

func runAgent(cfg *config.Config, ops *opsOptions) error {
	if err := cfg.ValidateRun(); err != nil {
		return usageError{err}
	}
	if err := ops.validate(); err != nil {
		return usageError{err}
	}
	log, err := cfg.Log.NewLogger(os.Stderr)
	if err != nil {
		return usageError{err}
	}
	ks, err := keyspace.New(cfg.Prefix)
	if err != nil {
		return usageError{err}
	}
	ctx, stop := signal.NotifyContext(context.Background(),
		syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	host, err := setupHost(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeGPUs(host, log)

	cli, err := newEtcdClient(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	probeEtcdTLS(ctx, cfg, log)

	mon := newMonitor(host.Info(), log)
	hbCfg := heartbeatConfig(cfg, host, ks, cli, log)
	hbCfg.Sample = mon.sample(hbCfg.Sample)
	hbCfg.Observer = mon
	agent, err := heartbeat.New(hbCfg)
	if err != nil {
		return err
	}
	stopMonitor := mon.start(ctx, cfg, ops.metricsListen, log)
	defer stopMonitor()
	log.Info("agent starting", "host_id", host.ID, "version", agentVersion(),
		"instance_id", agent.InstanceID(), "etcd", cfg.Etcd.Endpoints,
		"prefix", cfg.Prefix, "ttl", cfg.TTL, "interval", cfg.Interval,
		"status_max_interval", cfg.StatusMaxInterval)

	// Ready means the flags are valid and the loop runs; registration
	// may wait for etcd, which STATUS lines report.
	mon.notify.Status("registering host " + host.ID)
	mon.notify.Ready()
	stopping := context.AfterFunc(ctx, mon.notify.Stopping)
	defer func() {
		if stopping() {
			mon.notify.Stopping()
		}
	}()

	if err := agent.Run(ctx); err != nil {
		return err
	}
	mon.metrics.Stopped()
	log.Info("agent stopped", "host_id", host.ID)
	return nil
}

func heartbeatConfig(cfg *config.Config, host *report.Host,
	ks keyspace.Keyspace, cli *clientv3.Client,
	log *slog.Logger) heartbeat.Config {
	return heartbeat.Config{
		Client:            cli,
		Keyspace:          ks,
		Info:              host.Info(),
		Sample:            host.Status,
		TTL:               cfg.TTL,
		Interval:          cfg.Interval,
		StatusMaxInterval: cfg.StatusMaxInterval,
		ChangeThreshold:   cfg.ChangeThreshold,
		Logger:            log,
	}
}

func closeGPUs(host *report.Host, log *slog.Logger) {
	if err := host.GPUs.Close(); err != nil {
		log.Warn("close GPU backend", "error", err)
	}
}

// reconnectBackoff replaces gRPC's default reconnect backoff, which grows to
// 120 s: after a long etcd outage the agent would otherwise stay
// unregistered for up to two minutes after etcd is back.
var reconnectBackoff = backoff.Config{
	BaseDelay:  250 * time.Millisecond,
	Multiplier: 1.6,
	Jitter:     0.2,
	MaxDelay:   heartbeat.MaxRetryBackoff,
}

// newEtcdClient connects to etcd without waiting: an unreachable etcd at
// start is retried by the heartbeat.
func newEtcdClient(cfg *config.Config) (*clientv3.Client, error) {
	ccfg, err := cfg.Etcd.ClientConfig()
	if err != nil {
		return nil, usageError{err}
	}
	ccfg.DialOptions = append(ccfg.DialOptions,
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           reconnectBackoff,
			MinConnectTimeout: cfg.Etcd.DialTimeout,
		}))
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("create etcd client for %v: %w",
			cfg.Etcd.Endpoints, err)
	}
	return cli, nil
}
