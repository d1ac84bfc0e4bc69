// Package keyspace defines where remotegpu keeps its state in etcd and the
// JSON documents stored there. Both daemons build keys and decode values only
// through this package, so the layout lives in one place.
//
// Layout under a prefix (default "/remotegpu"):
//
//	<prefix>/hosts/<id>/info         HostInfo, written by the agent, no lease
//	<prefix>/hosts/<id>/status       HostStatus, written by the agent under its lease
//	<prefix>/hosts/<id>/allocations  Ledger, written only by coordinators
//	<prefix>/allocations/<alloc-id>  Allocation, written only by coordinators
//	<prefix>/idempotency/<key>       the allocation ID created for a request key
//	<prefix>/leases/<alloc-id>       the allocation ID, under the allocation's
//	                                 etcd lease; present while a TTL allocation lives
//
// Decoders validate what they read: a document written by hand with etcdctl
// that does not parse, has wrong types or negative quantities is rejected with
// an error naming the key, and callers skip it instead of trusting it.
package keyspace
