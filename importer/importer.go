// Package importer serves POST /import: a log exported with `fossil
// export` (the events as the server serves them, one per line) restored
// into an empty store, keeping every number, stream, sequence and
// attribute. It is the restore half of backup and restore, and the way to
// move a log to another PostgreSQL.
package importer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

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
	next := func() (*fossil.Event, error) {
		p, ok := <-parsed
		if !ok {
			return nil, io.EOF
		}
		return p.event, p.err
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
	event *fossil.Event
	err   error
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
		e, err := fossil.ParseJSON("line "+strconv.Itoa(line), sc.Bytes())
		if !send(parsedLine{e, err}) {
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
