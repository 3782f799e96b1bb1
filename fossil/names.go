package fossil

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLength is the longest stream or consumer name, in bytes.
const MaxNameLength = 255

// ValidateStream checks a stream name: 1–255 bytes of UTF-8 without control
// characters and without a leading or trailing '/'. location names the part
// of the request it came from, for the error.
func ValidateStream(location, name string) error {
	if err := validateName(location, "stream", name); err != nil {
		return err
	}
	if strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") {
		return Invalid(location, "stream name must not start or end with '/'")
	}
	return nil
}

// ValidateConsumerName checks a consumer name: 1–255 bytes of UTF-8 without
// control characters or '/'. Names are data, never templates: "a{b}" is a
// valid name distinct from "ab".
func ValidateConsumerName(location, name string) error {
	if err := validateName(location, "consumer", name); err != nil {
		return err
	}
	if strings.Contains(name, "/") {
		return Invalid(location, "consumer name must not contain '/'")
	}
	return nil
}

func validateName(location, what, name string) error {
	switch {
	case name == "":
		return Invalid(location, "%s name is required", what)
	case len(name) > MaxNameLength:
		return Invalid(location, "%s name is %d bytes long; at most %d are allowed", what, len(name), MaxNameLength)
	case !utf8.ValidString(name):
		return Invalid(location, "%s name is not valid UTF-8", what)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return Invalid(location, "%s name contains a control character", what)
	}
	return nil
}

// ParseEventNumber parses a cursor such as Last-Event-Id: a non-negative
// decimal integer without sign or spaces.
func ParseEventNumber(location, s string) (int64, error) {
	n, err := parseDigits(s)
	if err != nil {
		return 0, Invalid(location, "must be a non-negative integer event number, got %q", truncate(s, 64))
	}
	return n, nil
}

// ParseExpectedSequence parses Fossil-Expected-Sequence-Number: an integer ≥ 1.
func ParseExpectedSequence(location, s string) (int64, error) {
	n, err := parseDigits(s)
	if err != nil || n < 1 {
		return 0, Invalid(location, "must be an integer of at least 1, got %q", truncate(s, 64))
	}
	return n, nil
}

func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ValidateText checks an identifier that is free text (a CloudEvent id or
// source, a type): valid UTF-8 without NUL, which PostgreSQL text cannot
// hold. Such a value can name nothing stored, and must not reach SQL.
func ValidateText(location, what, s string) error {
	switch {
	case !utf8.ValidString(s):
		return Invalid(location, "%s is not valid UTF-8", what)
	case strings.IndexByte(s, 0) >= 0:
		return Invalid(location, "%s contains a NUL character", what)
	}
	return nil
}
