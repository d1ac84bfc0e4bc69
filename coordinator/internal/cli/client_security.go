package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/pflag"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/auth"
	"github.com/YoungBoyGod/remotegpu/pkg/client"
)

func (o *clientOptions) addSecurityFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.tokenFile, "token-file", "",
		"file with the bearer token of the coordinator's --auth-token-file, "+
			"sent with every request (mode 0600 or stricter)")
	fs.StringVar(&o.caCert, "cacert", "",
		"PEM CA certificate that signed the coordinator's HTTPS certificate; "+
			"the system's CAs when empty")
}

// securityOptions returns the client options of --token-file and
// --cacert. A token file that its group or other users may read or write
// is rejected. Errors name the file, never the token.
func (o *clientOptions) securityOptions() ([]client.Option, error) {
	var opts []client.Option
	if o.tokenFile != "" {
		tok, err := auth.LoadToken(o.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		opts = append(opts, client.WithBearerToken(tok.Value()))
	}
	if o.caCert != "" {
		hc, err := httpsClient(o.caCert)
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithHTTPClient(hc))
	}
	return opts, nil
}

// httpsClient returns an HTTP client that trusts only the CA in caFile.
func httpsClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("invalid --cacert %q: the file contains no PEM certificate; give the CA bundle that signed the API's certificate", caFile)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: transport}, nil
}
