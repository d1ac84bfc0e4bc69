package server

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// maxExponent bounds the decimal exponent that wholeNumber considers. Any
// non-zero number with a larger exponent is beyond int64, and the bound
// keeps a body such as "1e999999999" from building a huge number.
const maxExponent = 1000

// normalizeWholeNumbers rewrites the integer fields of the JSON object in
// data that are written with a fraction or an exponent but are whole, such
// as 1e3 or 60.0, as plain integers, which encoding/json requires for
// integer fields. Other values are left for the strict decode to reject,
// so that its message shows what the client sent. data must be one valid
// JSON object with unique keys.
func normalizeWholeNumbers(data []byte, target reflect.Type) []byte {
	fields := integerFields(target)
	if len(fields) == 0 {
		return data
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return data
	}

	changed := false
	for _, name := range fields {
		raw, ok := obj[name]
		if !ok {
			continue
		}
		if whole, ok := wholeNumber(string(raw)); ok {
			obj[name] = json.RawMessage(whole)
			changed = true
		}
	}
	if !changed {
		return data
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return data
	}
	return out
}

// integerFields returns the JSON names of t's integer fields, or nil when
// t is not a struct.
func integerFields(t reflect.Type) []string {
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		switch f.Type.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		default:
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.IsExported() && name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// wholeNumber returns the JSON number text as a plain integer when it has
// a fraction or an exponent, is whole and fits in an int64. It reports
// false for anything else, including text that is not a number.
func wholeNumber(text string) (string, bool) {
	text = strings.TrimSpace(text)
	if text == "" || !strings.ContainsAny(text, ".eE") ||
		(text[0] != '-' && (text[0] < '0' || text[0] > '9')) {
		return "", false
	}
	mantissa, expText, hasExp := strings.Cut(strings.ToLower(text), "e")
	exp := 0
	if hasExp {
		var err error
		if exp, err = strconv.Atoi(expText); err != nil {
			exp = maxExponent + 1
			if strings.HasPrefix(expText, "-") {
				exp = -exp
			}
		}
	}
	negative := strings.HasPrefix(mantissa, "-")
	intPart, frac, _ := strings.Cut(strings.TrimPrefix(mantissa, "-"), ".")

	// The value is digits × 10^exp, with digits free of leading and
	// trailing zeros.
	digits := strings.TrimLeft(intPart+frac, "0")
	trimmed := strings.TrimRight(digits, "0")
	switch {
	case trimmed == "":
		return "0", true
	case exp < -maxExponent || exp > maxExponent:
		return "", false
	}
	exp += len(digits) - len(trimmed) - len(frac)
	if exp < 0 || len(trimmed)+exp > 19 {
		return "", false
	}

	whole := trimmed + strings.Repeat("0", exp)
	if negative {
		whole = "-" + whole
	}
	if _, err := strconv.ParseInt(whole, 10, 64); err != nil {
		return "", false
	}
	return whole, true
}
