// Package console is Fossil's web console: a single-page application
// embedded in the binary and served under /ui/, and GET /stats, the figures
// its overview needs that no other endpoint gives.
//
// The console is a client of the public HTTP API like any other: the
// browser fetches /events, /streams, /consumers, /subscriptions, /schemas
// and /sse with the user's token, so every grant applies exactly as in the
// API. Its files (HTML, CSS, ES modules; no build step, nothing fetched from
// another host) are static and hold no data, so they are served without a
// token; the application asks for one when the API answers 401.
//
// Every path under /ui/ that does not name a file of ui/assets is answered
// with the application's page, which routes on the path with the history
// API: a link to /ui/streams/orders%2F1 or /ui/events/42 can be shared.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/fossil-events/fossil/problem"
)

// Prefix is the path under which the console is served.
const Prefix = "/ui/"

//go:embed ui
var files embed.FS

// contentSecurityPolicy allows nothing from another origin: the console
// works offline and no script, style or font can be injected from elsewhere.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, read once.
type asset struct {
	body []byte
	etag string
}

// UI serves the console's files. It is safe for concurrent use.
type UI struct {
	assets  map[string]asset // by path below ui/, e.g. "assets/app.js"
	index   asset
	started time.Time
}

// NewUI returns the handler of [Prefix].
func NewUI() *UI {
	u := &UI{assets: map[string]asset{}, started: time.Now()}
	err := fs.WalkDir(files, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		u.assets[strings.TrimPrefix(p, "ui/")] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("console: embedded files: " + err.Error()) // the embed is fixed at build time
	}
	u.index = u.assets["index.html"]
	return u
}

// Match reports whether the console serves path: /ui and every path below
// /ui/.
func Match(p string) bool {
	return p == strings.TrimSuffix(Prefix, "/") || strings.HasPrefix(p, Prefix)
}

// pages are the first path segments below /ui/ that the application
// routes (app.js), and whether they take more segments.
var pages = map[string]bool{"": false, "streams": true, "events": true, "tail": false, "consumers": false, "subscriptions": true, "schemas": true}

// isPage reports whether rel (a path below /ui/) is one of the console's
// pages.
func isPage(rel string) bool {
	head, rest, more := strings.Cut(rel, "/")
	deep, ok := pages[head]
	return ok && (!more || rest == "" || deep)
}

// ServeHTTP serves GET and HEAD: a file of ui/assets by its path, 404 for
// any other path under /ui/assets/, and the application's page for the
// paths of its pages (it routes on them); for any other path under /ui/,
// the same page (which says "not found") with status 404.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem.MethodNotAllowed(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	rel := strings.TrimPrefix(r.URL.Path, Prefix)
	a, name := u.index, "index.html"
	if r.URL.Path != strings.TrimSuffix(Prefix, "/") && !strings.HasPrefix(rel, "assets/") && !isPage(rel) {
		// Not a page of the console: its "not found" page, with a 404.
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusNotFound)
		if r.Method != http.MethodHead {
			_, _ = w.Write(a.body)
		}
		return
	}
	if strings.HasPrefix(rel, "assets/") {
		var ok bool
		if a, ok = u.assets[path.Clean(rel)]; !ok || path.Clean(rel) != rel {
			problem.NotFound(w, r)
			return
		}
		name = rel
	}
	// Revalidate every time: the files change with the binary, and an
	// ETag makes an unchanged one cost a 304.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, name, u.started, bytes.NewReader(a.body))
}
