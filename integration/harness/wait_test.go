package harness

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAwaitReturnsElapsedTime(t *testing.T) {
	calls := 0
	d := Await(t, time.Second, 10*time.Millisecond, func() bool {
		calls++
		return calls == 3
	}, "third call")
	require.Equal(t, 3, calls)
	require.GreaterOrEqual(t, d, 20*time.Millisecond)
	require.Less(t, d, time.Second)
}

func TestAwaitTimeoutFails(t *testing.T) {
	rec := &recordingTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		Await(rec, 50*time.Millisecond, 10*time.Millisecond,
			func() bool { return false }, "never true")
	}()
	require.True(t, rec.failed)
	require.Contains(t, rec.message, "timed out after 50ms: never true")
}

func TestWaitHTTPOKNamesLastError(t *testing.T) {
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", FreePort(t))
	rec := &recordingTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		WaitHTTPOK(rec, url, 300*time.Millisecond)
	}()
	require.True(t, rec.failed)
	require.Contains(t, rec.message, url)
	require.Contains(t, rec.message, "connection refused")
}
