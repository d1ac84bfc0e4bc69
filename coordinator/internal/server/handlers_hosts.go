package server

import (
	"net/http"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	if err := rejectQuery(r); err != nil {
		s.fail(w, r, err)
		return
	}
	hosts, err := s.fleet.ListHosts(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list := api.HostList{Hosts: make([]api.Host, 0, len(hosts))}
	for _, h := range hosts {
		list.Hosts = append(list.Hosts, normalizeHost(h))
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	id, err := pathIDOnly(r, "host")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h, err := s.fleet.GetHost(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, hostAttr(id))
		return
	}
	writeJSON(w, http.StatusOK, normalizeHost(h))
}

func (s *Server) hostHealth(w http.ResponseWriter, r *http.Request) {
	id, err := pathIDOnly(r, "host")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hh, err := s.fleet.HostHealth(r.Context(), id)
	if err != nil {
		s.fail(w, r, err, hostAttr(id))
		return
	}
	writeJSON(w, http.StatusOK, hh)
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	s.setDraining(w, r, true)
}

func (s *Server) undrain(w http.ResponseWriter, r *http.Request) {
	s.setDraining(w, r, false)
}

func (s *Server) setDraining(w http.ResponseWriter, r *http.Request, draining bool) {
	id, err := pathIDOnly(r, "host")
	if err == nil {
		err = acceptEmptyBody(w, r)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}

	var h api.Host
	if draining {
		h, err = s.fleet.Drain(r.Context(), id)
	} else {
		h, err = s.fleet.Undrain(r.Context(), id)
	}
	if err != nil {
		s.fail(w, r, err, hostAttr(id))
		return
	}
	writeJSON(w, http.StatusOK, normalizeHost(h))
}

func (s *Server) removeHost(w http.ResponseWriter, r *http.Request) {
	id, err := pathIDOnly(r, "host")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.fleet.RemoveHost(r.Context(), id); err != nil {
		s.fail(w, r, err, hostAttr(id))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// normalizeHost sends a host without GPUs as "gpus": [] rather than null.
func normalizeHost(h api.Host) api.Host {
	if h.GPUs == nil {
		h.GPUs = []api.GPU{}
	}
	return h
}
