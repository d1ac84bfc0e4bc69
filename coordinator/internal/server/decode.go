package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/service"
	"github.com/YoungBoyGod/remotegpu/pkg/api"
)

// Errors of request decoding that have their own status codes; other
// decoding errors wrap service.ErrInvalid.
var (
	// ErrBodyTooLarge marks a body over api.MaxBodyBytes (413).
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrUnsupportedMediaType marks a body that is not application/json
	// (415).
	ErrUnsupportedMediaType = errors.New("unsupported media type")
)

// MaxOwnerBytes is the longest owner an allocation request or the owner
// filter may give. It equals the fleet's limit on every text field, so
// the API rejects an oversized owner before the request reaches the fleet.
const MaxOwnerBytes = 256

// allocationFields are the JSON names of api.AllocationRequest, in order.
var allocationFields = jsonFieldNames(reflect.TypeFor[api.AllocationRequest]())

// DecodeAllocationRequest reads one JSON object of at most
// api.MaxBodyBytes from r and checks its syntax and types. Every field
// must be known and given once. Numbers must be whole, non-negative and
// fit in 64 bits, and ttl_seconds at most api.MaxTTLSeconds. A whole
// number may be written with a fraction or an exponent, such as 1e3 or
// 2.0. The strategy, if set, must be one of api.Strategies.
// Missing fields are zero. The fleet judges whether the request makes
// sense, for example whether it requests any resource.
//
// Errors wrap ErrBodyTooLarge or service.ErrInvalid and name the field.
func DecodeAllocationRequest(r io.Reader) (api.AllocationRequest, error) {
	data, err := readBody(r)
	if err != nil {
		return api.AllocationRequest{}, err
	}
	var req api.AllocationRequest
	if err := decodeObject(data, allocationFields, &req); err != nil {
		return api.AllocationRequest{}, err
	}
	if err := checkAllocationRequest(&req); err != nil {
		return api.AllocationRequest{}, err
	}
	return req, nil
}

func checkAllocationRequest(req *api.AllocationRequest) error {
	for _, f := range []struct {
		name  string
		value int64
	}{
		{"cpu", int64(req.CPU)},
		{"memory", req.Memory},
		{"gpu", int64(req.GPU)},
		{"min_gpu_memory", req.MinGPUMemory},
		{"ttl_seconds", req.TTLSeconds},
	} {
		if f.value < 0 {
			return invalidf("field %q is %d; it must not be negative", f.name, f.value)
		}
	}
	if req.TTLSeconds > api.MaxTTLSeconds {
		return invalidf("field \"ttl_seconds\" is %d, more than the maximum of %d "+
			"(one year); use 0 for the coordinator's default", req.TTLSeconds,
			api.MaxTTLSeconds)
	}
	if len(req.Owner) > MaxOwnerBytes {
		return invalidf("field \"owner\" is %d bytes long, more than the maximum of %d bytes",
			len(req.Owner), MaxOwnerBytes)
	}
	if req.Strategy != "" && !slices.Contains(api.Strategies, req.Strategy) {
		return invalidf("unknown strategy %q; use one of %s, or omit it for %s",
			req.Strategy, strings.Join(api.Strategies, ", "), api.Strategies[0])
	}
	return nil
}

// decodeEmptyBody accepts a body that is empty, blank or "{}", for
// endpoints that take no parameters.
func decodeEmptyBody(r io.Reader) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var v struct{}
	return decodeObject(data, nil, &v)
}

// readBody reads at most api.MaxBodyBytes from r.
func readBody(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, api.MaxBodyBytes+1))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, errTooLarge()
	case err != nil:
		return nil, invalidf("read request body: %v", err)
	case len(data) > api.MaxBodyBytes:
		return nil, errTooLarge()
	}
	return data, nil
}

func errTooLarge() error {
	return fmt.Errorf("%w: the maximum is %d bytes", ErrBodyTooLarge, api.MaxBodyBytes)
}

// decodeObject decodes data, which must be exactly one JSON object whose
// keys are all in fields, each at most once, into v.
func decodeObject(data []byte, fields []string, v any) error {
	hint := bodyHint(fields)
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return invalidf("request body is empty; %s", hint)
	}
	if !utf8.Valid(data) {
		return invalidf("request body is not valid UTF-8")
	}
	if trimmed[0] != '{' {
		if trimmed[0] != 0xef {
			// Text that is not JSON at all, such as "not json", gets the
			// syntax error rather than a guess from its first byte.
			var raw json.RawMessage
			if err := json.Unmarshal(data, &raw); err != nil {
				return describeJSONError(err, data, hint)
			}
		}
		return invalidf("request body must be a JSON object, not %s; %s",
			describeStart(trimmed[0]), hint)
	}
	if err := checkKeys(data, fields, hint); err != nil {
		return err
	}

	// The keys are known to be exact and unique, so the strict decode
	// below only has to check the values' types.
	target := reflect.TypeOf(v).Elem()
	dec := json.NewDecoder(bytes.NewReader(normalizeWholeNumbers(data, target)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeValueError(err, target, data, hint)
	}
	return nil
}

// bodyHint returns what the client should send in place of an invalid body.
func bodyHint(fields []string) string {
	if len(fields) == 0 {
		return "send no body, or {}"
	}
	return `send a JSON object such as {"cpu": 4, "gpu": 1}`
}

// describeValueError is describeJSONError with a better message for a
// wrong value inside a map field, for which encoding/json names only the
// map (for example "labels") and the element type.
func describeValueError(err error, target reflect.Type, data []byte, hint string) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && target.Kind() == reflect.Struct {
		for f := range target.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == typeErr.Field && f.Type.Kind() == reflect.Map && f.Type != typeErr.Type {
				return invalidf("field %q must map names to %s, got %s",
					name, expectedPlural(typeErr.Type), typeErr.Value)
			}
		}
	}
	return describeJSONError(err, data, hint)
}

func expectedPlural(t reflect.Type) string {
	if t.Kind() == reflect.String {
		return "strings"
	}
	return "values of type " + t.String()
}

// checkKeys walks the top-level object and rejects unknown and repeated
// keys by their exact spelling (encoding/json alone would accept "CPU" for
// "cpu" and keep the last of two "cpu" keys), then trailing data.
func checkKeys(data []byte, fields []string, hint string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		return describeJSONError(err, data, hint)
	}

	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return describeJSONError(err, data, hint)
		}
		key, _ := tok.(string)
		if err := checkKey(key, fields, seen); err != nil {
			return err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return describeJSONError(err, data, hint)
		}
	}
	if _, err := dec.Token(); err != nil {
		return describeJSONError(err, data, hint)
	}

	if _, err := dec.Token(); err != io.EOF {
		return invalidf("unexpected data after the JSON object at byte offset %d; "+
			"send exactly one object", dec.InputOffset())
	}
	return nil
}

func checkKey(key string, fields []string, seen map[string]bool) error {
	if !slices.Contains(fields, key) {
		if len(fields) == 0 {
			return invalidf("unknown field %q; this endpoint takes no fields", key)
		}
		return invalidf("unknown field %q; valid fields are %s", key, strings.Join(fields, ", "))
	}
	if seen[key] {
		return invalidf("field %q is given more than once", key)
	}
	seen[key] = true
	return nil
}

// describeJSONError turns an encoding/json error on data into a message
// that names the problem and its byte offset, or the field and the
// expected type. hint is what to send instead.
func describeJSONError(err error, data []byte, hint string) error {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntaxErr) && syntaxErr.Offset >= int64(len(data)),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		// encoding/json reports a body cut short either as an EOF error or
		// as a syntax error at its end, sometimes about a space it made up.
		unfinished := "a JSON value"
		if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
			unfinished = "the JSON object"
		}
		return invalidf("request body is not valid JSON: the body ends inside %s "+
			"at byte offset %d; %s", unfinished, len(data), hint)
	case errors.As(err, &syntaxErr):
		return invalidf("request body is not valid JSON: %s at byte offset %d; %s",
			strings.TrimPrefix(syntaxErr.Error(), "json: "), syntaxErr.Offset, hint)
	case errors.As(err, &typeErr):
		return invalidf("field %q must be %s, got %s",
			typeErr.Field, expectedFieldValue(typeErr.Field, typeErr.Type), typeErr.Value)
	default:
		return invalidf("invalid request body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

// expectedFieldValue describes, for an error message, what JSON fits
// the field name of type t, with the field's own range where it has one.
func expectedFieldValue(name string, t reflect.Type) string {
	if name == "ttl_seconds" {
		return fmt.Sprintf("a whole number of seconds from 0 to %d (one year)",
			api.MaxTTLSeconds)
	}
	return expectedValue(t)
}

// expectedValue describes, for an error message, what JSON fits type t.
func expectedValue(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return fmt.Sprintf("a whole number from 0 to %d", int64(math.MaxInt64))
	case reflect.Int32:
		return fmt.Sprintf("a whole number from 0 to %d", math.MaxInt32)
	case reflect.String:
		return "a string"
	case reflect.Map:
		return "an object with string values"
	default:
		return "a " + t.String()
	}
}

func describeStart(c byte) string {
	switch {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	case c == 0xef:
		return "text starting with a byte order mark; send UTF-8 without one"
	default:
		return fmt.Sprintf("text starting with byte 0x%02x", c)
	}
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", service.ErrInvalid, fmt.Sprintf(format, args...))
}

// requireJSON checks that a request with a body declares it as JSON. A
// charset other than UTF-8 is rejected, since JSON is UTF-8 on the wire.
func requireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mediaType, params, err := mime.ParseMediaType(ct)
	if err == nil && mediaType == "application/json" {
		cs, ok := params["charset"]
		if !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return fmt.Errorf("%w: Content-Type is %q; send the body as application/json",
		ErrUnsupportedMediaType, ct)
}

// jsonFieldNames returns the JSON names of a struct's exported fields.
func jsonFieldNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}
