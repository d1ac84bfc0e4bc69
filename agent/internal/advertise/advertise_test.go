package advertise

import (
	"errors"
	"fmt"
	"net"
	"testing"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ifAddr(t *testing.T, name, cidr string, flags net.Flags) sockaddr.IfAddr {
	t.Helper()
	sa, err := sockaddr.NewIPAddr(cidr)
	require.NoError(t, err)
	return sockaddr.IfAddr{
		SockAddr:  sa,
		Interface: net.Interface{Name: name, Flags: flags},
	}
}

func list(addrs ...sockaddr.IfAddr) func() (sockaddr.IfAddrs, error) {
	return func() (sockaddr.IfAddrs, error) { return addrs, nil }
}

const up = net.FlagUp

// Template functions such as GetAllInterfaces read the real host, so these
// cases use the loopback interface, which every Linux host has.
func TestTemplate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		tmpl    string
		want    string
		wantErr string
	}{
		{"loopback interface",
			`{{ GetAllInterfaces | include "name" "^lo$" | include "type" "IPv4" | attr "address" }}`,
			"127.0.0.1", ""},
		{"literal address", "192.168.7.7", "192.168.7.7", ""},
		{"bad template", "{{ GetBogus }}", "",
			"invalid --advertise-addr template"},
		{"yields nothing",
			`{{ GetAllInterfaces | include "name" "^nope$" | attr "address" }}`,
			"", "yields no address on this host"},
		{"yields several", "10.0.0.1 10.0.0.2", "",
			"yields 2 addresses (10.0.0.1 10.0.0.2); narrow it to one"},
		{"not an address", "my-host", "",
			`yields "my-host", which is not an IP`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.tmpl)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Contains(t, err.Error(), fmt.Sprintf("%q", tt.tmpl))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.Addr)
			assert.Equal(t, SourceTemplate, got.Source)
		})
	}
}

func TestTemplateYieldingNothingIsErrNoAddress(t *testing.T) {
	t.Parallel()
	_, err := Resolve(
		`{{ GetAllInterfaces | include "name" "^nope$" | attr "address" }}`)
	require.ErrorIs(t, err, ErrNoAddress)
}

func TestFallbackOrder(t *testing.T) {
	t.Parallel()
	lo := ifAddr(t, "lo", "127.0.0.1/8", up|net.FlagLoopback)
	ula := ifAddr(t, "eth0", "fd00::2/64", up)
	private4 := ifAddr(t, "eth0", "10.0.0.5/24", up)
	public := ifAddr(t, "eth1", "203.0.113.10/24", up)
	linkLocal := ifAddr(t, "eth2", "fe80::1/64", up)
	down := ifAddr(t, "eth3", "172.16.0.1/16", 0)
	test := ifAddr(t, "eth4", "192.0.2.2/24", up)
	none := list()

	tests := []struct {
		name       string
		host       Interfaces
		wantAddr   string
		wantSource string
	}{
		{"private IPv4 before IPv6 unique-local",
			Interfaces{Private: list(ula, private4), Public: list(public)},
			"10.0.0.5", SourcePrivate},
		{"IPv6 unique-local when alone",
			Interfaces{Private: list(ula), Public: none},
			"fd00::2", SourcePrivate},
		{"public without private",
			Interfaces{Private: none, Public: list(public)},
			"203.0.113.10", SourcePublic},
		{"any up non-loopback interface last",
			Interfaces{Private: none, Public: none,
				All: list(lo, linkLocal, down, test)},
			"192.0.2.2", SourceInterface},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.host.Resolve("")
			require.NoError(t, err)
			assert.Equal(t, tt.wantAddr, got.Addr)
			assert.Equal(t, tt.wantSource, got.Source)
			assert.NotEmpty(t, got.Reason)
		})
	}
}

func TestNoAddressAnywhere(t *testing.T) {
	t.Parallel()
	lo := ifAddr(t, "lo", "127.0.0.1/8", up|net.FlagLoopback)
	host := Interfaces{Private: list(), Public: list(), All: list(lo)}
	_, err := host.Resolve("")
	require.ErrorIs(t, err, ErrNoAddress)
	assert.Contains(t, err.Error(), "set --advertise-addr")
}

func TestListErrorsAreReported(t *testing.T) {
	t.Parallel()
	boom := func() (sockaddr.IfAddrs, error) {
		return nil, errors.New("netlink: permission denied")
	}
	host := Interfaces{Private: boom, Public: boom, All: boom}
	_, err := host.Resolve("")
	require.ErrorIs(t, err, ErrNoAddress)
	assert.Contains(t, err.Error(), "private addresses: netlink: permission denied")

	_, err = host.Resolve("{{ GetAllInterfaces }}")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "netlink: permission denied")
}

func TestResolveOnThisHost(t *testing.T) {
	t.Parallel()
	got, err := Resolve("")
	require.NoError(t, err)
	assert.NotNil(t, net.ParseIP(got.Addr), "got %q", got.Addr)
}
