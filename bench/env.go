package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/YoungBoyGod/remotegpu/pkg/etcdembed"
)

// Etcd is an embedded etcd member in a temporary folder with a client.
type Etcd struct {
	Server   *etcdembed.Server
	Client   *clientv3.Client
	Endpoint string
	dir      string
}

// StartEtcd starts an embedded member on free 127.0.0.1 ports with its
// data in a new folder under tmp. Close stops it and removes the folder.
func StartEtcd(tmp string) (*Etcd, error) {
	dir, err := os.MkdirTemp(tmp, "etcd-")
	if err != nil {
		return nil, fmt.Errorf("create etcd folder: %w", err)
	}
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	e := &Etcd{dir: dir, Endpoint: localURL(ports[0])}
	e.Server, err = etcdembed.Start(etcdembed.Config{
		DataDir:   filepath.Join(dir, "data"),
		ClientURL: e.Endpoint,
		PeerURL:   localURL(ports[1]),
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	e.Client, err = NewEtcdClient(e.Endpoint)
	if err != nil {
		e.Server.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return e, nil
}

// NewEtcdClient returns a client of endpoint that allows large responses,
// as listing 10,000 hosts needs.
func NewEtcdClient(endpoint string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          []string{endpoint},
		DialTimeout:        5 * time.Second,
		MaxCallRecvMsgSize: 256 << 20,
		Logger:             zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", endpoint, err)
	}
	return cli, nil
}

// Revision returns the store's current revision.
func (e *Etcd) Revision(ctx context.Context) (int64, error) {
	resp, err := e.Client.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read etcd revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// Close closes the client and the member and removes the data.
func (e *Etcd) Close() error {
	err := e.Client.Close()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	e.Server.Close()
	return errors.Join(err, os.RemoveAll(e.dir))
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1. Another
// process may take one before the caller binds it, which is unlikely on a
// test machine.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func localURL(port int) string {
	return "http://127.0.0.1:" + strconv.Itoa(port)
}
