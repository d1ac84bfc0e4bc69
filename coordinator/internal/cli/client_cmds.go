package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/cliutil"
	"github.com/YoungBoyGod/remotegpu/pkg/version"
)

// defaultAddr is the address of a coordinator on this machine.
const defaultAddr = "http://127.0.0.1:8080"

// clientOptions are the flags every client command takes.
type clientOptions struct {
	addr    string
	json    bool
	timeout time.Duration
	// tokenFile and caCert are the optional --token-file and --cacert.
	tokenFile string
	caCert    string
	// now is the clock for ages in tables; time.Now outside tests.
	now func() time.Time
}

func (o *clientOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.addr, "addr", defaultAddr, "URL of the coordinator's HTTP API")
	fs.BoolVar(&o.json, "json", false, "print the API's JSON instead of text")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline of each HTTP request")
	o.addSecurityFlags(fs)
}

func (o *clientOptions) client() (*client.Client, error) {
	security, err := o.securityOptions()
	if err != nil {
		return nil, err
	}
	opts := append([]client.Option{client.WithTimeout(o.timeout),
		client.WithUserAgent("remotegpu-coordinator/" + version.Version)},
		security...)
	c, err := client.New(o.addr, opts...)
	if err != nil {
		// client.New only rejects an invalid --addr or --timeout.
		return nil, usageError{err}
	}
	return c, nil
}

// explainUnreachable adds the coordinator's address and what to check to
// an error from a coordinator that could not be reached at all. Other
// errors, such as the API's error responses, are returned unchanged.
func (o *clientOptions) explainUnreachable(err error) error {
	var apiErr *client.APIError
	if err == nil || errors.As(err, &apiErr) || !isConnectionError(err) {
		return err
	}
	return fmt.Errorf("cannot reach the coordinator at %s: %w; check that "+
		"\"remotegpu-coordinator serve\" runs there, or set --addr or %s to its URL",
		o.addr, err, cliutil.EnvName("addr"))
}

// isConnectionError reports whether err comes from dialing or from a
// request that timed out, as opposed to, say, a TLS certificate error.
func isConnectionError(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var netErr net.Error
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) ||
		(errors.As(err, &netErr) && netErr.Timeout())
}

// call contains the inputs of a client command's run function.
type call struct {
	ctx    context.Context
	client *client.Client
	opts   *clientOptions
	out    io.Writer
	args   []string
}

// clientCommand builds a command that calls the API through run.
func clientCommand(use, short string, args cobra.PositionalArgs,
	run func(*call) error) *cobra.Command {
	o := &clientOptions{now: time.Now}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			err = run(&call{
				ctx: cmd.Context(), client: c, opts: o, out: cmd.OutOrStdout(), args: args,
			})
			return o.explainUnreachable(err)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func clientCommands() []*cobra.Command {
	hosts := clientCommand("hosts", "List hosts with health, usage and free GPUs",
		cobra.NoArgs, runHosts)
	host := clientCommand("host ID", "Show one host and its GPUs",
		cobra.ExactArgs(1), runHost)
	release := clientCommand("release ID", "Release an allocation",
		cobra.ExactArgs(1), runRelease)
	renew := clientCommand("renew ID",
		"Push an allocation's expiry its TTL into the future",
		cobra.ExactArgs(1), runRenew)
	renew.Long = "renew extends an allocation that was created with a TTL (allocate " +
		"--ttl, or the coordinator's --default-allocation-ttl): it moves the " +
		"expiry the allocation's own TTL past now. The TTL itself is fixed when " +
		"the allocation is created. An allocation without a TTL cannot be " +
		"renewed, and one that already expired must be requested again."
	drain := clientCommand("drain ID", "Stop new allocations on a host; existing ones stay",
		cobra.ExactArgs(1), runDrain)
	undrain := clientCommand("undrain ID", "Let a drained host take new allocations",
		cobra.ExactArgs(1), runUndrain)
	remove := clientCommand("remove-host ID",
		"Forget a host that is gone for good (it must be down and hold no allocations)",
		cobra.ExactArgs(1), runRemoveHost)
	return []*cobra.Command{
		hosts, host, newSelectCommand(), newAllocateCommand(), release, renew,
		newAllocationsCommand(), drain, undrain, remove,
	}
}

// printJSON writes v indented, as the --json output.
func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runHosts(cl *call) error {
	hosts, err := cl.client.ListHosts(cl.ctx)
	if err != nil {
		return err
	}
	if cl.opts.json {
		return printJSON(cl.out, api.HostList{Hosts: nonNil(hosts)})
	}
	return writeHostTable(cl.out, hosts, cl.opts.now())
}

func runHost(cl *call) error {
	h, err := cl.client.GetHost(cl.ctx, cl.args[0])
	if err != nil {
		return err
	}
	if cl.opts.json {
		return printJSON(cl.out, h)
	}
	return writeHostDetails(cl.out, h, cl.opts.now())
}

func runRelease(cl *call) error {
	a, err := cl.client.Release(cl.ctx, cl.args[0])
	if err != nil {
		return err
	}
	if cl.opts.json {
		return printJSON(cl.out, a)
	}
	if a.AlreadyReleased {
		_, err = fmt.Fprintf(cl.out, "allocation %s was already released\n", a.ID)
		return err
	}
	_, err = fmt.Fprintf(cl.out, "released allocation %s on host %s\n", a.ID, a.HostID)
	return err
}

func runRenew(cl *call) error {
	a, err := cl.client.Renew(cl.ctx, cl.args[0])
	if err != nil {
		return err
	}
	if cl.opts.json {
		return printJSON(cl.out, a)
	}
	return writeRenewal(cl.out, a, cl.opts.now())
}

func runDrain(cl *call) error {
	h, err := cl.client.Drain(cl.ctx, cl.args[0])
	return printHostChange(cl, h, err,
		"is draining: it keeps its allocations and takes no new ones")
}

func runUndrain(cl *call) error {
	h, err := cl.client.Undrain(cl.ctx, cl.args[0])
	return printHostChange(cl, h, err, "takes new allocations again")
}

func printHostChange(cl *call, h api.Host, err error, change string) error {
	if err != nil {
		return err
	}
	if cl.opts.json {
		return printJSON(cl.out, h)
	}
	_, err = fmt.Fprintf(cl.out, "host %s %s\n", h.ID, change)
	return err
}

func runRemoveHost(cl *call) error {
	if err := cl.client.RemoveHost(cl.ctx, cl.args[0]); err != nil {
		return err
	}
	if cl.opts.json {
		return printJSON(cl.out, map[string]string{"removed": cl.args[0]})
	}
	_, err := fmt.Fprintf(cl.out, "removed host %s\n", cl.args[0])
	return err
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
