// Package consumer implements named consumers: durable offsets
// (PUT /consumer/{name}/commit), status (GET /consumer/{name},
// GET /consumers), an exclusive event stream per name
// (GET /consumer/{name}/sse) and acknowledgements (POST /events/{id}/ack).
//
// # Guarantees
//
//   - One connection per consumer name at a time, across every process on
//     the database: the stream holds a lease row that it renews every
//     LeaseTTL/3; a second connection gets 409 at once. A holder that
//     disconnects releases the lease; a crashed process's lease expires
//     within LeaseTTL. No database connection or session lock is held for
//     the life of a stream, so nothing can leak on a pooled connection.
//   - The stream starts after the committed offset (or, with none yet,
//     after Last-Event-Id) and has the ordering guarantees of package feed.
//   - Offsets only move forward unless the client asks to rewind.
//   - Acks are durable and idempotent; each wakes the writers waiting for
//     it, in any process, through one NOTIFY.
package consumer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/feed"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
	"github.com/fossil-events/fossil/store"
)

// Config wires a [Handler].
type Config struct {
	Store  *store.Store
	Hub    *feed.Hub
	Logger *slog.Logger
	// LeaseTTL is how long a crashed holder keeps a name; 0 means 5s.
	LeaseTTL time.Duration
}

// Handler serves the consumer routes.
type Handler struct {
	cfg    Config
	logger *slog.Logger
}

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, logger: cfg.Logger.With("component", "consumer")}
}

// Register adds the consumer routes.
func (h *Handler) Register(r *mux.Router) {
	r.Handle("/consumers", problem.Handler(h.logger, h.handleList)).Methods(http.MethodGet)
	r.Handle("/consumer/{name}", problem.Handler(h.logger, h.handleGet)).Methods(http.MethodGet)
	r.Handle("/consumer/{name}/commit", problem.Handler(h.logger, h.handleCommit)).Methods(http.MethodPut)
	r.Handle("/consumer/{name}/sse", problem.Handler(h.logger, h.handleSSE)).Methods(http.MethodGet)
	r.Handle("/events/{id}/ack", problem.Handler(h.logger, h.handleAck)).Methods(http.MethodPost)
}

// consumerName reads and validates {name}, and checks the consume grant.
func consumerName(r *http.Request) (string, error) {
	name, err := url.PathUnescape(mux.Vars(r)["name"])
	if err != nil {
		return "", fossil.Invalid("path.name", "consumer name is not properly escaped")
	}
	if err := fossil.ValidateConsumerName("path.name", name); err != nil {
		return "", err
	}
	if err := auth.CanConsume(r.Context(), name); err != nil {
		return "", err
	}
	return name, nil
}

// handleList serves GET /consumers.
func (h *Handler) handleList(w http.ResponseWriter, r *http.Request) error {
	if err := fossil.CheckQuery(r.URL.Query()); err != nil {
		return err
	}
	all, err := h.cfg.Store.ListConsumers(r.Context())
	if err != nil {
		return err
	}
	visible := make([]*store.Consumer, 0, len(all))
	for _, c := range all {
		if auth.CanConsume(r.Context(), c.Name) == nil {
			visible = append(visible, c)
		}
	}
	problem.WriteJSON(w, http.StatusOK, map[string]any{"consumers": visible})
	return nil
}

// handleGet serves GET /consumer/{name}.
func (h *Handler) handleGet(w http.ResponseWriter, r *http.Request) error {
	if err := fossil.CheckQuery(r.URL.Query()); err != nil {
		return err
	}
	name, err := consumerName(r)
	if err != nil {
		return err
	}
	c, err := h.cfg.Store.GetConsumer(r.Context(), name)
	if err != nil {
		return err
	}
	problem.WriteJSON(w, http.StatusOK, c)
	return nil
}

// handleCommit serves PUT /consumer/{name}/commit.
func (h *Handler) handleCommit(w http.ResponseWriter, r *http.Request) error {
	if err := fossil.CheckQuery(r.URL.Query()); err != nil {
		return err
	}
	name, err := consumerName(r)
	if err != nil {
		return err
	}
	header := fossil.HeaderLastEventID
	raw, ok := r.Header[http.CanonicalHeaderKey(header)]
	if !ok {
		header = fossil.HeaderLastEventNumber
		raw, ok = r.Header[http.CanonicalHeaderKey(header)]
	}
	if !ok || len(raw) == 0 {
		return fossil.Invalid("header."+fossil.HeaderLastEventID, "send the offset in Last-Event-Id or Last-Fossil-Event-Number")
	}
	offset, err := fossil.ParseEventNumber("header."+header, strings.TrimSpace(raw[0]))
	if err != nil {
		return err
	}
	rewind, err := parseRewind(r.Header)
	if err != nil {
		return err
	}
	if err := h.cfg.Store.CommitOffset(r.Context(), name, offset, rewind); err != nil {
		var inv *fossil.InvalidError
		if errors.As(err, &inv) {
			// Name the header the client actually sent.
			inv.Location = "header." + header
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// parseRewind reads Fossil-Rewind: absent or "false" is false, "true" is
// true (either in any case); anything else is a 400.
func parseRewind(hd http.Header) (bool, error) {
	v, ok := hd[http.CanonicalHeaderKey(fossil.HeaderRewind)]
	if !ok || len(v) == 0 {
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(v[0])) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fossil.Invalid("header."+fossil.HeaderRewind, "must be true or false, got %q", v[0])
}

// handleSSE serves GET /consumer/{name}/sse?stream=…: an exclusive stream
// starting after the committed offset.
func (h *Handler) handleSSE(w http.ResponseWriter, r *http.Request) error {
	name, err := consumerName(r)
	if err != nil {
		return err
	}
	params, err := feed.ParseRequest(r)
	if err != nil {
		return err
	}
	after := params.After
	holder := newHolder()
	ttl := h.cfg.LeaseTTL
	if err := h.cfg.Store.AcquireLease(r.Context(), name, holder, ttl); err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		defer cancel()
		if err := h.cfg.Store.ReleaseLease(ctx, name, holder); err != nil {
			h.logger.WarnContext(ctx, "release consumer lease", "consumer", name, "error", err)
		}
	}()
	// Read the offset after taking the lease, so a commit made by the
	// previous holder before it let go is seen.
	offset, ok, err := h.cfg.Store.ConsumerOffset(r.Context(), name)
	if err != nil {
		return err
	}
	if ok {
		after = offset
	}
	ctx, cancel := context.WithCancel(r.Context())
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		h.renew(ctx, cancel, name, holder, ttl)
	}()
	// Stop renewing before the lease is released (deferred above), so no
	// goroutine or pooled connection outlives the request.
	defer func() {
		cancel()
		<-renewed
	}()
	p := params
	p.After, p.Allow = after, auth.ReadFilter(r.Context())
	if exp, ok := auth.ExpiresAt(r.Context()); ok {
		p.Expires = exp
	}
	return h.cfg.Hub.Serve(ctx, w, p)
}

// renew keeps the lease alive until ctx ends; losing it ends the stream.
func (h *Handler) renew(ctx context.Context, cancel context.CancelFunc, name, holder string, ttl time.Duration) {
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, ttl/3)
		err := h.cfg.Store.RenewLease(rctx, name, holder, ttl)
		rcancel()
		switch {
		case err == nil:
		case errors.Is(err, fossil.ErrConflict):
			h.logger.WarnContext(ctx, "consumer lease lost; ending its stream", "consumer", name)
			cancel()
			return
		case ctx.Err() == nil:
			// The database is unreachable: keep streaming and retry; if the
			// lease expires meanwhile the next renewal reports it lost.
			h.logger.WarnContext(ctx, "renew consumer lease", "consumer", name, "error", err)
		}
	}
}

func newHolder() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	s := hex.EncodeToString(b[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// ackRequest is the body of POST /events/{id}/ack.
type ackRequest struct {
	ConsumerName string `json:"consumer_name"`
	Source       string `json:"source"`
}

// handleAck serves POST /events/{id}/ack.
func (h *Handler) handleAck(w http.ResponseWriter, r *http.Request) error {
	if err := fossil.CheckQuery(r.URL.Query()); err != nil {
		return err
	}
	id, err := url.PathUnescape(mux.Vars(r)["id"])
	if err != nil || id == "" {
		return fossil.Invalid("path.id", "event id is missing or not properly escaped")
	}
	if err := fossil.ValidateText("path.id", "event id", id); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return problem.BodyError(err)
	}
	var req ackRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return fossil.Invalid("body", "the body must be a JSON object like {\"consumer_name\": \"…\"}: %s", err.Error())
	}
	if req.ConsumerName == "" {
		return fossil.Invalid("body.consumer_name", "consumer_name is required")
	}
	if err := fossil.ValidateConsumerName("body.consumer_name", req.ConsumerName); err != nil {
		return err
	}
	if err := fossil.ValidateText("body.source", "source", req.Source); err != nil {
		return err
	}
	if err := auth.CanConsume(r.Context(), req.ConsumerName); err != nil {
		return err
	}
	// An event outside the token's read grant is unknown to it (404): an
	// ack must neither release writers waiting on it nor tell that it
	// exists. The store tells this process's waiting writers (its
	// post-commit hook).
	if _, err := h.cfg.Store.Ack(r.Context(), id, req.Source, req.ConsumerName, auth.ReadFilter(r.Context())); err != nil {
		return fmt.Errorf("ack %q: %w", id, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
