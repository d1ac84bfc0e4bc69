package server

import (
	"cmp"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
)

// Config contains the dependencies and hooks of New. Fleet is required and
// the rest is optional.
type Config struct {
	// Fleet serves every /v1 request and the readiness probe.
	Fleet service.Fleet
	// Logger receives request logs at debug level and error responses at
	// warn level; slog.Default() when nil.
	Logger *slog.Logger

	// WrapMutating, when set, wraps the handler of every route that
	// changes state (POST and DELETE except the dry-run POST /v1/select),
	// for example to require a bearer token.
	WrapMutating func(http.Handler) http.Handler
	// WrapRoute, when set, wraps every route's handler, including the
	// Extra ones, and receives the route's pattern, for example to count
	// requests per route.
	WrapRoute func(pattern string, next http.Handler) http.Handler
	// Extra adds routes, keyed by pattern such as "GET /metrics".
	Extra map[string]http.Handler
}

// route is one registered endpoint.
type route struct {
	pattern  string
	handler  http.HandlerFunc
	mutating bool
}

// Server is the API's http.Handler.
type Server struct {
	fleet service.Fleet
	log   *slog.Logger
	mux   *http.ServeMux
	// patterns lists every route, sorted, for the message of a 404.
	patterns []string
}

var _ http.Handler = (*Server)(nil)

// New returns the API handler. It panics if cfg.Fleet is nil or an Extra
// pattern clashes with a built-in route, both programming errors found at
// start-up.
func New(cfg Config) *Server {
	if cfg.Fleet == nil {
		panic("server.New: Config.Fleet is nil")
	}
	s := &Server{fleet: cfg.Fleet, log: cfg.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.Default()
	}

	for _, rt := range s.routes() {
		var h http.Handler = rt.handler
		if rt.mutating && cfg.WrapMutating != nil {
			h = cfg.WrapMutating(h)
		}
		s.handle(cfg, rt.pattern, h)
	}
	for pattern, h := range cfg.Extra {
		s.handle(cfg, pattern, h)
	}
	slices.SortFunc(s.patterns, comparePatterns)
	return s
}

func (s *Server) handle(cfg Config, pattern string, h http.Handler) {
	if cfg.WrapRoute != nil {
		h = cfg.WrapRoute(pattern, h)
	}
	s.mux.Handle(pattern, h)
	s.patterns = append(s.patterns, pattern)
}

// comparePatterns orders "METHOD /path" patterns by path, then method.
func comparePatterns(a, b string) int {
	methodA, pathA, _ := strings.Cut(a, " ")
	methodB, pathB, _ := strings.Cut(b, " ")
	return cmp.Or(strings.Compare(pathA, pathB), strings.Compare(methodA, methodB))
}

func (s *Server) routes() []route {
	return []route{
		{pattern: "GET /v1/hosts", handler: s.listHosts},
		{pattern: "GET /v1/hosts/{id}", handler: s.getHost},
		{pattern: "GET /v1/hosts/{id}/health", handler: s.hostHealth},
		{pattern: "POST /v1/hosts/{id}/drain", handler: s.drain, mutating: true},
		{pattern: "POST /v1/hosts/{id}/undrain", handler: s.undrain, mutating: true},
		{pattern: "DELETE /v1/hosts/{id}", handler: s.removeHost, mutating: true},

		{pattern: "POST /v1/select", handler: s.selectHost},
		{pattern: "POST /v1/allocations", handler: s.allocate, mutating: true},
		{pattern: "GET /v1/allocations", handler: s.listAllocations},
		{pattern: "GET /v1/allocations/{id}", handler: s.getAllocation},
		{pattern: "DELETE /v1/allocations/{id}", handler: s.release, mutating: true},
		{pattern: "POST /v1/allocations/{id}/renew", handler: s.renew, mutating: true},

		{pattern: "GET /healthz", handler: s.healthz},
		{pattern: "GET /readyz", handler: s.readyz},
	}
}

// ServeHTTP logs the request, recovers from a panic in a handler and
// routes the request. Unknown paths and methods get a JSON error.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			s.recovered(sw, r, p)
		}
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "http request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", sw.statusCode()),
			slog.Duration("duration", time.Since(start)))
	}()
	s.route(sw, r)
}
