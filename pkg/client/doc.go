// Package client is a typed Go client for the remotegpu coordinator's HTTP
// API (the documents in pkg/api).
//
// Every method takes a context first. Each HTTP attempt is bounded by the
// client's timeout (30 s unless WithTimeout sets another) and by the
// context.
//
// Retries: a call is retried, with jittered exponential backoff and at most
// 4 attempts by default, only when repeating it cannot change the outcome
// and only after a connection error or a 503. That covers every GET, the
// dry-run Select, Release (DELETE of an allocation), Renew, and Allocate
// with an idempotency key. Allocate without a key, Drain, Undrain and
// RemoveHost are sent once.
//
// Errors: a response with an error status becomes an *APIError that keeps
// the status code, the api.Error code and the server's message, and that
// matches the sentinels ErrInvalid, ErrNotFound, ErrNoCapacity, ErrConflict,
// ErrUnauthorized and ErrUnavailable with errors.Is. A connection error
// that survives the retries matches ErrUnavailable too.
//
// KeepAlive renews an allocation until its context ends or a renewal
// fails, and releases it before returning in every case.
package client
