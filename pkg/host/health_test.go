package host

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixedNow is the time a test checker stamps on its results.
var fixedNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// newTestChecker returns a SimpleHealthChecker whose clock is fixedNow.
func newTestChecker(timeout time.Duration) *SimpleHealthChecker {
	c := NewSimpleHealthChecker(timeout)
	c.now = func() time.Time { return fixedNow }
	return c
}

func TestSimpleHealthCheckerRules(t *testing.T) {
	tests := []struct {
		name       string
		host       *HostInfo
		wantStatus HealthStatus
		wantMsg    string
	}{
		{
			name:       "active idle host healthy",
			host:       idleHost("h1", res(8, 8, 1)),
			wantStatus: HealthHealthy,
			wantMsg:    "active, usage rate 0.000",
		},
		{
			name:       "usage 0.9 healthy",
			host:       newHost("h1", res(10, 10, 10), res(9, 9, 9)),
			wantStatus: HealthHealthy,
			wantMsg:    "usage rate 0.900",
		},
		{
			name:       "usage 0.96 unhealthy",
			host:       newHost("h1", res(100, 100, 100), res(96, 96, 96)),
			wantStatus: HealthUnhealthy,
			wantMsg:    "usage rate 0.960 is above the limit of 0.95",
		},
		{
			name:       "full host without gpu stays healthy",
			host:       newHost("h1", res(8, 8, 0), res(8, 8, 0)),
			wantStatus: HealthHealthy,
			wantMsg:    "usage rate 0.800",
		},
		{
			name:       "draining host unhealthy",
			host:       withStatus(idleHost("h1", res(8, 8, 1)), StatusDraining),
			wantStatus: HealthUnhealthy,
			wantMsg:    `status is "draining", want "active"`,
		},
		{
			name:       "unknown status unhealthy",
			host:       withStatus(idleHost("h1", res(8, 8, 1)), "maintenance"),
			wantStatus: HealthUnhealthy,
			wantMsg:    `status is "maintenance"`,
		},
		{
			name:       "empty status unhealthy",
			host:       withStatus(idleHost("h1", res(8, 8, 1)), ""),
			wantStatus: HealthUnhealthy,
			wantMsg:    `status is ""`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newTestChecker(time.Second).Check(context.Background(), tt.host)
			assert.Equal(t, tt.wantStatus, got.Status)
			assert.Contains(t, got.Message, tt.wantMsg)
			assert.Equal(t, "h1", got.HostID)
			assert.Equal(t, fixedNow, got.CheckedAt)
		})
	}
}

func TestSimpleHealthCheckerContext(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancelExpired := context.WithDeadline(context.Background(),
		time.Now().Add(-time.Second))
	defer cancelExpired()

	tests := []struct {
		name    string
		ctx     context.Context
		timeout time.Duration
		wantMsg string
	}{
		{"cancelled context", cancelled, time.Second,
			"check abandoned: context canceled"},
		{"expired context", expired, time.Second,
			"check abandoned: context deadline exceeded"},
		{"cancelled context without timeout", cancelled, 0,
			"check abandoned: context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := idleHost("h1", res(8, 8, 1))
			got := newTestChecker(tt.timeout).Check(tt.ctx, host)
			assert.Equal(t, HealthUnknown, got.Status)
			assert.Equal(t, tt.wantMsg, got.Message)
			assert.Equal(t, "h1", got.HostID)
			assert.Equal(t, fixedNow, got.CheckedAt)
		})
	}
}

func TestSimpleHealthCheckerTimeoutAppliesToContext(t *testing.T) {
	// A checker whose timeout is already used up reports unknown even
	// with a live caller context. A negative timeout would disable the
	// limit, so use the smallest positive one.
	c := newTestChecker(time.Nanosecond)
	require.Eventually(t, func() bool {
		got := c.Check(context.Background(), idleHost("h1", res(1, 1, 1)))
		return got.Status == HealthUnknown &&
			got.Message == "check abandoned: context deadline exceeded"
	}, time.Second, time.Millisecond)
}

func TestSimpleHealthCheckerNilHost(t *testing.T) {
	got := newTestChecker(time.Second).Check(context.Background(), nil)
	assert.Equal(t, HealthUnknown, got.Status)
	assert.Equal(t, "no host to check", got.Message)
	assert.Empty(t, got.HostID)
}

func TestSimpleHealthCheckerDoesNotModifyHost(t *testing.T) {
	host := newHost("h1", res(8, 8, 1), res(2, 2, 0))
	before := *host
	NewSimpleHealthChecker(time.Second).Check(context.Background(), host)
	assert.Equal(t, before, *host)
}

func TestNormalizeResult(t *testing.T) {
	got := normalizeResult(HealthCheckResult{
		HostID:  "other",
		Status:  "bogus",
		Message: "checker message",
	}, "h1")

	assert.Equal(t, "h1", got.HostID)
	assert.Equal(t, HealthUnknown, got.Status)
	assert.Equal(t,
		`checker returned invalid status "bogus": checker message`, got.Message)
	assert.False(t, got.CheckedAt.IsZero())
}
