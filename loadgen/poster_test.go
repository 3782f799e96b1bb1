package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestRawPoster checks the writers' own HTTP/1.1 client against net/http's
// server: the request arrives whole, connections are kept alive, a server
// that closes them is followed onto a new one, and error answers come back
// with their bodies.
func TestRawPoster(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		handler   func(w http.ResponseWriter, r *http.Request, body string)
		posts     int
		wantConns int
		wantCode  int
		wantBody  string
	}{
		{
			name: "KeepAlive", posts: 3, wantConns: 1, wantCode: 200, wantBody: `{"ok":true}`,
			handler: func(w http.ResponseWriter, _ *http.Request, _ string) { io.WriteString(w, `{"ok":true}`) },
		},
		{
			name: "ServerClosesEachConnection", posts: 3, wantConns: 3, wantCode: 200, wantBody: "done",
			handler: func(w http.ResponseWriter, _ *http.Request, _ string) {
				w.Header().Set("Connection", "close")
				io.WriteString(w, "done")
			},
		},
		{
			name: "ErrorAnswer", posts: 2, wantConns: 1, wantCode: http.StatusConflict, wantBody: `{"current_sequence":4}`,
			handler: func(w http.ResponseWriter, _ *http.Request, _ string) {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(http.StatusConflict)
				io.WriteString(w, `{"current_sequence":4}`)
			},
		},
		{
			name: "ChunkedAnswer", posts: 2, wantConns: 1, wantCode: 200, wantBody: "ab",
			handler: func(w http.ResponseWriter, _ *http.Request, _ string) {
				io.WriteString(w, "a")
				w.(http.Flusher).Flush()
				io.WriteString(w, "b")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			conns := map[string]bool{}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				conns[r.RemoteAddr] = true
				mu.Unlock()
				if r.Method != http.MethodPost || r.URL.Path != "/base/collect" || string(body) != "payload" ||
					r.Header.Get("Fossil-Stream") != "s/1" || r.Header.Get("Ce-Id") != "x y" {
					t.Errorf("request %s %s %q %v", r.Method, r.URL.Path, body, r.Header)
				}
				tt.handler(w, r, string(body))
			}))
			defer srv.Close()
			b := &bench{cfg: Config{}, base: srv.URL + "/base"}
			p := b.newPoster()
			defer p.close()
			if _, ok := p.(*rawPoster); !ok {
				t.Fatalf("poster for %s is %T, want *rawPoster", srv.URL, p)
			}
			headers := []header{{"Fossil-Stream", "s/1"}, {"Ce-Id", "x y"}, {"Content-Type", "application/json"}}
			for i := range tt.posts {
				r, err := p.post(context.Background(), headers, []byte("payload"))
				if err != nil {
					t.Fatalf("post %d: %v", i, err)
				}
				if r.status != tt.wantCode || strings.TrimSpace(string(r.body)) != tt.wantBody {
					t.Fatalf("post %d: %d %q, want %d %q", i, r.status, r.body, tt.wantCode, tt.wantBody)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(conns) != tt.wantConns {
				t.Errorf("%d connections, want %d", len(conns), tt.wantConns)
			}
		})
	}
}
