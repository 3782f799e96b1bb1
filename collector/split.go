package collector

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The structured and batched modes are decoded in two steps: one
// validation pass over the whole body (json.Valid), then the splitters
// below, which cut the already-valid document into array elements and
// object members without reflection. Decoding the body with
// json.Unmarshal into []json.RawMessage and then each member into a map
// scanned every byte several more times.

// validJSON reports whether b is one JSON value in UTF-8. json.Valid alone
// accepts invalid UTF-8 inside strings, which RFC 8259 (section 8.1)
// forbids and which PostgreSQL's jsonb refuses.
func validJSON(b []byte) bool {
	return json.Valid(b) && utf8.Valid(b)
}

// malformed explains why b is not valid JSON, with encoding/json's words.
func malformed(b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err.Error()
	}
	if !utf8.Valid(b) {
		return "the JSON text is not valid UTF-8"
	}
	return "invalid JSON"
}

// skipSpace returns the index of the first non-whitespace byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value that starts at i in
// the valid document b.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		return i
	}
}

// stringEnd returns the index just past the string literal starting at i.
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// splitArray returns the elements of the valid JSON array b.
func splitArray(b []byte) [][]byte {
	var out [][]byte
	i := skipSpace(b, 1)
	for i < len(b) && b[i] != ']' {
		end := valueEnd(b, i)
		out = append(out, b[i:end])
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return out
}

// splitObject returns the members of the valid JSON object b; like
// encoding/json, a repeated name keeps its last value.
func splitObject(b []byte) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, 12)
	i := skipSpace(b, 1)
	for i < len(b) && b[i] != '}' {
		kend := stringEnd(b, i)
		key := b[i:kend]
		var name string
		if bytes.IndexByte(key, '\\') < 0 && utf8.Valid(key) {
			name = string(key[1 : len(key)-1])
		} else if err := json.Unmarshal(key, &name); err != nil {
			return nil, err
		}
		i = skipSpace(b, kend)
		i = skipSpace(b, i+1) // past ':'
		end := valueEnd(b, i)
		out[name] = json.RawMessage(b[i:end])
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return out, nil
}
