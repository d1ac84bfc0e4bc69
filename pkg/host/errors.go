package host

import "errors"

// Sentinel errors. Every error the package returns for one of these
// outcomes wraps the matching sentinel with the host ID, the field or the
// shortfall, so callers branch with errors.Is and show err.Error() as is.
var (
	// ErrHostNotFound means that no host with the given ID is registered.
	ErrHostNotFound = errors.New("host not found")

	// ErrHostExists means that a host with the given ID is already
	// registered. Use UpsertHost to replace it.
	ErrHostExists = errors.New("host already registered")

	// ErrNoHostAvailable means that no eligible host fits a request. The
	// wrapping error gives the reason: no hosts, no active hosts, or the
	// resource that every active host lacks.
	ErrNoHostAvailable = errors.New("no host available")

	// ErrInvalidRequirement means that a resource requirement has a
	// negative field. The wrapping error names the field and its value.
	ErrInvalidRequirement = errors.New("invalid resource requirement")

	// ErrInvalidHost means that a HostInfo failed validation: an empty ID,
	// a negative amount, or more used than the total.
	ErrInvalidHost = errors.New("invalid host")

	// ErrInsufficientResources means that a reservation requests more of
	// a resource than the host has free.
	ErrInsufficientResources = errors.New("insufficient resources")

	// ErrReleaseExceedsUsage means that a release frees more of a resource
	// than the host has in use.
	ErrReleaseExceedsUsage = errors.New("release exceeds usage")
)
