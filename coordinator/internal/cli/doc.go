// Package cli is the command line of remotegpu-coordinator: the serve
// command that runs a coordinator (with an embedded etcd member unless
// --etcd-endpoints names a cluster) and the client commands that call a
// coordinator's HTTP API through pkg/client.
//
// Every flag can also be set from its REMOTEGPU_<FLAG> environment
// variable; a flag on the command line wins. Client commands print
// human-readable text, or the API's JSON documents with --json, and exit
// with status 1 and the API's message when a call fails. A usage error
// (an unknown command, or an invalid flag, argument or variable) exits
// with status 2, in every command.
package cli
