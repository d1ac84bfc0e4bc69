// Command etcd-member runs one etcd server from etcd's own server code at the
// version pinned in go.mod. The integration harness starts three of them as
// separate processes to form a real cluster; it takes etcd's usual flags.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
