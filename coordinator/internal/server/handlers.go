package server

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

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

func (s *Server) decodeAllocationBody(w http.ResponseWriter,
	r *http.Request) (api.AllocationRequest, error) {
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

// allocationFilter reads the query of GET /v1/allocations. Unknown or
// repeated parameters and invalid values are errors, so that a typo does
// not silently list everything.
func allocationFilter(q url.Values) (service.AllocationFilter, error) {
	var f service.AllocationFilter
	for name, values := range q {
		if len(values) > 1 {
			return f, fmt.Errorf("%w: query parameter %q is given %d times; give it once",
				service.ErrInvalid, name, len(values))
		}
		switch v := values[0]; name {
		case "host":
			if err := keyspace.ValidID(v); err != nil {
				return f, fmt.Errorf("%w: query parameter host: %v", service.ErrInvalid, err)
			}
			f.HostID = v
		case "owner":
			if len(v) > MaxOwnerBytes {
				return f, fmt.Errorf("%w: query parameter owner is %d bytes long, more than "+
					"the maximum of %d bytes", service.ErrInvalid, len(v), MaxOwnerBytes)
			}
			f.Owner = v
		case "state":
			if !slices.Contains(allocationStates, v) {
				return f, fmt.Errorf("%w: query parameter state is %q; use one of %s",
					service.ErrInvalid, v, strings.Join(allocationStates, ", "))
			}
			f.State = v
		default:
			return f, fmt.Errorf("%w: unknown query parameter %q; use host, owner or state",
				service.ErrInvalid, name)
		}
	}
	return f, nil
}

// rejectQuery rejects every query parameter of a GET endpoint that takes
// none, so that a parameter meant as a filter does not silently return
// everything.
func rejectQuery(r *http.Request) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fmt.Errorf("%w: invalid query %q: %v; %s takes no query parameters",
			service.ErrInvalid, r.URL.RawQuery, err, r.URL.Path)
	}
	if len(q) == 0 {
		return nil
	}
	name := slices.Sorted(maps.Keys(q))[0]
	return fmt.Errorf("%w: unknown query parameter %q; %s takes no query parameters",
		service.ErrInvalid, name, r.URL.Path)
}

var allocationStates = []string{
	keyspace.StateActive, keyspace.StateLost,
	keyspace.StateExpired, keyspace.StateReleased,
}
