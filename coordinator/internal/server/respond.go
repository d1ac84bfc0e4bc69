package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

// writeJSON sends v with the given status. An encoding error can only come
// from a broken connection at this point, so it is dropped. <, > and & go
// out as themselves rather than as \u escapes, so that messages such as
// "separate parameters with &" read as written; the nosniff header keeps
// browsers from treating the body as HTML.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// classify maps an error to its status code and api.Error code.
func classify(err error) (status int, code string) {
	switch {
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge
	case errors.Is(err, ErrUnsupportedMediaType):
		return http.StatusUnsupportedMediaType, api.CodeUnsupportedMediaType
	case errors.Is(err, service.ErrInvalid):
		return http.StatusBadRequest, api.CodeInvalid
	case errors.Is(err, service.ErrNotFound):
		return http.StatusNotFound, api.CodeNotFound
	case errors.Is(err, service.ErrNoCapacity):
		return http.StatusConflict, api.CodeNoCapacity
	case errors.Is(err, service.ErrConflict):
		return http.StatusConflict, api.CodeConflict
	case errors.Is(err, service.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, api.CodeUnavailable
	default:
		return http.StatusInternalServerError, api.CodeInternal
	}
}

// fail logs err with the request's IDs and sends it as an api.Error. A
// fleet error that maps to no sentinel becomes a 500 whose body points to
// the log rather than exposing internals.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error, ids ...slog.Attr) {
	status, code := classify(err)
	level, msg := slog.LevelWarn, err.Error()
	if status == http.StatusInternalServerError {
		level, msg = slog.LevelError, "internal error; see the coordinator log"
	}

	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.String("error", err.Error()),
	}
	s.log.LogAttrs(r.Context(), level, "request failed", append(attrs, ids...)...)

	writeJSON(w, status, api.Error{Error: msg, Code: code})
}

func hostAttr(id string) slog.Attr  { return slog.String("host_id", id) }
func allocAttr(id string) slog.Attr { return slog.String("alloc_id", id) }
