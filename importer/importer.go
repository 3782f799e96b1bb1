// Package importer serves POST /import: a log exported with `fossil
// export` (the events as the server serves them, one per line) restored
// into an empty store, keeping every number, stream, sequence and
// attribute. It is the restore half of backup and restore, and the way to
// move a log to another PostgreSQL.
package importer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
	"github.com/fossil-events/fossil/store"
)

// ContentType is the media type of an export: one event per line.
const ContentType = "application/x-ndjson"

// Config configures the handler.
type Config struct {
	Store  *store.Store
	Logger *slog.Logger
	// MaxLine bounds one line of the input (one event), in bytes.
	MaxLine int
}

// Handler serves the import route.
type Handler struct {
	store   *store.Store
	logger  *slog.Logger
	maxLine int
}

// New returns the handler.
func New(cfg Config) *Handler {
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 16 << 20
	}
	return &Handler{store: cfg.Store, logger: cfg.Logger, maxLine: cfg.MaxLine}
}

// Register adds POST /import to r.
func (h *Handler) Register(r *mux.Router) {
	r.Handle("/import", problem.Handler(h.logger, h.handleImport)).Methods(http.MethodPost)
}

// handleImport serves POST /import: admin only; the body is NDJSON, one
// event per line exactly as GET /events serves it. 200 with
// {"events": N, "streams": M} once everything is committed; 409 when the
// store already holds events; 400 naming the first bad line, and then
// nothing is imported.
func (h *Handler) handleImport(w http.ResponseWriter, r *http.Request) error {
	if err := auth.RequireAdmin(r.Context()); err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != ContentType {
			return fmt.Errorf("%w: import takes %s, one event per line, not %q", fossil.ErrUnsupportedMediaType, ContentType, ct)
		}
	}
	// Lines are read and parsed on their own goroutine, ahead of the
	// COPY that stores them, so parsing and the database work overlap; the
	// channel bounds how far ahead (and so the memory).
	parsed := make(chan parsedLine, 1024)
	done := make(chan struct{})
	defer close(done)
	go h.parse(r.Body, parsed, done)
	next := func() (store.ImportItem, error) {
		p, ok := <-parsed
		if !ok {
			return store.ImportItem{}, io.EOF
		}
		return p.item, p.err
	}
	res, err := h.store.Import(r.Context(), next)
	if err != nil {
		return err
	}
	h.logger.Info("imported a log", "events", res.Events, "streams", res.Streams)
	problem.WriteJSON(w, http.StatusOK, res)
	return nil
}

type parsedLine struct {
	item store.ImportItem
	err  error
}

// parse sends the events of body to out and closes it at the end, after
// an error, or when done is closed.
func (h *Handler) parse(body io.Reader, out chan<- parsedLine, done <-chan struct{}) {
	defer close(out)
	send := func(p parsedLine) bool {
		select {
		case out <- p:
			return p.err == nil
		case <-done:
			return false
		}
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), h.maxLine)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		item, err := ParseLine("line "+strconv.Itoa(line), sc.Bytes())
		if !send(parsedLine{item, err}) {
			return
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fossil.Invalid("line "+strconv.Itoa(line+1), "longer than %d bytes", h.maxLine)
		} else {
			err = fmt.Errorf("read import body: %w", err)
		}
		send(parsedLine{err: err})
	}
}

// The members `fossil export` adds to each event, and the line of a
// replacement record.
var (
	saltMember        = []byte(`,"fossilsalt":"`)
	replacementPrefix = []byte(`{"fossilreplacement":`)
)

// ParseLine parses one line of an export: an event as the server serves
// it, optionally followed by "fossilsalt" and "fossilleafhash" (base64)
// when the export carries the tree, or {"fossilreplacement": {…}}, a
// record of the replacement chain.
func ParseLine(location string, line []byte) (store.ImportItem, error) {
	if bytes.HasPrefix(line, replacementPrefix) {
		var rec struct {
			R *struct {
				Index      int64     `json:"index"`
				Number     int64     `json:"number"`
				LeafHash   tlog.Hash `json:"leaf_hash"`
				Chain      tlog.Hash `json:"chain"`
				ReplacedAt time.Time `json:"replaced_at"`
			} `json:"fossilreplacement"`
		}
		if err := json.Unmarshal(line, &rec); err != nil || rec.R == nil {
			return store.ImportItem{}, fossil.Invalid(location, "not a replacement record")
		}
		r := store.Replacement(*rec.R)
		return store.ImportItem{Replacement: &r}, nil
	}
	var leaf *tlog.Hash
	var salt []byte
	if i := bytes.LastIndex(line, saltMember); i > 0 {
		var tree struct {
			Salt []byte     `json:"fossilsalt"`
			Leaf *tlog.Hash `json:"fossilleafhash"`
		}
		if err := json.Unmarshal(append([]byte{'{'}, line[i+1:]...), &tree); err != nil || tree.Leaf == nil {
			return store.ImportItem{}, fossil.Invalid(location, "fossilsalt and fossilleafhash must be the last members, in base64")
		}
		leaf, salt = tree.Leaf, tree.Salt
		line = append(line[:i:i], '}')
	}
	e, err := fossil.ParseJSON(location, line)
	if err != nil {
		return store.ImportItem{}, err
	}
	e.Salt = salt
	return store.ImportItem{Event: e, Leaf: leaf}, nil
}
