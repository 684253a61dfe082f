package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The text and JSON line formats of scan and load; doc.go describes them
// for users.

// textField returns b as the text format writes it: verbatim if it is
// valid UTF-8 of printable characters not beginning with a double quote,
// else Go-quoted.
func textField(b []byte) string {
	if plainText(b) {
		return string(b)
	}
	return strconv.Quote(string(b))
}

func plainText(b []byte) bool {
	if len(b) > 0 && b[0] == '"' {
		return false
	}
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 || !strconv.IsPrint(r) {
			return false
		}
		b = b[n:]
	}
	return true
}

// parseTextField reverses textField.
func parseTextField(s string) ([]byte, error) {
	if !strings.HasPrefix(s, `"`) {
		return []byte(s), nil
	}
	u, err := strconv.Unquote(s)
	if err != nil {
		return nil, fmt.Errorf("bad quoted string %.40s", s)
	}
	return []byte(u), nil
}

// parseTextLine splits a text-format line (without its newline) into key
// and value.
func parseTextLine(line string) (key, value []byte, err error) {
	line = strings.TrimSuffix(line, "\r")
	k, v, ok := strings.Cut(line, "\t")
	if !ok {
		return nil, nil, errors.New("no tab between key and value")
	}
	if key, err = parseTextField(k); err != nil {
		return nil, nil, fmt.Errorf("key: %v", err)
	}
	if value, err = parseTextField(v); err != nil {
		return nil, nil, fmt.Errorf("value: %v", err)
	}
	return key, value, nil
}

// jsonRecord is one line of the JSON format. Exactly one of Key and
// KeyBase64 is set, and one of Value and ValueBase64.
type jsonRecord struct {
	Key         *string `json:"key,omitempty"`
	KeyBase64   *string `json:"key_base64,omitempty"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
}

func newJSONRecord(key, value []byte) jsonRecord {
	var r jsonRecord
	r.Key, r.KeyBase64 = jsonField(key)
	r.Value, r.ValueBase64 = jsonField(value)
	return r
}

func jsonField(b []byte) (text, b64 *string) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

// parseJSONLine decodes one JSON-format line.
func parseJSONLine(line []byte) (key, value []byte, err error) {
	var r jsonRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, nil, err
	}
	if key, err = fromJSONField("key", r.Key, r.KeyBase64); err != nil {
		return nil, nil, err
	}
	if value, err = fromJSONField("value", r.Value, r.ValueBase64); err != nil {
		return nil, nil, err
	}
	return key, value, nil
}

func fromJSONField(name string, text, b64 *string) ([]byte, error) {
	switch {
	case text != nil && b64 != nil:
		return nil, fmt.Errorf("both %s and %s_base64", name, name)
	case text != nil:
		return []byte(*text), nil
	case b64 != nil:
		b, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("%s_base64: %v", name, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("no %s or %s_base64", name, name)
}

// humanBytes formats n bytes for people: 0B, 900B, 12.3kB, 128MB.
func humanBytes(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for math.Abs(f) >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 || f == math.Trunc(f) {
		return fmt.Sprintf("%.0f%s", f, units[i])
	}
	return fmt.Sprintf("%.1f%s", f, units[i])
}
