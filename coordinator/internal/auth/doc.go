// Package auth protects the coordinator's mutating API routes with a
// static bearer token.
//
// The token is read from a file, so that it never appears in a command
// line or in the process environment, and LoadToken rejects a file that
// its group or other users may read or write (see pkg/secretfile). Requests are checked in constant
// time with crypto/subtle, so the time to reject a guess does not depend
// on how much of it matched. A rejected request gets 401 with a JSON
// api.Error and a WWW-Authenticate header; the server logs nothing about
// the presented value. Token redacts itself when printed or logged.
//
// Only the routes that change state are protected; reads, the health
// probes and /metrics stay open, so an operator should put the API on a
// trusted network or behind TLS when host details are sensitive.
package auth
