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
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 0, 64<<10), h.maxLine)
	line := 0
	next := func() (*fossil.Event, error) {
		for sc.Scan() {
			line++
			if len(sc.Bytes()) == 0 {
				continue
			}
			return fossil.ParseJSON("line "+strconv.Itoa(line), sc.Bytes())
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return nil, fossil.Invalid("line "+strconv.Itoa(line+1), "longer than %d bytes", h.maxLine)
			}
			return nil, fmt.Errorf("read import body: %w", err)
		}
		return nil, io.EOF
	}
	res, err := h.store.Import(r.Context(), next)
	if err != nil {
		return err
	}
	h.logger.Info("imported a log", "events", res.Events, "streams", res.Streams)
	problem.WriteJSON(w, http.StatusOK, res)
	return nil
}
