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

// route serves a request through the mux. A path that is not in
// canonical form gets a JSON 404 rather than the mux's redirect to the
// cleaned path, and no handler runs for it. When no route matches, the
// mux's plain-text 404 or 405 gets a JSON body, and the 405 keeps its
// Allow header.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if cleaned, unclean := uncleanPath(r); unclean {
		s.notFound(w, fmt.Sprintf("path %q is not in canonical form because it "+
			"contains an empty, \".\" or \"..\" segment%s", r.URL.Path, s.suggest(r, cleaned)))
		return
	}
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}

	// No route matches, so h is the mux's 404 or 405 handler, or a
	// redirect that only happens for requests such as "OPTIONS *".
	rec := &bufferedResponse{header: make(http.Header)}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, api.Error{
			Error: fmt.Sprintf("method %s is not allowed on %s; use %s",
				r.Method, r.URL.Path, allow),
			Code: api.CodeMethodNotAllowed,
		})
		return
	}
	s.notFound(w, fmt.Sprintf("no route matches %s %q", r.Method, r.URL.Path))
}

// notFound sends a 404 whose message is reason followed by the list of
// routes.
func (s *Server) notFound(w http.ResponseWriter, reason string) {
	writeJSON(w, http.StatusNotFound, api.Error{
		Error: reason + "; the API's routes are " + strings.Join(s.patterns, ", "),
		Code:  api.CodeNotFound,
	})
}

// suggest returns a hint to request the cleaned path, or "" when no route
// matches that path either.
func (s *Server) suggest(r *http.Request, cleaned string) string {
	clone := r.Clone(r.Context())
	clone.URL.Path, clone.URL.RawPath = cleaned, ""
	if _, pattern := s.mux.Handler(clone); pattern == "" {
		return ""
	}
	return fmt.Sprintf("; request %q instead", cleaned)
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

// uncleanPath reports whether the request path, decoded or as sent, has
// an empty, "." or ".." segment, and returns the cleaned decoded path. The
// mux would redirect such a path, and a segment such as "%2e%2e" would
// otherwise reach a handler as the ID "..".
func uncleanPath(r *http.Request) (string, bool) {
	cleaned := cleanPath(r.URL.Path)
	unclean := cleaned != r.URL.Path || cleanPath(r.URL.EscapedPath()) != r.URL.EscapedPath()
	return cleaned, unclean
}

// cleanPath is path.Clean that keeps a trailing slash and a leading one.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	cleaned := path.Clean(p)
	if strings.HasSuffix(p, "/") && cleaned != "/" {
		cleaned += "/"
	}
	return cleaned
}
