package collector_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestCollectProblemGolden pins the complete problem+json bodies of
// /collect's typical failures. Refresh with go test -run ProblemGolden -update.
func TestCollectProblemGolden(t *testing.T) {
	t.Parallel()
	b := setup(t)
	requireOK(t, postEvent(t, b, binary, "orders/1", newAttrs("a")), false)

	changed := newAttrs("a")
	changed["data"] = "other"
	tests := []struct {
		name   string
		header func() (http.Header, []byte)
		status int
	}{
		{name: "MissingStream", status: http.StatusBadRequest, header: func() (http.Header, []byte) {
			return encode(t, structured, "", newAttrs("b"))
		}},
		{name: "BatchMemberInvalid", status: http.StatusBadRequest, header: func() (http.Header, []byte) {
			bad := newAttrs("c")
			delete(bad, "type")
			return encode(t, batch, "orders/1", newAttrs("b"), newAttrs("x"), bad)
		}},
		{name: "PercentEncoding", status: http.StatusBadRequest, header: func() (http.Header, []byte) {
			h, body := encode(t, binary, "orders/1", newAttrs("b"))
			h["ce-subject"] = []string{"abc%4"}
			return h, body
		}},
		{name: "NotACloudEvent", status: http.StatusUnsupportedMediaType, header: func() (http.Header, []byte) {
			return hdr("Fossil-Stream", "orders/1", "Content-Type", "text/plain"), []byte("hello")
		}},
		{name: "TooLarge", status: http.StatusRequestEntityTooLarge, header: func() (http.Header, []byte) {
			h, _ := encode(t, binary, "orders/1", newAttrs("b"))
			return h, []byte(`"` + strings.Repeat("x", 1<<20) + `"`)
		}},
		{name: "SequenceConflict", status: http.StatusConflict, header: func() (http.Header, []byte) {
			h, body := encode(t, binary, "orders/1", newAttrs("b"))
			h.Set("Fossil-Expected-Sequence-Number", "1")
			return h, body
		}},
		{name: "IDConflict", status: http.StatusConflict, header: func() (http.Header, []byte) {
			return encode(t, binary, "orders/1", changed)
		}},
		{name: "ReplaceNotFound", status: http.StatusNotFound, header: func() (http.Header, []byte) {
			h, body := encode(t, binary, "orders/1", newAttrs("missing"))
			h.Set("Fossil-Replace", "true")
			return h, body
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, body := tt.header()
			res := b.post(t, h, body)
			requireProblem(t, res, tt.status)
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, res.body, "", "  "); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "problems", tt.name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Errorf("problem body differs from %s:\n%s\nwant:\n%s", path, pretty.Bytes(), want)
			}
		})
	}
}
