// Command etcd is the etcd server, built from the pinned go.etcd.io/etcd/server/v3.
//
// etcd's own main package sits in the repository's root module (go.etcd.io/etcd/v3),
// which is not published for use as a dependency; it only calls etcdmain.Main, and
// so does this file.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
