package harness

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// Await polls cond every interval until it returns true and returns the
// time that took, measured from the call. It fails the test with msg when
// timeout passes first. Scenarios use the result as a detection or
// recovery time, accurate to about one interval.
func Await(t testing.TB, timeout, interval time.Duration,
	cond func() bool, msg string) time.Duration {
	t.Helper()
	d, ok := poll(timeout, interval, cond)
	if !ok {
		t.Fatalf("timed out after %s: %s", timeout, msg)
	}
	return d
}

// poll calls cond every interval until it returns true or timeout passes.
func poll(timeout, interval time.Duration,
	cond func() bool) (time.Duration, bool) {
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		<-tick.C
	}
}

// httpProbeTimeout bounds one request of WaitHTTPOK.
const httpProbeTimeout = time.Second

// probeClient keeps no idle connections, so that no connection goroutine
// outlives a probe and trips the leak check in Main.
var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
}

// WaitHTTPOK polls url with GET until it returns 200 OK, such as a
// coordinator's /readyz, and fails the test when timeout passes first.
func WaitHTTPOK(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	var last string
	_, ok := poll(timeout, 100*time.Millisecond, func() bool {
		status, err := httpStatus(url)
		if err != nil {
			last = err.Error()
			return false
		}
		last = "HTTP status " + http.StatusText(status)
		return status == http.StatusOK
	})
	if !ok {
		t.Fatalf("GET %s not 200 OK within %s; last result: %s",
			url, timeout, last)
	}
}

func httpStatus(url string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(),
		httpProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, resp.Body.Close()
}
