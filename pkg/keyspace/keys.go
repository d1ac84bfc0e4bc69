package keyspace

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultPrefix is the key prefix used when none is configured.
const DefaultPrefix = "/remotegpu"

// Names of the per-host keys below <prefix>/hosts/<id>/.
const (
	HostInfoKey   = "info"
	HostStatusKey = "status"
	HostLedgerKey = "allocations"
)

// KeyKind tells what a parsed key refers to.
type KeyKind int

// Kinds of keys that ParseKey recognises.
const (
	KindUnknown KeyKind = iota
	KindHostInfo
	KindHostStatus
	KindHostLedger
	KindAllocation
	KindIdempotency
	KindAllocationLease
)

// String returns the kind's name for logs.
func (k KeyKind) String() string {
	switch k {
	case KindHostInfo:
		return "host info"
	case KindHostStatus:
		return "host status"
	case KindHostLedger:
		return "host ledger"
	case KindAllocation:
		return "allocation"
	case KindIdempotency:
		return "idempotency key"
	case KindAllocationLease:
		return "allocation lease"
	default:
		return "unknown"
	}
}

// ErrUnknownKey is returned by ParseKey for a key under the prefix that does
// not match the layout, such as one with an unexpected depth.
var ErrUnknownKey = errors.New("key does not match the remotegpu layout")

// Keyspace builds and parses keys under one prefix. The zero value is not
// usable; create one with New.
type Keyspace struct {
	prefix string
}

// New returns a Keyspace rooted at prefix. The prefix must start with "/" and
// must not end with one; "/remotegpu" is the default.
func New(prefix string) (Keyspace, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Keyspace{}, err
	}
	return Keyspace{prefix: prefix}, nil
}

// ValidatePrefix checks a key prefix given on the command line.
func ValidatePrefix(prefix string) error {
	switch {
	case prefix == "":
		return errors.New(`invalid prefix "": it must not be empty; use e.g. "/remotegpu"`)
	case !strings.HasPrefix(prefix, "/"):
		return fmt.Errorf("invalid prefix %q: it must start with \"/\"", prefix)
	case len(prefix) > 1 && strings.HasSuffix(prefix, "/"):
		return fmt.Errorf("invalid prefix %q: remove the trailing \"/\"", prefix)
	case prefix == "/":
		return errors.New(`invalid prefix "/": use a named prefix such as "/remotegpu"`)
	}
	return nil
}

// Prefix returns the root of every key, without a trailing slash.
func (k Keyspace) Prefix() string { return k.prefix }

// Root returns the prefix with a trailing slash, for listing and watching
// everything remotegpu stores.
func (k Keyspace) Root() string { return k.prefix + "/" }

// HostsPrefix returns the prefix of every per-host key.
func (k Keyspace) HostsPrefix() string { return k.prefix + "/hosts/" }

// HostPrefix returns the prefix of the keys of one host.
func (k Keyspace) HostPrefix(hostID string) string {
	return k.HostsPrefix() + hostID + "/"
}

// HostInfo returns the key of a host's registration document.
func (k Keyspace) HostInfo(hostID string) string {
	return k.HostPrefix(hostID) + HostInfoKey
}

// HostStatus returns the key of a host's live status, which the agent keeps
// attached to its lease.
func (k Keyspace) HostStatus(hostID string) string {
	return k.HostPrefix(hostID) + HostStatusKey
}

// HostLedger returns the key of a host's allocation ledger.
func (k Keyspace) HostLedger(hostID string) string {
	return k.HostPrefix(hostID) + HostLedgerKey
}

// AllocationsPrefix returns the prefix of every allocation record.
func (k Keyspace) AllocationsPrefix() string { return k.prefix + "/allocations/" }

// Allocation returns the key of one allocation record.
func (k Keyspace) Allocation(allocID string) string {
	return k.AllocationsPrefix() + allocID
}

// IdempotencyPrefix returns the prefix of every idempotency key.
func (k Keyspace) IdempotencyPrefix() string { return k.prefix + "/idempotency/" }

// Idempotency returns the key that maps a request's idempotency key to the
// allocation created for it.
func (k Keyspace) Idempotency(requestKey string) string {
	return k.IdempotencyPrefix() + requestKey
}

// AllocationLeasesPrefix returns the prefix of every allocation lease key.
func (k Keyspace) AllocationLeasesPrefix() string { return k.prefix + "/leases/" }

// AllocationLease returns the key that a coordinator attaches to the etcd
// lease of an allocation with a TTL. etcd deletes the key when the lease
// expires, which tells coordinators that the allocation expired.
func (k Keyspace) AllocationLease(allocID string) string {
	return k.AllocationLeasesPrefix() + allocID
}

// ParsedKey is a key split into its parts.
type ParsedKey struct {
	Kind KeyKind
	// ID is the host ID for host keys, the allocation ID for allocation
	// records and allocation leases, and the request key for idempotency
	// keys.
	ID string
}

// ParseKey splits a key read from etcd. It returns ErrUnknownKey, wrapped
// with the key, for anything under the prefix that is not part of the layout.
func (k Keyspace) ParseKey(key string) (ParsedKey, error) {
	rest, ok := strings.CutPrefix(key, k.Root())
	if !ok {
		return ParsedKey{}, fmt.Errorf("key %q is outside prefix %q: %w", key, k.prefix, ErrUnknownKey)
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 3 && parts[0] == "hosts" && ValidID(parts[1]) == nil:
		switch parts[2] {
		case HostInfoKey:
			return ParsedKey{Kind: KindHostInfo, ID: parts[1]}, nil
		case HostStatusKey:
			return ParsedKey{Kind: KindHostStatus, ID: parts[1]}, nil
		case HostLedgerKey:
			return ParsedKey{Kind: KindHostLedger, ID: parts[1]}, nil
		}
	case len(parts) == 2 && parts[0] == "allocations" && ValidID(parts[1]) == nil:
		return ParsedKey{Kind: KindAllocation, ID: parts[1]}, nil
	case len(parts) == 2 && parts[0] == "idempotency" && ValidID(parts[1]) == nil:
		return ParsedKey{Kind: KindIdempotency, ID: parts[1]}, nil
	case len(parts) == 2 && parts[0] == "leases" && ValidID(parts[1]) == nil:
		return ParsedKey{Kind: KindAllocationLease, ID: parts[1]}, nil
	}
	return ParsedKey{}, fmt.Errorf("key %q: %w", key, ErrUnknownKey)
}

// MaxIDLength is the longest host ID, allocation ID or idempotency key.
const MaxIDLength = 128

// ValidID checks a host ID, allocation ID or idempotency key: 1 to 128
// characters from letters, digits, '.', '_', ':' and '-', not starting with
// '.'. IDs become key segments, so a '/' would change the layout.
func ValidID(id string) error {
	if id == "" {
		return errors.New("ID is empty")
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("ID %q is %d characters long, more than the maximum of %d", id, len(id), MaxIDLength)
	}
	if id[0] == '.' {
		return fmt.Errorf("ID %q must not start with '.'", id)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '.', r == '_', r == '-', r == ':':
		default:
			return fmt.Errorf("ID %q contains %q; use only letters, digits, '.', '_', ':' and '-'", id, r)
		}
	}
	return nil
}
