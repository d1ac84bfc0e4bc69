package server

import (
	"net/http"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

func (s *Server) selectHost(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeAllocationBody(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sel, err := s.fleet.Select(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if sel.GPUs == nil {
		sel.GPUs = []api.AllocatedGPU{}
	}
	writeJSON(w, http.StatusOK, sel)
}

func (s *Server) allocate(w http.ResponseWriter, r *http.Request) {
	req, err := s.decodeAllocationBody(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	alloc, created, err := s.fleet.Allocate(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}

	// The fleet logs state changes; the handler only picks the status.
	w.Header().Set("Location", "/v1/allocations/"+alloc.ID)
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	writeJSON(w, status, normalizeAllocation(alloc))
}

func (s *Server) listAllocations(w http.ResponseWriter, r *http.Request) {
	f, err := allocationFilter(r.URL.RawQuery)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	allocs, err := s.fleet.ListAllocations(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list := api.AllocationList{Allocations: make([]api.Allocation, 0, len(allocs))}
	for _, a := range allocs {
		list.Allocations = append(list.Allocations, normalizeAllocation(a))
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getAllocation(w http.ResponseWriter, r *http.Request) {
	id, err := pathIDOnly(r, "allocation")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	alloc, err := s.fleet.GetAllocation(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, allocAttr(id))
		return
	}
	writeJSON(w, http.StatusOK, normalizeAllocation(alloc))
}

func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	id, err := pathIDOnly(r, "allocation")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	alloc, err := s.fleet.Release(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, allocAttr(id))
		return
	}
	writeJSON(w, http.StatusOK, normalizeAllocation(alloc))
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	id, err := pathIDOnly(r, "allocation")
	if err == nil {
		err = acceptEmptyBody(w, r)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	alloc, err := s.fleet.Renew(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, allocAttr(id))
		return
	}
	writeJSON(w, http.StatusOK, normalizeAllocation(alloc))
}

// normalizeAllocation sends an allocation without GPUs as "gpus": [] rather
// than null.
func normalizeAllocation(a api.Allocation) api.Allocation {
	if a.GPUs == nil {
		a.GPUs = []api.AllocatedGPU{}
	}
	return a
}
