package host

import (
	"context"
	"fmt"
	"time"
)

// HealthStatus is the outcome of a health check.
type HealthStatus string

// Health statuses. Only HealthUnhealthy excludes a host from selection in
// a HostManager; a host that was never checked counts as HealthUnknown.
const (
	// HealthHealthy means the last check passed.
	HealthHealthy HealthStatus = "healthy"
	// HealthUnhealthy means the last check failed.
	HealthUnhealthy HealthStatus = "unhealthy"
	// HealthUnknown means the check could not decide, for example because
	// its context expired.
	HealthUnknown HealthStatus = "unknown"
)

// valid reports whether s is one of the three defined statuses.
func (s HealthStatus) valid() bool {
	switch s {
	case HealthHealthy, HealthUnhealthy, HealthUnknown:
		return true
	}
	return false
}

// MaxHealthyUsageRate is the highest UsageRate at which
// SimpleHealthChecker still reports a host healthy.
const MaxHealthyUsageRate = 0.95

// DefaultHealthCheckTimeout is the timeout of the SimpleHealthChecker
// used when none is given: by NewHostManager without a monitor, and by
// NewHealthMonitor with a nil checker.
const DefaultHealthCheckTimeout = 5 * time.Second

// HealthCheckResult is the outcome of one check of one host.
type HealthCheckResult struct {
	HostID string       `json:"host_id"`
	Status HealthStatus `json:"status"`
	// Message explains the status in a sentence fit for an operator.
	Message   string    `json:"message"`
	CheckedAt time.Time `json:"checked_at"`
}

// HealthChecker checks one host. Check never returns an error: a check
// that cannot decide, including one whose context is cancelled or expires,
// returns HealthUnknown with a message saying why. Check must not modify
// host, and it must be safe for concurrent use.
type HealthChecker interface {
	Check(ctx context.Context, host *HostInfo) HealthCheckResult
}

// SimpleHealthChecker judges a host from its HostInfo alone. It reports
// HealthUnhealthy when the host's Status is not StatusActive or its
// UsageRate is above MaxHealthyUsageRate, and HealthHealthy otherwise. It
// is safe for concurrent use.
type SimpleHealthChecker struct {
	timeout time.Duration
	// now returns the time stored in CheckedAt; tests replace it.
	now func() time.Time
}

var _ HealthChecker = (*SimpleHealthChecker)(nil)

// NewSimpleHealthChecker returns a checker that gives each check at most
// timeout, counted through the context passed to Check. A timeout of 0 or
// less leaves the caller's context as it is.
func NewSimpleHealthChecker(timeout time.Duration) *SimpleHealthChecker {
	return &SimpleHealthChecker{timeout: timeout, now: time.Now}
}

// Check applies the checker's rules to host. It returns HealthUnknown
// when host is nil or when ctx, bounded by the checker's timeout, is done
// before or after the rules are applied.
func (c *SimpleHealthChecker) Check(
	ctx context.Context, host *HostInfo,
) HealthCheckResult {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}

	result := HealthCheckResult{Status: HealthUnknown}
	if host == nil {
		result.Message = "no host to check"
		result.CheckedAt = c.now()
		return result
	}
	result.HostID = host.ID

	if err := ctx.Err(); err != nil {
		return c.abandon(result, err)
	}
	result.Status, result.Message = judge(host)
	if err := ctx.Err(); err != nil {
		return c.abandon(result, err)
	}

	result.CheckedAt = c.now()
	return result
}

// abandon turns result into HealthUnknown because the check's context
// ended with err.
func (c *SimpleHealthChecker) abandon(
	result HealthCheckResult, err error,
) HealthCheckResult {
	result.Status = HealthUnknown
	result.Message = fmt.Sprintf("check abandoned: %v", err)
	result.CheckedAt = c.now()
	return result
}

// judge applies SimpleHealthChecker's rules and explains the outcome.
func judge(host *HostInfo) (HealthStatus, string) {
	if !host.isActive() {
		return HealthUnhealthy, fmt.Sprintf("status is %q, want %q",
			host.Status, StatusActive)
	}

	usage := host.UsageRate()
	if usage > MaxHealthyUsageRate {
		return HealthUnhealthy, fmt.Sprintf(
			"usage rate %.3f is above the limit of %.2f",
			usage, MaxHealthyUsageRate)
	}
	return HealthHealthy, fmt.Sprintf("active, usage rate %.3f", usage)
}

// normalizeResult fills what a checker left out of result: the host ID,
// the check time and a defined status. An undefined status becomes
// HealthUnknown, and the message keeps the returned value.
func normalizeResult(result HealthCheckResult, hostID string) HealthCheckResult {
	result.HostID = hostID
	if result.CheckedAt.IsZero() {
		result.CheckedAt = time.Now()
	}
	if !result.Status.valid() {
		result.Message = fmt.Sprintf("checker returned invalid status %q: %s",
			result.Status, result.Message)
		result.Status = HealthUnknown
	}
	return result
}
