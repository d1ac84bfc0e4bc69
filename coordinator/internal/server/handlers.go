package server

import (
	"fmt"
	"net/http"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// pathID returns the {id} path value after checking that it is a valid
// host or allocation ID, so that a malformed ID gets a 400 that explains
// the problem rather than a 404.
func pathID(r *http.Request, kind string) (string, error) {
	id := r.PathValue("id")
	if err := keyspace.ValidID(id); err != nil {
		return "", fmt.Errorf("%w: %s ID in path: %v", service.ErrInvalid, kind, err)
	}
	return id, nil
}

// pathIDOnly is pathID for routes that take no query parameters: it also
// rejects any query.
func pathIDOnly(r *http.Request, kind string) (string, error) {
	id, err := pathID(r, kind)
	if err != nil {
		return "", err
	}
	return id, rejectQuery(r)
}

// acceptEmptyBody limits the body of a parameterless POST and accepts it if
// it is empty or "{}" sent as JSON.
func acceptEmptyBody(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength == 0 {
		return nil
	}
	if err := checkBodyHeaders(r); err != nil {
		return err
	}
	return decodeEmptyBody(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
}

// checkBodyHeaders rejects a body that declares itself too large or not
// JSON before any of it is read.
func checkBodyHeaders(r *http.Request) error {
	if r.ContentLength > api.MaxBodyBytes {
		return errTooLarge()
	}
	return requireJSON(r)
}

// decodeAllocationBody reads the body of POST /v1/allocations and POST
// /v1/select, which take no query parameters.
func (s *Server) decodeAllocationBody(w http.ResponseWriter,
	r *http.Request) (api.AllocationRequest, error) {
	if err := rejectQuery(r); err != nil {
		return api.AllocationRequest{}, err
	}
	if r.ContentLength != 0 {
		if err := checkBodyHeaders(r); err != nil {
			return api.AllocationRequest{}, err
		}
	}
	return DecodeAllocationRequest(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.fleet.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, api.Error{
			Error: "not ready: the coordinator has not yet loaded the fleet from etcd",
			Code:  api.CodeUnavailable,
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
