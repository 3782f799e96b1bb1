package streamer_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
)

// TestSSETemplateEncodingHints: a '+' sent unencoded in the query string
// arrives as a space, so ?stream={+all} is the invalid template "{ all}";
// the 400 says how to send it. The encoded form works.
func TestSSETemplateEncodingHints(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	for _, tt := range []struct {
		name, query, detail string
	}{
		{"UnencodedPlus", "?stream={+all}", "send it as %2B"},
		{"NoStream", "", "?stream=%7B%2Ball%7D ({+all}), URL-encoded"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv.URL+"/sse"+tt.query)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tt.detail) {
				t.Fatalf("%d: %s", resp.StatusCode, body)
			}
		})
	}
	srv.MustPost(t, "a/b", testserver.Event{ID: "1"})
	sse := srv.OpenSSE(t, "/sse?stream=%7B%2Ball%7D")
	if f := sse.Next(t, 1, 5*time.Second); f[0].Number() != 1 {
		t.Fatalf("frame %s", f[0].ID)
	}
}
