package server

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/keyspace"
)

// filterHint is the advice in the message for a query that does not parse.
const filterHint = "separate parameters with & and percent-encode special " +
	"characters in values (; as %3B, % as %25, & as %26)"

// allocationFilterNames are the query parameters of GET /v1/allocations.
var allocationFilterNames = []string{"host", "owner", "state"}

var allocationStates = []string{
	keyspace.StateActive, keyspace.StateLost,
	keyspace.StateExpired, keyspace.StateReleased,
}

// parseQuery parses a raw query with url.ParseQuery and rejects it whole
// when any part fails. r.URL.Query() instead drops the parts it cannot
// parse, which would turn "state=lost;owner=me" into no filter at all.
// hint is what the client should send instead.
func parseQuery(rawQuery, hint string) (url.Values, error) {
	q, err := url.ParseQuery(rawQuery)
	if err == nil {
		return q, nil
	}

	// Parse the parts one by one to name the first that fails.
	for part := range strings.SplitSeq(rawQuery, "&") {
		if _, partErr := url.ParseQuery(part); partErr != nil {
			return nil, invalidf("invalid query part %q: %v; %s", part, partErr, hint)
		}
	}
	return nil, invalidf("invalid query %q: %v; %s", rawQuery, err, hint)
}

// allocationFilter reads the query of GET /v1/allocations. A query that
// does not parse, unknown or repeated parameters, empty values and
// invalid values are errors, so that a typo does not silently list
// everything.
func allocationFilter(rawQuery string) (service.AllocationFilter, error) {
	var f service.AllocationFilter
	q, err := parseQuery(rawQuery, filterHint)
	if err != nil {
		return f, err
	}

	// Sorted, so that a query with several faults always gets the same
	// message.
	for _, name := range slices.Sorted(maps.Keys(q)) {
		v, err := filterValue(name, q[name])
		if err != nil {
			return f, err
		}
		switch name {
		case "host":
			if err := keyspace.ValidID(v); err != nil {
				return f, invalidf("query parameter host: %v", err)
			}
			f.HostID = v
		case "owner":
			if len(v) > MaxOwnerBytes {
				return f, invalidf("query parameter owner is %d bytes long, more than "+
					"the maximum of %d bytes", len(v), MaxOwnerBytes)
			}
			f.Owner = v
		case "state":
			if !slices.Contains(allocationStates, v) {
				return f, invalidf("query parameter state is %q; use one of %s",
					v, strings.Join(allocationStates, ", "))
			}
			f.State = v
		}
	}
	return f, nil
}

// filterValue returns the single, non-empty value of the filter name.
func filterValue(name string, values []string) (string, error) {
	switch {
	case !slices.Contains(allocationFilterNames, name):
		return "", invalidf("unknown query parameter %q; use host, owner or state", name)
	case len(values) > 1:
		return "", invalidf("query parameter %q is given %d times; give it once",
			name, len(values))
	case values[0] == "":
		return "", invalidf("query parameter %q is empty; give a value, "+
			"or omit it to list all allocations", name)
	}
	return values[0], nil
}

// rejectQuery rejects every query parameter of an endpoint that takes
// none, so that a parameter meant as a filter or option does not silently
// go unused.
func rejectQuery(r *http.Request) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	noQuery := fmt.Sprintf("%s takes no query parameters", r.URL.Path)
	q, err := parseQuery(r.URL.RawQuery, noQuery)
	if err != nil {
		return err
	}
	if len(q) == 0 {
		return nil
	}
	name := slices.Sorted(maps.Keys(q))[0]
	return invalidf("unknown query parameter %q; %s", name, noQuery)
}
