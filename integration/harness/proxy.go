package harness

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// proxyDialTimeout bounds the proxy's connection to its upstream.
const proxyDialTimeout = 2 * time.Second

// proxyMode selects the proxy's handling of connections.
type proxyMode int

const (
	modeForward   proxyMode = iota // forward to the upstream
	modeBlackhole                  // accept, then neither read nor respond
	modeReject                     // accept, then close at once
)

// ProxyStats counts the proxy's connections at one moment.
type ProxyStats struct {
	// Forwarding is the number of connections being forwarded.
	Forwarding int
	// Parked is the number of connections accepted during a Cut and held
	// without being read.
	Parked int
}

// Proxy is a TCP proxy on 127.0.0.1 that forwards to one upstream until
// the test cuts it. A cut looks to the client like a network partition:
// open connections drop, and new ones connect but get no response.
type Proxy struct {
	upstream string
	ln       net.Listener
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // accept loop and connection goroutines

	// mu guards the fields below.
	mu     sync.Mutex
	mode   proxyMode
	conns  map[*proxyConn]struct{}
	parked []net.Conn
	closed bool
}

// proxyConn is one forwarded client connection.
type proxyConn struct {
	client net.Conn
	// upstream is nil until the dial succeeds. Proxy.mu guards it and
	// dropped.
	upstream net.Conn
	dropped  bool
}

// StartProxy listens on a free 127.0.0.1 port and forwards every
// connection to upstream, given as host:port or as a URL such as
// "http://127.0.0.1:2379". The proxy closes when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	if u, err := url.Parse(upstream); err == nil && u.Host != "" {
		upstream = u.Host
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy for %s: listen: %v", upstream, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		upstream: upstream,
		ln:       ln,
		ctx:      ctx,
		cancel:   cancel,
		conns:    make(map[*proxyConn]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.Close)
	return p
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns the proxy's address as an http URL, for etcd endpoints.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// Upstream returns the host:port the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// Cut drops every open connection and holds new ones without reading
// them, until Restore.
func (p *Proxy) Cut() { p.setMode(modeBlackhole) }

// Reject drops every open connection and closes new ones right after
// accepting them, until Restore. Unlike Cut, clients see errors at once.
func (p *Proxy) Reject() { p.setMode(modeReject) }

// Restore forwards again. Connections held since a Cut are forwarded now,
// so a client's pending connection attempt completes.
func (p *Proxy) Restore() { p.setMode(modeForward) }

func (p *Proxy) setMode(mode proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.mode = mode
	switch mode {
	case modeForward:
		for _, c := range p.parked {
			p.forwardLocked(c)
		}
		p.parked = nil
	case modeBlackhole:
		p.dropAllLocked()
	case modeReject:
		p.dropAllLocked()
		closeAll(p.parked)
		p.parked = nil
	}
}

// Stats returns the current connection counts.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ProxyStats{Forwarding: len(p.conns), Parked: len(p.parked)}
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines. A second call does nothing.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.cancel()
	_ = p.ln.Close()
	p.dropAllLocked()
	closeAll(p.parked)
	p.parked = nil
	p.mu.Unlock()

	p.wg.Wait()
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept error, such as too many open files.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.admit(c)
	}
}

// admit handles a new connection according to the mode.
func (p *Proxy) admit(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed || p.mode == modeReject:
		_ = c.Close()
	case p.mode == modeBlackhole:
		p.parked = append(p.parked, c)
	default:
		p.forwardLocked(c)
	}
}

func (p *Proxy) forwardLocked(c net.Conn) {
	pc := &proxyConn{client: c}
	p.conns[pc] = struct{}{}
	p.wg.Add(1)
	go p.serve(pc)
}

// dropAllLocked closes both ends of every forwarded connection.
func (p *Proxy) dropAllLocked() {
	for pc := range p.conns {
		pc.dropped = true
		_ = pc.client.Close()
		if pc.upstream != nil {
			_ = pc.upstream.Close()
		}
		delete(p.conns, pc)
	}
}

// serve dials the upstream and copies both ways until both directions
// end or the connection is dropped.
func (p *Proxy) serve(pc *proxyConn) {
	defer p.wg.Done()
	defer p.forget(pc)

	d := net.Dialer{Timeout: proxyDialTimeout}
	up, err := d.DialContext(p.ctx, "tcp", p.upstream)
	if err != nil {
		return
	}
	p.mu.Lock()
	if pc.dropped {
		p.mu.Unlock()
		_ = up.Close()
		return
	}
	pc.upstream = up
	p.mu.Unlock()

	var copies sync.WaitGroup
	copies.Add(1)
	go func() {
		defer copies.Done()
		pipe(up, pc.client)
	}()
	pipe(pc.client, up)
	copies.Wait()
}

// forget closes both ends of pc and removes it from the proxy.
func (p *Proxy) forget(pc *proxyConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = pc.client.Close()
	if pc.upstream != nil {
		_ = pc.upstream.Close()
	}
	delete(p.conns, pc)
}

// pipe copies src to dst. At the end of src it half-closes dst, so the
// other direction can finish; on an error it closes both.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil {
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
			return
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// Proxies is one proxy per etcd member, so a process can be cut off from
// a whole cluster at once.
type Proxies []*Proxy

// StartProxies starts a proxy for each upstream.
func StartProxies(t testing.TB, upstreams []string) Proxies {
	t.Helper()
	ps := make(Proxies, len(upstreams))
	for i, u := range upstreams {
		ps[i] = StartProxy(t, u)
	}
	return ps
}

// URLs returns the proxies' URLs in upstream order, for --etcd-endpoints.
func (ps Proxies) URLs() []string {
	urls := make([]string, len(ps))
	for i, p := range ps {
		urls[i] = p.URL()
	}
	return urls
}

// Cut cuts every proxy.
func (ps Proxies) Cut() {
	for _, p := range ps {
		p.Cut()
	}
}

// Reject makes every proxy reject connections.
func (ps Proxies) Reject() {
	for _, p := range ps {
		p.Reject()
	}
}

// Restore restores every proxy.
func (ps Proxies) Restore() {
	for _, p := range ps {
		p.Restore()
	}
}
