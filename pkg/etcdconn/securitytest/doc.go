// Package securitytest runs the real agent and coordinator binaries
// against etcd with TLS client certificates and with password
// authentication, and checks that no secret reaches their logs, errors,
// inspect output or metrics. It holds tests only.
package securitytest
