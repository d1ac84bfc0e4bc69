package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"runtime/debug"
	"strings"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

// statusWriter records the status code sent through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) statusCode() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// recovered logs a handler's panic and sends a 500 if nothing was sent yet.
// http.ErrAbortHandler is re-raised because net/http uses it on purpose to
// abort a response.
func (s *Server) recovered(w *statusWriter, r *http.Request, p any) {
	if p == http.ErrAbortHandler {
		panic(p)
	}
	s.log.LogAttrs(r.Context(), slog.LevelError, "panic in HTTP handler",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("panic", fmt.Sprint(p)),
		slog.String("stack", string(debug.Stack())))
	if w.status == 0 {
		writeJSON(w, http.StatusInternalServerError, api.Error{
			Error: "internal error; see the coordinator log",
			Code:  api.CodeInternal,
		})
	}
}

// route serves a request through the mux. When no route matches, the
// mux's own plain-text 404, 405 or redirect gets a JSON body instead, and
// its headers, such as Allow and Location, are kept.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	// The mux redirects an unclean path with a redirect, even when a
	// pattern matches its cleaned form.
	if _, pattern := s.mux.Handler(r); pattern != "" && !needsCleaning(r.URL.Path) {
		s.mux.ServeHTTP(w, r)
		return
	}

	rec := &bufferedResponse{header: make(http.Header)}
	s.mux.ServeHTTP(rec, r)
	for k, v := range rec.header {
		w.Header()[k] = v
	}

	switch rec.status {
	case http.StatusNotFound:
		writeJSON(w, rec.status, api.Error{
			Error: fmt.Sprintf("no such path %q; the API lives under /v1", r.URL.Path),
			Code:  api.CodeNotFound,
		})
	case http.StatusMethodNotAllowed:
		writeJSON(w, rec.status, api.Error{
			Error: fmt.Sprintf("method %s is not allowed on %s; use %s",
				r.Method, r.URL.Path, rec.header.Get("Allow")),
			Code: api.CodeMethodNotAllowed,
		})
	default:
		// A redirect to the cleaned path, such as /v1//hosts to /v1/hosts,
		// keeps its status and Location with a JSON body.
		writeJSON(w, rec.statusCode(), map[string]string{"location": rec.header.Get("Location")})
	}
}

// bufferedResponse captures the small responses that the mux generates
// itself when no route matches.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedResponse) statusCode() int {
	if b.status == 0 {
		return http.StatusOK
	}
	return b.status
}

// needsCleaning reports whether the mux would redirect p to a cleaned path,
// which it does for "//", "." and ".." segments.
func needsCleaning(p string) bool {
	cleaned := path.Clean(p)
	if strings.HasSuffix(p, "/") && cleaned != "/" {
		cleaned += "/"
	}
	return cleaned != p
}
