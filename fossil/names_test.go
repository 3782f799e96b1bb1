package fossil_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/fossil-events/fossil/fossil"
)

func TestParseEventNumber(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1", 1, true},
		{"42", 42, true},
		{"007", 7, true},
		{"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1.0", 0, false},
		{"1e3", 0, false},
		{"abc", 0, false},
		{"١", 0, false}, // Arabic-Indic digit one
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			t.Parallel()
			got, err := fossil.ParseEventNumber("header.Last-Event-Id", tt.in)
			if tt.ok {
				if err != nil || got != tt.want {
					t.Fatalf("got %d, %v; want %d", got, err, tt.want)
				}
				return
			}
			var inv *fossil.InvalidError
			if !errors.As(err, &inv) || inv.Location != "header.Last-Event-Id" {
				t.Fatalf("got %d, %v; want an InvalidError at header.Last-Event-Id", got, err)
			}
		})
	}
}

func TestParseExpectedSequence(t *testing.T) {
	t.Parallel()
	for in, ok := range map[string]bool{"1": true, "12": true, "0": false, "-1": false, "abc": false, "": false, "1 ": false} {
		_, err := fossil.ParseExpectedSequence("header.Fossil-Expected-Sequence-Number", in)
		if (err == nil) != ok {
			t.Errorf("%q: err %v, want ok=%v", in, err, ok)
		}
	}
}

func TestValidateNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in         string
		streamOK, consOK bool
	}{
		{"Simple", "orders/42", true, false},
		{"Flat", "billing", true, true},
		{"Template", "a{b}", true, true},
		{"Unicode", "café/über", true, false},
		{"Empty", "", false, false},
		{"LeadingSlash", "/a", false, false},
		{"TrailingSlash", "a/", false, false},
		{"Control", "a\x01b", false, false},
		{"Newline", "a\nb", false, false},
		{"DEL", "a\x7fb", false, false},
		{"C1Control", "a\u0085b", false, false},
		{"InvalidUTF8", "a\xffb", false, false},
		{"Max", strings.Repeat("a", 255), true, true},
		{"TooLong", strings.Repeat("a", 256), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := fossil.ValidateStream("header.Fossil-Stream", tt.in); (err == nil) != tt.streamOK {
				t.Errorf("ValidateStream: %v, want ok=%v", err, tt.streamOK)
			}
			if err := fossil.ValidateConsumerName("path.name", tt.in); (err == nil) != tt.consOK {
				t.Errorf("ValidateConsumerName: %v, want ok=%v", err, tt.consOK)
			}
		})
	}
}

// FuzzParseEventNumber: the cursor parser accepts exactly the decimal
// integers that round-trip, and never panics.
func FuzzParseEventNumber(f *testing.F) {
	for _, s := range []string{"0", "1", "-1", "", "9223372036854775807", "9223372036854775808", "1e3", " 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := fossil.ParseEventNumber("header.Last-Event-Id", s)
		if err != nil {
			var inv *fossil.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("%q: error %T", s, err)
			}
			return
		}
		if n < 0 || strings.TrimLeft(strconv.FormatInt(n, 10), "0") != strings.TrimLeft(s, "0") {
			t.Fatalf("%q parsed as %d", s, n)
		}
	})
}

// FuzzValidateStream: a stream name is accepted only if it is valid UTF-8
// of 1–255 bytes without control characters or an outer '/'.
func FuzzValidateStream(f *testing.F) {
	for _, s := range []string{"a", "a/b", "/a", "a/", "", "\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if fossil.ValidateStream("header.Fossil-Stream", s) != nil {
			return
		}
		if s == "" || len(s) > 255 || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if r < 0x20 || r == 0x7f || r == 0xfffd && !strings.Contains(s, "\ufffd") {
				t.Fatalf("accepted %q", s)
			}
		}
	})
}
