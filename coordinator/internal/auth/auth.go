package auth

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"unicode"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/secretfile"
)

// MinTokenLength is the shortest token LoadToken accepts, so that a
// placeholder such as "changeme" is not taken for a secret.
const MinTokenLength = 16

// ErrInvalidToken is wrapped by LoadToken for a token file whose content
// cannot be a token.
var ErrInvalidToken = errors.New("invalid token")

// Token is a bearer token. Its String and LogValue methods hide the
// value, so that formatting or logging a Token leaks nothing.
type Token struct {
	value []byte
}

var (
	_ fmt.Stringer   = Token{}
	_ slog.LogValuer = Token{}
)

// String returns a placeholder, never the token.
func (Token) String() string { return "[redacted]" }

// LogValue returns a placeholder, never the token.
func (Token) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Value returns the token itself, for a client to send.
func (t Token) Value() string { return string(t.value) }

// LoadToken reads a token from path. Surrounding whitespace, such as a
// final newline, is ignored. It rejects, with a *secretfile.ModeError, a
// file that its group or other users may read or write. Errors name the
// file but never its content.
func LoadToken(path string) (Token, error) {
	data, err := secretfile.Read(path)
	if err != nil {
		return Token{}, fmt.Errorf("read token file: %w", err)
	}
	value := strings.TrimSpace(string(data))
	switch {
	case value == "":
		return Token{}, fmt.Errorf("%w: token file %q is empty", ErrInvalidToken, path)
	case len(value) < MinTokenLength:
		return Token{}, fmt.Errorf("%w: token in %q is shorter than %d "+
			"characters; generate one with `openssl rand -hex 32`",
			ErrInvalidToken, path, MinTokenLength)
	case strings.IndexFunc(value, notTokenRune) >= 0:
		return Token{}, fmt.Errorf("%w: token in %q contains whitespace or "+
			"control characters; keep it on one line", ErrInvalidToken, path)
	}
	return Token{value: []byte(value)}, nil
}

func notTokenRune(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r)
}

// Matches reports, in constant time for tokens of equal length, whether
// presented is the token.
func (t Token) Matches(presented string) bool {
	return len(t.value) > 0 &&
		subtle.ConstantTimeCompare(t.value, []byte(presented)) == 1
}

// RequireBearer returns middleware that passes a request on only when
// its Authorization header is "Bearer <token>", and responds 401
// otherwise.
func RequireBearer(t Token) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			presented, ok := bearer(r.Header.Get("Authorization"))
			if !ok || !t.Matches(presented) {
				unauthorized(w, ok)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bearer returns the credentials of an "Authorization: Bearer" header.
// The scheme is case-insensitive, as RFC 6750 allows.
func bearer(header string) (string, bool) {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return "", false
	}
	return cred, true
}

func unauthorized(w http.ResponseWriter, presented bool) {
	msg := "missing bearer token: this request changes state; send " +
		"\"Authorization: Bearer <token>\" (the CLI's --token-file)"
	challenge := `Bearer realm="remotegpu"`
	if presented {
		msg = "invalid bearer token: check the token file the client uses"
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(api.Error{Error: msg, Code: api.CodeUnauthorized})
}
