package proof

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
	"github.com/fossil-events/fossil/store"
)

// TileHeight is the height of the hash tiles served under /tile/ (C2SP
// tlog-tiles).
const TileHeight = 8

// Config configures the proof endpoints.
type Config struct {
	Store  *store.Store
	Signer note.Signer
	// VerifierKey is the signer's verifier key, served by /checkpoint/key.
	VerifierKey string
	// Origin is the checkpoint's first line; "" means DefaultOrigin.
	Origin string
	Logger *slog.Logger
	// SignedFunc, when set, is called after each checkpoint signed (for
	// metrics).
	SignedFunc func()
}

// Handler serves /checkpoint, /checkpoint/key, /events/{n}/proof,
// /proofs/consistency, /proofs/leaves, /proofs/replacements and /tile/….
type Handler struct {
	cfg Config

	mu   sync.Mutex
	last struct {
		size, replacements int64
		signed             []byte
	}
}

// New returns the proof handler.
func New(cfg Config) *Handler {
	if cfg.Origin == "" {
		cfg.Origin = DefaultOrigin
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg}
}

// Register adds the routes to r.
func (h *Handler) Register(r *mux.Router) {
	r.Handle("/checkpoint", problem.Handler(h.cfg.Logger, h.handleCheckpoint)).Methods(http.MethodGet)
	r.Handle("/checkpoint/key", problem.Handler(h.cfg.Logger, h.handleKey)).Methods(http.MethodGet)
	r.Handle("/events/{number}/proof", problem.Handler(h.cfg.Logger, h.handleInclusion)).Methods(http.MethodGet)
	r.Handle("/proofs/consistency", problem.Handler(h.cfg.Logger, h.handleConsistency)).Methods(http.MethodGet)
	r.Handle("/proofs/leaves", problem.Handler(h.cfg.Logger, h.handleLeaves)).Methods(http.MethodGet)
	r.Handle("/proofs/replacements", problem.Handler(h.cfg.Logger, h.handleReplacements)).Methods(http.MethodGet)
	r.Handle("/tile/{path:.+}", problem.Handler(h.cfg.Logger, h.handleTile)).Methods(http.MethodGet)
}

// errBuilding answers while the tree of an existing log is being built.
var errBuilding = fmt.Errorf("%w: the log's Merkle tree is being built; proofs are served once it is complete", fossil.ErrUnavailable)

// state reads the tree and refuses while it is incomplete.
func (h *Handler) state(ctx context.Context, w http.ResponseWriter) (*store.TreeState, error) {
	ts, err := h.cfg.Store.TreeState(ctx)
	if err != nil {
		return nil, err
	}
	if !ts.Complete() {
		w.Header().Set("Retry-After", "5")
		return nil, errBuilding
	}
	return ts, nil
}

// Checkpoint returns the signed checkpoint of the tree as committed.
func (h *Handler) Checkpoint(ctx context.Context, ts *store.TreeState) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last.signed != nil && h.last.size == ts.Size && h.last.replacements == ts.Replacements {
		return h.last.signed, nil
	}
	signed, err := Sign(Checkpoint{
		Origin:       h.cfg.Origin,
		Size:         ts.Size,
		Root:         ts.Edge.Root(),
		Replacements: ts.Replacements,
		Chain:        ts.Chain,
	}, h.cfg.Signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	h.last.size, h.last.replacements, h.last.signed = ts.Size, ts.Replacements, signed
	if h.cfg.SignedFunc != nil {
		h.cfg.SignedFunc()
	}
	return signed, nil
}

// handleCheckpoint serves GET /checkpoint.
func (h *Handler) handleCheckpoint(w http.ResponseWriter, r *http.Request) error {
	signed, _, err := h.Current(r.Context())
	if err != nil {
		retryBuilding(w, err)
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(signed)
	return nil
}

// Current returns the signed checkpoint of the tree as committed, and the
// tree state it signs. While the tree is being built it returns an error
// of [fossil.ErrUnavailable].
func (h *Handler) Current(ctx context.Context) ([]byte, *store.TreeState, error) {
	ts, err := h.cfg.Store.TreeState(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !ts.Complete() {
		return nil, nil, errBuilding
	}
	signed, err := h.Checkpoint(ctx, ts)
	return signed, ts, err
}

// VerifierKey returns the verifier key of the checkpoints' signer.
func (h *Handler) VerifierKey() string { return h.cfg.VerifierKey }

// retryBuilding tells a client to come back while the tree is being built.
func retryBuilding(w http.ResponseWriter, err error) {
	if errors.Is(err, errBuilding) {
		w.Header().Set("Retry-After", "5")
	}
}

// handleKey serves GET /checkpoint/key.
func (h *Handler) handleKey(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(h.cfg.VerifierKey + "\n"))
	return nil
}

// InclusionProof is the body of GET /events/{n}/proof.
type InclusionProof struct {
	LeafIndex int64       `json:"leaf_index"`
	TreeSize  int64       `json:"tree_size"`
	LeafHash  tlog.Hash   `json:"leaf_hash"`
	Proof     []tlog.Hash `json:"proof"`
}

// handleInclusion serves GET /events/{n}/proof[?tree_size=S].
func (h *Handler) handleInclusion(w http.ResponseWriter, r *http.Request) error {
	n, err := fossil.ParseEventNumber("path.number", mux.Vars(r)["number"])
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if err := onlyParams(q, "tree_size"); err != nil {
		return err
	}
	var size int64
	if q.Has("tree_size") {
		if size, err = positiveParam(q, "tree_size"); err != nil {
			return err
		}
	}
	p, err := h.Inclusion(r.Context(), n, size, "path.number", "query.tree_size")
	if err != nil {
		retryBuilding(w, err)
		return err
	}
	problem.WriteJSON(w, http.StatusOK, p)
	return nil
}

// Inclusion proves that event n is in the tree of the given size (0: the
// current checkpoint's), for a caller allowed to read its stream (the
// context's grant). numberLoc and sizeLoc name the inputs in errors.
func (h *Handler) Inclusion(ctx context.Context, n, size int64, numberLoc, sizeLoc string) (*InclusionProof, error) {
	if n < 1 {
		return nil, fossil.Invalid(numberLoc, "event numbers start at 1")
	}
	ts, stream, found, err := h.cfg.Store.TreeStateWithStream(ctx, n)
	if err != nil {
		return nil, err
	}
	if !ts.Complete() {
		return nil, errBuilding
	}
	if n > ts.Size {
		return nil, fmt.Errorf("%w: event %d is beyond the newest event (%d)", fossil.ErrNotFound, n, ts.Size)
	}
	if size == 0 {
		size = ts.Size
	} else if size < n || size > ts.Size {
		return nil, fossil.Invalid(sizeLoc, "tree_size must be between the event number %d and the newest event %d, got %d", n, ts.Size, size)
	}
	if !found {
		return nil, fmt.Errorf("%w: event %d is not in the log", fossil.ErrNotFound, n)
	}
	if err := auth.CanRead(ctx, stream); err != nil {
		return nil, err
	}
	// One query: the proof's hashes and the leaf's.
	reader := h.cfg.Store.HashReader(ctx)
	var leaf *tlog.Hash
	p, err := tlog.ProveRecord(size, n-1, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		hs, err := reader.ReadHashes(append(idx, tlog.StoredHashIndex(0, n-1)))
		if err != nil {
			return nil, err
		}
		leaf = &hs[len(idx)]
		return hs[:len(idx)], nil
	}))
	if err != nil {
		return nil, fmt.Errorf("prove event %d in tree of size %d: %w", n, size, err)
	}
	if leaf == nil { // a tree of one leaf needs no hash for its proof
		hs, err := reader.ReadHashes([]int64{tlog.StoredHashIndex(0, n-1)})
		if err != nil {
			return nil, err
		}
		leaf = &hs[0]
	}
	if p == nil {
		p = tlog.RecordProof{}
	}
	return &InclusionProof{LeafIndex: n - 1, TreeSize: size, LeafHash: *leaf, Proof: p}, nil
}

// ConsistencyProof is the body of GET /proofs/consistency.
type ConsistencyProof struct {
	From  int64       `json:"from"`
	To    int64       `json:"to"`
	Proof []tlog.Hash `json:"proof"`
}

// handleConsistency serves GET /proofs/consistency?from=M&to=N.
func (h *Handler) handleConsistency(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := onlyParams(q, "from", "to"); err != nil {
		return err
	}
	from, err := positiveParam(q, "from")
	if err != nil {
		return err
	}
	to, err := positiveParam(q, "to")
	if err != nil {
		return err
	}
	p, err := h.Consistency(r.Context(), from, to, "query")
	if err != nil {
		retryBuilding(w, err)
		return err
	}
	problem.WriteJSON(w, http.StatusOK, p)
	return nil
}

// Consistency proves that the tree of size from is a prefix of the tree of
// size to; loc names the pair in errors.
func (h *Handler) Consistency(ctx context.Context, from, to int64, loc string) (*ConsistencyProof, error) {
	ts, err := h.cfg.Store.TreeState(ctx)
	if err != nil {
		return nil, err
	}
	if !ts.Complete() {
		return nil, errBuilding
	}
	if from < 1 || from > to || to > ts.Size {
		return nil, fossil.Invalid(loc, "want 0 < from <= to <= %d (the newest event), got from=%d to=%d", ts.Size, from, to)
	}
	p, err := tlog.ProveTree(to, from, h.cfg.Store.HashReader(ctx))
	if err != nil {
		return nil, fmt.Errorf("prove tree %d -> %d: %w", from, to, err)
	}
	if p == nil {
		p = tlog.TreeProof{}
	}
	return &ConsistencyProof{From: from, To: to, Proof: p}, nil
}

// handleTile serves GET /tile/{L}/{N}[.p/{W}]: hash tiles of height 8.
func (h *Handler) handleTile(w http.ResponseWriter, r *http.Request) error {
	path := mux.Vars(r)["path"]
	t, err := tlog.ParseTilePath("tile/" + strconv.Itoa(TileHeight) + "/" + path)
	if err != nil || t.L < 0 {
		return fmt.Errorf("%w: no hash tile %q (want /tile/{L}/{N}[.p/{W}])", fossil.ErrNotFound, path)
	}
	if len(r.URL.Query()) > 0 {
		return onlyParams(r.URL.Query())
	}
	ts, err := h.state(r.Context(), w)
	if err != nil {
		return err
	}
	// Level L of the tiles holds the tree's hashes at level L*height.
	if have := ts.Size >> (uint(t.L) * TileHeight); t.N<<TileHeight+int64(t.W) > have {
		return fmt.Errorf("%w: tile %s is beyond the tree of size %d", fossil.ErrNotFound, path, ts.Size)
	}
	data, err := tlog.ReadTileData(t, h.cfg.Store.HashReader(r.Context()))
	if err != nil {
		return fmt.Errorf("read tile %s: %w", path, err)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if t.W == 1<<TileHeight {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	_, _ = w.Write(data)
	return nil
}

// LeafEntry is one element of GET /proofs/leaves: what a verifier needs to
// recompute an event's leaf and what the tree holds for it.
type LeafEntry struct {
	Number   int64           `json:"number"`
	Salt     string          `json:"salt"`
	LeafHash tlog.Hash       `json:"leaf_hash"`
	Event    json.RawMessage `json:"event"`
}

// handleLeaves serves GET /proofs/leaves?after=N&limit=K: events after N
// in number order with their salts and tree leaves, leaving out events
// outside the token's read grant.
func (h *Handler) handleLeaves(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := onlyParams(q, "after", "limit"); err != nil {
		return err
	}
	after, err := nonNegativeParam(q, "after")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	ts, err := h.state(r.Context(), w)
	if err != nil {
		return err
	}
	leaves, err := h.cfg.Store.Leaves(r.Context(), after, ts.Size, limit)
	if err != nil {
		return err
	}
	allow := auth.ReadFilter(r.Context())
	out := make([]LeafEntry, 0, len(leaves))
	for _, l := range leaves {
		if allow != nil && !allow(l.Event.Stream) {
			continue
		}
		out = append(out, LeafEntry{
			Number:   l.Event.Number,
			Salt:     base64.StdEncoding.EncodeToString(l.Salt),
			LeafHash: l.Hash,
			Event:    l.Event.AppendJSON(nil),
		})
	}
	if after+int64(limit) < ts.Size {
		w.Header().Set("Link", "</proofs/leaves?after="+strconv.FormatInt(after+int64(limit), 10)+"&limit="+strconv.Itoa(limit)+`>; rel="next"`)
	}
	problem.WriteJSON(w, http.StatusOK, map[string]any{"tree_size": ts.Size, "leaves": out})
	return nil
}

// ReplacementEntry is one element of GET /proofs/replacements.
type ReplacementEntry struct {
	Index      int64     `json:"index"`
	Number     int64     `json:"number"`
	LeafHash   tlog.Hash `json:"leaf_hash"`
	Chain      tlog.Hash `json:"chain"`
	ReplacedAt time.Time `json:"replaced_at"`
}

// handleReplacements serves GET /proofs/replacements?after=I&limit=K.
func (h *Handler) handleReplacements(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := onlyParams(q, "after", "limit"); err != nil {
		return err
	}
	after, err := nonNegativeParam(q, "after")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	reps, err := h.cfg.Store.Replacements(r.Context(), after, limit)
	if err != nil {
		return err
	}
	out := make([]ReplacementEntry, len(reps))
	for i, rp := range reps {
		out[i] = ReplacementEntry(rp)
	}
	if len(reps) == limit {
		w.Header().Set("Link", "</proofs/replacements?after="+strconv.FormatInt(reps[len(reps)-1].Index, 10)+"&limit="+strconv.Itoa(limit)+`>; rel="next"`)
	}
	problem.WriteJSON(w, http.StatusOK, map[string]any{"replacements": out})
	return nil
}

// MaxLimit caps the page size of /proofs/leaves and /proofs/replacements.
const MaxLimit = 1000

func onlyParams(q url.Values, names ...string) error {
next:
	for k := range q {
		for _, n := range names {
			if k == n {
				continue next
			}
		}
		return fossil.Invalid("query."+k, "unknown query parameter %q", k)
	}
	return nil
}

func positiveParam(q url.Values, name string) (int64, error) {
	n, err := nonNegativeParam(q, name)
	if err == nil && n == 0 {
		return 0, fossil.Invalid("query."+name, "%s must be a positive integer, got %q", name, q.Get(name))
	}
	return n, err
}

func nonNegativeParam(q url.Values, name string) (int64, error) {
	s := q.Get(name)
	if s == "" && !q.Has(name) {
		if name == "after" {
			return 0, nil
		}
		return 0, fossil.Invalid("query."+name, "%s is required", name)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
		return 0, fossil.Invalid("query."+name, "%s must be a non-negative integer, got %q", name, s)
	}
	return n, nil
}

func limitParam(q url.Values) (int, error) {
	if !q.Has("limit") {
		return 100, nil
	}
	n, err := positiveParam(q, "limit")
	if err != nil {
		return 0, err
	}
	if n > MaxLimit {
		return 0, fossil.Invalid("query.limit", "limit %d is above the maximum of %d", n, MaxLimit)
	}
	return int(n), nil
}
