package cli

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
	"github.com/YoungBoyGod/remotegpu/pkg/cliutil"
)

// Codes of errorOutput.Code for errors that are not the API's own.
const (
	// codeUsage marks an invalid command line, flag or environment
	// variable (exit code 2).
	codeUsage = "usage"
	// codeFailed marks any other error of the CLI itself, such as an
	// unreadable --token-file.
	codeFailed = "failed"
)

// errorOutput is the JSON object that a command run with --json writes to
// stderr when it fails. Its error and code fields match api.Error; status
// is the HTTP status when the coordinator sent the error.
type errorOutput struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Status int    `json:"status,omitempty"`
}

// writeJSONError writes err to stderr as one errorOutput line.
func writeJSONError(stderr io.Writer, err error) {
	out := errorOutput{Error: err.Error(), Code: errorCode(err)}
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		out.Status = apiErr.StatusCode
		if err == error(apiErr) {
			// The server's message alone, as in the API's error body.
			out.Error = apiErr.Message
		}
	}
	// Encoding a struct of strings and an int cannot fail, and a failed
	// write to stderr has nowhere to be reported.
	enc := json.NewEncoder(stderr)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(out)
}

// errorCode returns the api.Error code of err, or the client sentinel it
// matches, codeUsage or codeFailed.
func errorCode(err error) string {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) && apiErr.Code != "" {
		return apiErr.Code
	}
	var usage usageError
	if errors.As(err, &usage) {
		return codeUsage
	}
	for _, s := range []struct {
		sentinel error
		code     string
	}{
		{client.ErrInvalid, api.CodeInvalid},
		{client.ErrNotFound, api.CodeNotFound},
		{client.ErrNoCapacity, api.CodeNoCapacity},
		{client.ErrConflict, api.CodeConflict},
		{client.ErrUnauthorized, api.CodeUnauthorized},
		{client.ErrUnavailable, api.CodeUnavailable},
	} {
		if errors.Is(err, s.sentinel) {
			return s.code
		}
	}
	if apiErr != nil {
		return api.CodeInternal
	}
	return codeFailed
}

// wantsJSON reports whether the failed command asked for --json output.
// When cobra stopped parsing early (parsed is false), a --json after the
// faulty argument or in the environment still counts.
func wantsJSON(cmd *cobra.Command, args []string, parsed bool) bool {
	if cmd == nil {
		return false
	}
	f := cmd.Flags().Lookup("json")
	if f == nil {
		return false
	}
	if f.Changed {
		return f.Value.String() == "true"
	}
	if !parsed {
		if on, found := jsonArg(args); found {
			return on
		}
	}
	// The environment is read again because an earlier invalid variable
	// stops applyEnv before it sets --json.
	v, ok := os.LookupEnv(cliutil.EnvName("json"))
	on, err := strconv.ParseBool(v)
	return ok && err == nil && on
}

// jsonArg looks for --json in args, which cobra may not have parsed, and
// returns its value and whether it is there.
func jsonArg(args []string) (on, found bool) {
	for _, arg := range args {
		if arg == "--" {
			break
		}
		if arg == "--json" {
			return true, true
		}
		if v, ok := strings.CutPrefix(arg, "--json="); ok {
			on, err := strconv.ParseBool(v)
			return err == nil && on, true
		}
	}
	return false, false
}
