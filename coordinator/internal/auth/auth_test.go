package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/YoungBoyGod/remotegpu/pkg/api"
	"github.com/YoungBoyGod/remotegpu/pkg/secretfile"
)

const secret = "s3cret-token-marker-0123456789"

func writeToken(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestLoadToken(t *testing.T) {
	t.Parallel()
	tok, err := LoadToken(writeToken(t, secret+"\n"))
	require.NoError(t, err)
	assert.Equal(t, secret, tok.Value())
	assert.True(t, tok.Matches(secret))
	assert.False(t, tok.Matches(secret+"x"))
	assert.False(t, tok.Matches(""))

	cases := map[string]string{
		"empty file":          "\n",
		"short token":         "changeme",
		"token with a space":  "abcdefgh ijklmnopqrst",
		"token on two lines":  "abcdefghij\nklmnopqrst",
		"token with a escape": "abcdefghij\x1bklmnopqrst",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			path := writeToken(t, content)
			_, err := LoadToken(path)
			require.ErrorIs(t, err, ErrInvalidToken)
			assert.Contains(t, err.Error(), path)
		})
	}

	_, err = LoadToken(filepath.Join(t.TempDir(), "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestLoadTokenChecksFileMode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		mode os.FileMode
		ok   bool
	}{
		{"0600 accepted", 0o600, true},
		{"0400 accepted", 0o400, true},
		{"0640 rejected", 0o640, false},
		{"0604 rejected", 0o604, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeToken(t, secret+"\n")
			require.NoError(t, os.Chmod(path, tc.mode))

			tok, err := LoadToken(path)
			if tc.ok {
				require.NoError(t, err)
				assert.True(t, tok.Matches(secret))
				return
			}
			var modeErr *secretfile.ModeError
			require.ErrorAs(t, err, &modeErr)
			assert.Contains(t, err.Error(), path)
			assert.Contains(t, err.Error(), fmt.Sprintf("has mode %04o", uint32(tc.mode)))
			assert.Contains(t, err.Error(), "chmod 600 "+path)
			assert.NotContains(t, err.Error(), secret)
		})
	}
}

func TestTokenNeverPrinted(t *testing.T) {
	t.Parallel()
	tok, err := LoadToken(writeToken(t, secret))
	require.NoError(t, err)

	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("loaded", "token", tok)
	printed := fmt.Sprintf("%v %+v %s %#v", tok, tok, tok, tok.String())
	assert.NotContains(t, logs.String(), secret)
	assert.NotContains(t, printed, secret)
}

func TestRequireBearer(t *testing.T) {
	t.Parallel()
	tok, err := LoadToken(writeToken(t, secret))
	require.NoError(t, err)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	h := RequireBearer(tok)(ok)

	cases := []struct {
		name, header string
		want         int
		invalid      bool
	}{
		{name: "no header", want: http.StatusUnauthorized},
		{name: "basic scheme", header: "Basic dXNlcjpwdw==", want: http.StatusUnauthorized},
		{name: "empty bearer", header: "Bearer ", want: http.StatusUnauthorized},
		{name: "wrong token", header: "Bearer wrong-token-0123456789",
			want: http.StatusUnauthorized, invalid: true},
		{name: "token prefix", header: "Bearer " + secret[:10],
			want: http.StatusUnauthorized, invalid: true},
		{name: "right token", header: "Bearer " + secret, want: http.StatusNoContent},
		{name: "lower-case scheme", header: "bearer " + secret, want: http.StatusNoContent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/allocations", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tc.want, rec.Code)
			if tc.want != http.StatusUnauthorized {
				return
			}
			var body api.Error
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, api.CodeUnauthorized, body.Code)
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			assert.Contains(t, rec.Header().Get("WWW-Authenticate"), "Bearer")
			assert.Equal(t, tc.invalid,
				bytes.Contains(rec.Body.Bytes(), []byte("invalid bearer token")))
			assert.NotContains(t, rec.Body.String(), secret)
		})
	}
}
