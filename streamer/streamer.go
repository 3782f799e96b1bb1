package streamer

import (
	"bufio"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/feed"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
	"github.com/fossil-events/fossil/store"
)

// Page limits of the query endpoints.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Handler serves the read endpoints.
type Handler struct {
	store  *store.Store
	hub    *feed.Hub
	logger *slog.Logger
}

// New returns a Handler.
func New(st *store.Store, hub *feed.Hub, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{store: st, hub: hub, logger: logger.With("component", "streamer")}
}

// Register adds the streamer's routes.
func (h *Handler) Register(r *mux.Router) {
	r.Handle("/sse", problem.Handler(h.logger, h.handleSSE)).Methods(http.MethodGet)
	r.Handle("/streams", problem.Handler(h.logger, h.handleStreams)).Methods(http.MethodGet)
	r.Handle("/streams/{stream}", problem.Handler(h.logger, h.handleStream)).Methods(http.MethodGet)
	r.Handle("/streams/{stream}/events", problem.Handler(h.logger, h.handleStreamEvents)).Methods(http.MethodGet)
	r.Handle("/events", problem.Handler(h.logger, h.handleEvents)).Methods(http.MethodGet)
	r.Handle("/events/{number}", problem.Handler(h.logger, h.handleEvent)).Methods(http.MethodGet)
}

// handleSSE serves GET /sse?stream=<template>…: every stored event after the
// Last-Event-Id cursor whose stream matches a template, then live events.
func (h *Handler) handleSSE(w http.ResponseWriter, r *http.Request) error {
	p, err := feed.ParseRequest(r)
	if err != nil {
		return err
	}
	p.Allow = auth.ReadFilter(r.Context())
	if exp, ok := auth.ExpiresAt(r.Context()); ok {
		p.Expires = exp
	}
	return h.hub.Serve(r.Context(), w, p)
}

// parseLimit reads ?limit=, default 100, at most 1000.
func parseLimit(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fossil.Invalid("query.limit", "limit must be a positive integer, got %q", s)
	}
	if n > MaxLimit {
		return 0, fossil.Invalid("query.limit", "limit %d is above the maximum of %d", n, MaxLimit)
	}
	return n, nil
}

// streamList is the body of GET /streams.
type streamList struct {
	Streams []*store.StreamInfo `json:"streams"`
}

// handleStreams serves GET /streams?prefix=&after=&limit=: the streams
// whose names start with prefix, in byte order after the name after, with
// their event counts and last write. Streams outside the token's read grant
// are left out; a page may then hold fewer than limit streams while the
// Link header says more follow.
func (h *Handler) handleStreams(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := fossil.CheckQuery(q, "prefix", "after", "limit"); err != nil {
		return err
	}
	limit, err := parseLimit(q)
	if err != nil {
		return err
	}
	p := store.ListStreamsParams{Prefix: q.Get("prefix"), After: q.Get("after"), Limit: limit}
	for _, name := range []string{"prefix", "after"} {
		if v := q.Get(name); len(v) > fossil.MaxNameLength || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return fossil.Invalid("query."+name, "%s must be UTF-8 text of at most %d bytes", name, fossil.MaxNameLength)
		}
	}
	streams, err := h.store.ListStreams(r.Context(), p)
	if err != nil {
		return err
	}
	if len(streams) == limit {
		next := url.Values{"after": {streams[len(streams)-1].Name}, "limit": {strconv.Itoa(limit)}}
		if p.Prefix != "" {
			next.Set("prefix", p.Prefix)
		}
		w.Header().Set("Link", "</streams?"+next.Encode()+`>; rel="next"`)
	}
	out := streamList{Streams: make([]*store.StreamInfo, 0, len(streams))}
	allow := auth.ReadFilter(r.Context())
	for _, si := range streams {
		if allow == nil || allow(si.Name) {
			out.Streams = append(out.Streams, si)
		}
	}
	problem.WriteJSON(w, http.StatusOK, out)
	return nil
}

// handleStream serves GET /streams/{stream}: one stream's event count,
// newest event and last write. A stream without events → 404.
func (h *Handler) handleStream(w http.ResponseWriter, r *http.Request) error {
	if err := fossil.CheckQuery(r.URL.Query()); err != nil {
		return err
	}
	stream, err := url.PathUnescape(mux.Vars(r)["stream"])
	if err != nil {
		return fossil.Invalid("path.stream", "stream is not properly escaped")
	}
	if err := fossil.ValidateStream("path.stream", stream); err != nil {
		return err
	}
	if err := auth.CanRead(r.Context(), stream); err != nil {
		return err
	}
	si, err := h.store.Stream(r.Context(), stream)
	if err != nil {
		return err
	}
	problem.WriteJSON(w, http.StatusOK, si)
	return nil
}

// handleStreamEvents serves GET /streams/{stream}/events?from=&limit=.
func (h *Handler) handleStreamEvents(w http.ResponseWriter, r *http.Request) error {
	stream, err := url.PathUnescape(mux.Vars(r)["stream"])
	if err != nil {
		return fossil.Invalid("path.stream", "stream is not properly escaped")
	}
	if err := fossil.ValidateStream("path.stream", stream); err != nil {
		return err
	}
	if err := auth.CanRead(r.Context(), stream); err != nil {
		return err
	}
	q := r.URL.Query()
	if err := fossil.CheckQuery(q, "from", "limit"); err != nil {
		return err
	}
	limit, err := parseLimit(q)
	if err != nil {
		return err
	}
	from := int64(1)
	if s := q.Get("from"); s != "" {
		if from, err = fossil.ParseExpectedSequence("query.from", s); err != nil {
			return err
		}
	}
	events, err := h.store.StreamEvents(r.Context(), stream, from, limit)
	if err != nil {
		return err
	}
	if store.PageFull(events, limit, 0) {
		next := events[len(events)-1].Sequence + 1
		w.Header().Set("Link", "</streams/"+url.PathEscape(stream)+"/events?from="+strconv.FormatInt(next, 10)+"&limit="+strconv.Itoa(limit)+`>; rel="next"`)
	}
	writeBatch(w, events, nil)
	return nil
}

// handleEvents serves GET /events?after=&limit=: the global log.
func (h *Handler) handleEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := fossil.CheckQuery(q, "after", "limit"); err != nil {
		return err
	}
	limit, err := parseLimit(q)
	if err != nil {
		return err
	}
	var after int64
	if s := q.Get("after"); s != "" {
		if after, err = fossil.ParseEventNumber("query.after", s); err != nil {
			return err
		}
	}
	events, err := h.store.ReadLog(r.Context(), store.ReadLogParams{After: after, Limit: limit})
	if err != nil {
		return err
	}
	if store.PageFull(events, limit, 0) {
		next := events[len(events)-1].Number
		w.Header().Set("Link", "</events?after="+strconv.FormatInt(next, 10)+"&limit="+strconv.Itoa(limit)+`>; rel="next"`)
	}
	writeBatch(w, events, auth.ReadFilter(r.Context()))
	return nil
}

// handleEvent serves GET /events/{number}: one event in structured mode.
func (h *Handler) handleEvent(w http.ResponseWriter, r *http.Request) error {
	if err := fossil.CheckQuery(r.URL.Query()); err != nil {
		return err
	}
	n, err := fossil.ParseEventNumber("path.number", mux.Vars(r)["number"])
	if err != nil {
		return err
	}
	e, err := h.store.EventByNumber(r.Context(), n)
	if err != nil {
		return err
	}
	if auth.CanRead(r.Context(), e.Stream) != nil {
		// Refused without naming the stream, which the token may not read.
		return fmt.Errorf("the token does not grant read access to the stream of event %d: %w", n, fossil.ErrForbidden)
	}
	w.Header().Set("Content-Type", "application/cloudevents+json")
	_, _ = w.Write(append(e.AppendJSON(nil), '\n'))
	return nil
}

// writeBatch writes events as application/cloudevents-batch+json, leaving
// out those allow refuses. Events are rendered and written one at a time
// and dropped from the page once written, so the response never exists
// whole in memory: a request holds its page (bounded by
// [store.DefaultPageBytes] plus one event) and one rendered event.
func writeBatch(w http.ResponseWriter, events []*fossil.Event, allow func(string) bool) {
	w.Header().Set("Content-Type", "application/cloudevents-batch+json")
	bw := bufio.NewWriterSize(w, 32<<10)
	var b []byte
	sep := byte('[')
	for i, e := range events {
		events[i] = nil
		if allow != nil && !allow(e.Stream) {
			continue
		}
		b = append(b[:0], sep)
		sep = ','
		b = e.AppendJSON(b)
		if _, err := bw.Write(b); err != nil {
			return // the client is gone
		}
		if cap(b) > 64<<10 {
			b = nil // keep no large event's buffer for the next one
		}
	}
	if sep == '[' {
		_, _ = bw.WriteString("[")
	}
	_, _ = bw.WriteString("]\n")
	_ = bw.Flush()
}
