// Package advertise picks the IP address that the agent registers, which
// clients use to reach the host.
//
// With a go-sockaddr template (--advertise-addr) the template decides and
// must yield exactly one IP address. Without one, the first private address
// (RFC 6890) of an up interface on the default route is used, else the
// first public one, else the first non-loopback address of any up
// interface. In each group IPv4 comes before IPv6, because go-sockaddr may
// otherwise pick an IPv6 unique-local address on a host that also has a
// private IPv4 one. The choice is deterministic for a given set of
// interfaces, and Choice.Source and Choice.Reason record how it was made.
package advertise

import (
	"errors"
	"fmt"
	"net"
	"strings"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/go-sockaddr/template"
)

// Sources of the advertised address.
const (
	SourceTemplate  = "template"
	SourcePrivate   = "private"
	SourcePublic    = "public"
	SourceInterface = "interface"
)

// ErrNoAddress is returned when no usable address is found.
var ErrNoAddress = errors.New("no advertise address found")

// Choice is the chosen address and how it was chosen.
type Choice struct {
	Addr   string
	Source string
	Reason string
}

// Interfaces lists the host's interface addresses. Tests replace the
// functions to simulate hosts; the zero value uses go-sockaddr's.
type Interfaces struct {
	All     func() (sockaddr.IfAddrs, error)
	Private func() (sockaddr.IfAddrs, error)
	Public  func() (sockaddr.IfAddrs, error)
}

func (s Interfaces) withDefaults() Interfaces {
	if s.All == nil {
		s.All = sockaddr.GetAllInterfaces
	}
	if s.Private == nil {
		s.Private = sockaddr.GetPrivateInterfaces
	}
	if s.Public == nil {
		s.Public = sockaddr.GetPublicInterfaces
	}
	return s
}

// Resolve picks the advertise address from the host's interfaces; see
// Interfaces.Resolve.
func Resolve(tmpl string) (Choice, error) {
	return Interfaces{}.Resolve(tmpl)
}

// Resolve evaluates tmpl when it is not empty, else picks an address by the
// rules in the package documentation. Errors name the template.
func (s Interfaces) Resolve(tmpl string) (Choice, error) {
	s = s.withDefaults()
	if strings.TrimSpace(tmpl) != "" {
		return s.fromTemplate(tmpl)
	}

	steps := []struct {
		source string
		list   func() (sockaddr.IfAddrs, error)
		why    string
	}{
		{SourcePrivate, s.Private,
			"first private address on the default route"},
		{SourcePublic, s.Public,
			"no private address; first public address on the default route"},
		{SourceInterface, s.upNonLoopback,
			"no address on the default route; first non-loopback " +
				"address of an up interface"},
	}
	var errs []error
	for _, step := range steps {
		addrs, err := step.list()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s addresses: %w", step.source, err))
			continue
		}
		if ip := firstIP(addrs); ip != "" {
			return Choice{Addr: ip, Source: step.source, Reason: step.why}, nil
		}
	}
	errs = append(errs, errors.New("set --advertise-addr, for example "+
		`'{{ GetInterfaceIP "eth0" }}'`))
	return Choice{}, fmt.Errorf("%w: %w", ErrNoAddress, errors.Join(errs...))
}

func (s Interfaces) fromTemplate(tmpl string) (Choice, error) {
	all, err := s.All()
	if err != nil {
		return Choice{}, fmt.Errorf("list interfaces for --advertise-addr "+
			"template %q: %w", tmpl, err)
	}
	out, err := template.ParseIfAddrs(tmpl, all)
	if err != nil {
		return Choice{}, fmt.Errorf("invalid --advertise-addr template %q: %w",
			tmpl, err)
	}

	fields := strings.Fields(out)
	switch {
	case len(fields) == 0:
		return Choice{}, fmt.Errorf("%w: --advertise-addr template %q "+
			"yields no address on this host", ErrNoAddress, tmpl)
	case len(fields) > 1:
		return Choice{}, fmt.Errorf("--advertise-addr template %q yields "+
			"%d addresses (%s); narrow it to one", tmpl, len(fields), out)
	case net.ParseIP(fields[0]) == nil:
		return Choice{}, fmt.Errorf("--advertise-addr template %q yields "+
			"%q, which is not an IP address", tmpl, fields[0])
	}
	return Choice{
		Addr: fields[0], Source: SourceTemplate,
		Reason: fmt.Sprintf("--advertise-addr template %q", tmpl),
	}, nil
}

func (s Interfaces) upNonLoopback() (sockaddr.IfAddrs, error) {
	all, err := s.All()
	if err != nil {
		return nil, err
	}
	var out sockaddr.IfAddrs
	for _, a := range all {
		if a.Flags&net.FlagUp == 0 || a.Flags&net.FlagLoopback != 0 {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// firstIP returns the first IPv4 address of addrs, else the first IPv6
// address, else "". IPv6 link-local addresses are skipped, because they
// need a zone to be reached.
func firstIP(addrs sockaddr.IfAddrs) string {
	var v6 string
	for _, a := range addrs {
		ip := sockaddr.ToIPAddr(a.SockAddr)
		if ip == nil {
			continue
		}
		netIP := (*ip).NetIP()
		if netIP == nil || netIP.IsLoopback() || netIP.IsLinkLocalUnicast() {
			continue
		}
		if netIP.To4() != nil {
			return netIP.String()
		}
		if v6 == "" {
			v6 = netIP.String()
		}
	}
	return v6
}
