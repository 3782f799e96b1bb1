// Package importer serves POST /import: a log exported with `fossil
// export` (the events as the server serves them, one per line) restored
// into an empty store, keeping every number, stream, sequence and
// attribute, or an export after a store's newest event continuing it. It
// is the restore half of backup and restore, and the way to move a log to
// another PostgreSQL (and keep the copy up to date).
package importer

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime"
	"strconv"
	"sync"
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
// {"events": N, "streams": M, "replacements": R} once everything is
// committed; 409 when the store's newest event is not the one before the
// first imported; 400 naming the first bad line, and then nothing is
// imported.
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
	// Lines are read on one goroutine and parsed (checked, their leaves
	// hashed) on one per CPU, ahead of the COPY that stores them, so
	// parsing and the database work overlap; the channels bound how far
	// ahead (and so the memory).
	next, stop := parseParallel(r.Body, h.maxLine, runtime.GOMAXPROCS(0))
	defer stop()
	res, err := h.store.Import(r.Context(), next)
	if err != nil {
		return err
	}
	h.logger.Info("imported a log", "events", res.Events, "streams", res.Streams)
	problem.WriteJSON(w, http.StatusOK, res)
	return nil
}

// chunkLines is how many lines a parsing goroutine takes at a time.
const chunkLines = 256

// chunk is a run of lines, parsed by one worker; its results go to out.
type chunk struct {
	firstLine int    // the number of lines[0] in the body
	data      []byte // the lines' bytes
	ends      []int  // end offset of each line in data
	items     []store.ImportItem
	err       error // after items: the first bad line, or the read error
	out       chan *chunk
}

// parseParallel reads body line by line and parses the lines on workers
// goroutines, giving the items back in order through next (io.EOF at the
// end, or the first error). stop releases the goroutines.
func parseParallel(body io.Reader, maxLine, workers int) (next func() (store.ImportItem, error), stop func()) {
	done := make(chan struct{})
	jobs := make(chan *chunk, workers)
	order := make(chan *chunk, 2*workers+2)
	go readChunks(body, maxLine, jobs, order, done)
	for range max(workers, 1) {
		go func() {
			for c := range jobs {
				c.parse()
				c.out <- c
			}
		}()
	}
	var (
		cur *chunk
		i   int
		err error
	)
	next = func() (store.ImportItem, error) {
		for err == nil && (cur == nil || i == len(cur.items)) {
			if cur != nil && cur.err != nil {
				err = cur.err
				break
			}
			c, ok := <-order
			if !ok {
				err = io.EOF
				break
			}
			cur, i = <-c.out, 0
		}
		if err != nil {
			return store.ImportItem{}, err
		}
		i++
		return cur.items[i-1], nil
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			// Let the reader and the workers finish what they hold.
			for c := range order {
				<-c.out
			}
		})
	}
	return next, stop
}

// readChunks cuts body into chunks, hands each to a worker (jobs) and, in
// order, to the consumer (order); it closes both at the end, after a read
// error (carried by the last chunk), or when done is closed.
func readChunks(body io.Reader, maxLine int, jobs, order chan<- *chunk, done <-chan struct{}) {
	defer close(order)
	defer close(jobs)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	c := &chunk{firstLine: 1}
	send := func() bool {
		c.out = make(chan *chunk, 1)
		select {
		case order <- c:
		case <-done:
			return false
		}
		jobs <- c // a worker is always free to take it: order bounds the chunks in flight
		c = &chunk{firstLine: line + 1}
		return true
	}
	for sc.Scan() {
		line++
		select {
		case <-done:
			return
		default:
		}
		c.data = append(c.data, sc.Bytes()...)
		c.ends = append(c.ends, len(c.data))
		if len(c.ends) == chunkLines {
			if !send() {
				return
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			c.err = fossil.Invalid("line "+strconv.Itoa(line+1), "longer than %d bytes", maxLine)
		} else {
			c.err = fmt.Errorf("read import body: %w", err)
		}
	}
	if len(c.ends) > 0 || c.err != nil {
		send()
	}
}

// parse parses the chunk's lines into items, stopping at the first bad
// one (kept in err, ahead of a read error).
func (c *chunk) parse() {
	items := make([]store.ImportItem, 0, len(c.ends))
	start := 0
	for k, end := range c.ends {
		b := c.data[start:end:end]
		start = end
		if len(b) == 0 {
			continue
		}
		item, err := ParseLine("line "+strconv.Itoa(c.firstLine+k), b)
		if err != nil {
			c.err = err
			break
		}
		items = append(items, item)
	}
	c.items = items
	c.data = nil
}

// The members `fossil export` adds to each event, and the line of a
// replacement record.
var (
	saltMember        = []byte(`,"fossilsalt":"`)
	leafMember        = []byte(`","fossilleafhash":"`)
	replacementPrefix = []byte(`{"fossilreplacement":`)
)

// parseTree reads `SALT","fossilleafhash":"LEAF"}`, what follows
// `,"fossilsalt":"` at the end of an exported event (both in standard
// base64, as `fossil export` writes them).
func parseTree(b []byte) (salt []byte, leaf *tlog.Hash, err error) {
	i := bytes.Index(b, leafMember)
	rest, ok := bytes.CutSuffix(bytes.TrimRight(b, "\r\n"), []byte(`"}`))
	if i < 0 || !ok || len(rest) < i+len(leafMember) {
		return nil, nil, errors.New("not in that form")
	}
	enc := base64.StdEncoding
	salt = make([]byte, enc.DecodedLen(i))
	n, err := enc.Decode(salt, b[:i])
	if err != nil {
		return nil, nil, fmt.Errorf("fossilsalt: %w", err)
	}
	salt = salt[:n]
	var h tlog.Hash
	if l := rest[i+len(leafMember):]; len(l) != enc.EncodedLen(len(h)) {
		return nil, nil, errors.New("fossilleafhash is not a 32-byte hash")
	} else if n, err := enc.Decode(h[:], l); err != nil || n != len(h) {
		return nil, nil, errors.New("fossilleafhash is not a 32-byte hash")
	}
	return salt, &h, nil
}

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
		var err error
		if salt, leaf, err = parseTree(line[i+len(saltMember):]); err != nil {
			return store.ImportItem{}, fossil.Invalid(location, "fossilsalt and fossilleafhash must be the last members, in base64: %s", err.Error())
		}
		line = append(line[:i:i], '}')
	}
	e, err := fossil.ParseJSON(location, line)
	if err != nil {
		return store.ImportItem{}, err
	}
	e.Salt = salt
	item := store.ImportItem{Event: e, Leaf: leaf}
	if leaf != nil && len(salt) == fossil.SaltSize {
		content, err := e.LeafHash(salt)
		if err != nil {
			return store.ImportItem{}, fossil.Invalid(location, "%s", err.Error())
		}
		item.Content = &content
	}
	return item, nil
}
