package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/YoungBoyGod/remotegpu/agent/internal/config"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// inspectWindow is how long inspect measures CPU utilisation.
const inspectWindow = 500 * time.Millisecond

// Inspection is the output of inspect: the documents that run would write.
type Inspection struct {
	Info   keyspace.HostInfo   `json:"info"`
	Status keyspace.HostStatus `json:"status"`
}

func newInspectCommand(cfg *config.Config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Print this host's registration and status as JSON",
		Long: "inspect collects CPU, memory and GPU state once and prints " +
			"the registration (info) and status documents that run would " +
			"write to etcd. It needs no etcd; logs go to stderr.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInspect(cmd, cfg, cmd.OutOrStdout())
		},
	}
	cfg.AddHostFlags(cmd.Flags())
	return cmd
}

func runInspect(cmd *cobra.Command, cfg *config.Config, out io.Writer) error {
	if err := cfg.ValidateHost(); err != nil {
		return usageError{err}
	}
	log, err := cfg.Log.NewLogger(os.Stderr)
	if err != nil {
		return usageError{err}
	}
	ctx := cmd.Context()
	host, err := setupHost(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeGPUs(host, log)

	// CPU utilisation is a difference of two readings; give it a window.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(inspectWindow):
	}
	status, err := host.Status(ctx)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	status.HeartbeatAt = now
	info := host.Info()
	info.RegisteredAt = now

	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(Inspection{Info: info, Status: status}); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}
