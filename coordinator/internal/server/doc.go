// Package server is the coordinator's HTTP/JSON API over a service.Fleet.
//
// Routes use net/http's method patterns ("GET /v1/hosts/{id}"). Every
// response body is JSON, errors included: an unknown path is a 404 and a
// known path with the wrong method is a 405 with an Allow header, both with
// an api.Error body. A path with an empty, "." or ".." segment, as sent or
// after decoding, is a 404 too, where net/http's mux would redirect. The
// message of every such 404 lists the routes. A GET endpoint rejects query
// parameters that it does not take with a 400.
//
// Guarantees:
//   - Request bodies are decoded strictly: one JSON object, no unknown or
//     repeated fields, no trailing data, at most api.MaxBodyBytes. A number
//     that is negative, fractional, non-numeric or beyond 2^63-1 is a 400
//     naming the field.
//   - Bad input gets a 4xx response. A 500 comes only from a fleet error
//     that maps to no sentinel, or from a panic, which the recover
//     middleware logs with its stack and turns into a JSON 500.
//   - The fleet's sentinel errors map to status codes: ErrInvalid 400,
//     ErrNotFound 404, ErrNoCapacity and ErrConflict 409 (distinguished by
//     api.Error.Code), ErrUnavailable 503.
//
// The server does not check semantics such as "a request must ask for
// something"; the fleet does, so that there is one source of truth.
package server
