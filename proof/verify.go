package proof

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/store"
)

// Leaf is an event as a verifier sees it: enough to recompute its leaf,
// and the leaf the tree holds for it.
type Leaf struct {
	Number    int64
	Stream    string
	Sequence  int64
	ExpectAck string
	Doc       []byte // the event's JSON (fossil* members are ignored)
	Salt      []byte
	TreeLeaf  tlog.Hash
}

// Source is a log to verify: through the HTTP API or straight from the
// database.
type Source interface {
	// Tree returns the state to verify against: a signed checkpoint (nil
	// when the source has none to offer, as a database) and its content.
	Tree(ctx context.Context) (signed []byte, c Checkpoint, err error)
	// Leaves returns the events numbered after `after`, at most limit of
	// them and none beyond size, in number order.
	Leaves(ctx context.Context, after, size int64, limit int) ([]Leaf, error)
	// Replacements returns the replacement records after index `after`.
	Replacements(ctx context.Context, after int64, limit int) ([]store.Replacement, error)
	// Consistency returns a consistency proof from size from to size to,
	// or nil when the source cannot serve one.
	Consistency(ctx context.Context, from, to int64) (tlog.TreeProof, error)
}

// MismatchError reports the first event that does not verify.
type MismatchError struct {
	Number int64
	Reason string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("event %d does not verify: %s", e.Number, e.Reason)
}

// Result is what a successful verification established.
type Result struct {
	Checkpoint Checkpoint
	Signed     []byte  // the signed checkpoint verified (nil from a database)
	Replaced   []int64 // numbers of replaced events, ascending, each once
}

// VerifyOptions tune [Verify].
type VerifyOptions struct {
	// Previous, when set, is a checkpoint seen earlier: the log must still
	// contain its tree, and its replacement chain must continue.
	Previous *Checkpoint
	// Progress, when set, is called after each page with the events
	// verified so far and the total.
	Progress func(done, total int64)
	// PageSize is the number of events per read; 0 means 1000.
	PageSize int
}

// Verify walks the whole log of src: it recomputes every leaf from its
// event and salt and compares it with the leaf the tree holds (for a
// replaced event, with its newest replacement record), recomputes the root
// from the leaves and compares it with the checkpoint's, and checks the
// replacement chain against the checkpoint. The first event that does not
// verify is returned as a [*MismatchError].
func Verify(ctx context.Context, src Source, opts VerifyOptions) (*Result, error) {
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	signed, cp, err := src.Tree(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Checkpoint: cp, Signed: signed}

	// The replacement chain: recomputed record by record, it must end in
	// the checkpoint's, and pass through the previous checkpoint's.
	newest := map[int64]tlog.Hash{}
	var chain tlog.Hash
	var count int64
	prev := opts.Previous
	for {
		reps, err := src.Replacements(ctx, count, opts.PageSize)
		if err != nil {
			return nil, err
		}
		for _, r := range reps {
			if r.Index != count+1 {
				return nil, fmt.Errorf("replacement record %d is missing", count+1)
			}
			count = r.Index
			chain = fossil.NextChain(chain, fossil.ReplacementRecord(r.Index, r.Number, r.LeafHash))
			if r.Number < 1 || r.Number > cp.Size {
				return nil, &MismatchError{r.Number, fmt.Sprintf("replacement record %d names an event beyond the tree", r.Index)}
			}
			if prev != nil && count == prev.Replacements && chain != prev.Chain {
				return nil, fmt.Errorf("the replacement chain was rewritten since the previous checkpoint (record %d differs)", count)
			}
			if count == cp.Replacements && chain != cp.Chain {
				return nil, &MismatchError{r.Number, fmt.Sprintf("replacement record %d does not match the checkpoint's chain", r.Index)}
			}
			newest[r.Number] = r.LeafHash
		}
		if len(reps) < opts.PageSize {
			break
		}
	}
	if count != cp.Replacements {
		return nil, fmt.Errorf("the checkpoint names %d replacement records, the log holds %d", cp.Replacements, count)
	}
	if prev != nil && prev.Replacements > count {
		return nil, fmt.Errorf("the previous checkpoint named %d replacement records, the log now holds %d", prev.Replacements, count)
	}
	if prev != nil && prev.Size > cp.Size {
		return nil, fmt.Errorf("the previous checkpoint has %d events, the current one only %d", prev.Size, cp.Size)
	}

	edge := &fossil.TreeEdge{}
	for edge.Size < cp.Size {
		leaves, err := src.Leaves(ctx, edge.Size, cp.Size, opts.PageSize)
		if err != nil {
			return nil, err
		}
		if len(leaves) == 0 {
			return nil, &MismatchError{edge.Size + 1, "the event is missing from the log"}
		}
		for _, l := range leaves {
			n := edge.Size + 1
			if l.Number != n {
				return nil, &MismatchError{n, "the event is missing from the log"}
			}
			if len(l.Salt) != fossil.SaltSize {
				return nil, &MismatchError{n, "the event has no salt"}
			}
			tail, err := fossil.LeafTail(l.Doc, l.ExpectAck, l.Salt)
			if err != nil {
				return nil, &MismatchError{n, err.Error()}
			}
			h := fossil.LeafHash(l.Number, l.Stream, l.Sequence, tail)
			leaf := h
			if want, ok := newest[n]; ok {
				if h != want {
					return nil, &MismatchError{n, "the event differs from its newest authorised replacement"}
				}
				leaf = l.TreeLeaf
				res.Replaced = append(res.Replaced, n)
			} else if h != l.TreeLeaf {
				return nil, &MismatchError{n, "the event differs from its leaf in the tree"}
			}
			if _, err := edge.Add(leaf); err != nil {
				return nil, err
			}
			if prev != nil && edge.Size == prev.Size && edge.Root() != prev.Root {
				return nil, fmt.Errorf("the log no longer holds the tree of the previous checkpoint (size %d)", prev.Size)
			}
		}
		if opts.Progress != nil {
			opts.Progress(edge.Size, cp.Size)
		}
	}
	if edge.Root() != cp.Root {
		return nil, fmt.Errorf("the root recomputed from the events differs from the checkpoint's: the tree's stored leaves of replaced events were changed")
	}
	if prev != nil && prev.Size > 0 {
		p, err := src.Consistency(ctx, prev.Size, cp.Size)
		if err != nil {
			return nil, err
		}
		if p != nil {
			if err := tlog.CheckTree(p, cp.Size, cp.Root, prev.Size, prev.Root); err != nil {
				return nil, fmt.Errorf("the consistency proof from the previous checkpoint does not verify: %w", err)
			}
		}
	}
	return res, nil
}

// HTTPSource reads a log through Fossil's HTTP API.
type HTTPSource struct {
	URL    string // base URL, no trailing slash
	Token  string // bearer token, optional
	Key    string // verifier key of the checkpoints
	Client *http.Client
}

func (s *HTTPSource) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		return nil, err
	}
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// FetchKey returns the server's verifier key (for trust on first use).
func (s *HTTPSource) FetchKey(ctx context.Context) (string, error) {
	b, err := s.get(ctx, "/checkpoint/key")
	return strings.TrimSpace(string(b)), err
}

// Tree implements [Source].
func (s *HTTPSource) Tree(ctx context.Context) ([]byte, Checkpoint, error) {
	signed, err := s.get(ctx, "/checkpoint")
	if err != nil {
		return nil, Checkpoint{}, err
	}
	c, err := Open(signed, s.Key)
	return signed, c, err
}

// Leaves implements [Source].
func (s *HTTPSource) Leaves(ctx context.Context, after, size int64, limit int) ([]Leaf, error) {
	b, err := s.get(ctx, "/proofs/leaves?after="+strconv.FormatInt(after, 10)+"&limit="+strconv.Itoa(min(limit, MaxLimit)))
	if err != nil {
		return nil, err
	}
	var page struct {
		Leaves []LeafEntry `json:"leaves"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return nil, fmt.Errorf("/proofs/leaves: %w", err)
	}
	out := make([]Leaf, 0, len(page.Leaves))
	for _, e := range page.Leaves {
		if e.Number > size {
			break
		}
		var ev struct {
			Number    int64  `json:"fossileventnumber"`
			Stream    string `json:"fossilstream"`
			Sequence  int64  `json:"fossilsequenceinstream"`
			ExpectAck string `json:"fossilexpectack"`
		}
		if err := json.Unmarshal(e.Event, &ev); err != nil {
			return nil, &MismatchError{e.Number, "the served event is not JSON: " + err.Error()}
		}
		salt, err := base64.StdEncoding.DecodeString(e.Salt)
		if err != nil {
			return nil, &MismatchError{e.Number, "bad salt"}
		}
		out = append(out, Leaf{Number: ev.Number, Stream: ev.Stream, Sequence: ev.Sequence, ExpectAck: ev.ExpectAck, Doc: e.Event, Salt: salt, TreeLeaf: e.LeafHash})
	}
	return out, nil
}

// Replacements implements [Source].
func (s *HTTPSource) Replacements(ctx context.Context, after int64, limit int) ([]store.Replacement, error) {
	b, err := s.get(ctx, "/proofs/replacements?after="+strconv.FormatInt(after, 10)+"&limit="+strconv.Itoa(min(limit, MaxLimit)))
	if err != nil {
		return nil, err
	}
	var page struct {
		Replacements []ReplacementEntry `json:"replacements"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return nil, fmt.Errorf("/proofs/replacements: %w", err)
	}
	out := make([]store.Replacement, len(page.Replacements))
	for i, r := range page.Replacements {
		out[i] = store.Replacement(r)
	}
	return out, nil
}

// Consistency implements [Source].
func (s *HTTPSource) Consistency(ctx context.Context, from, to int64) (tlog.TreeProof, error) {
	b, err := s.get(ctx, "/proofs/consistency?from="+strconv.FormatInt(from, 10)+"&to="+strconv.FormatInt(to, 10))
	if err != nil {
		return nil, err
	}
	var p ConsistencyProof
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("/proofs/consistency: %w", err)
	}
	return p.Proof, nil
}

// StoreSource reads a log straight from its database. It has no signed
// checkpoint: the tree it checks the events against is the one stored
// beside them, so a database rewritten with its tree is caught only
// against a checkpoint kept earlier ([VerifyOptions.Previous]).
type StoreSource struct {
	Store  *store.Store
	Origin string
}

// Tree implements [Source].
func (s *StoreSource) Tree(ctx context.Context) ([]byte, Checkpoint, error) {
	ts, err := s.Store.TreeState(ctx)
	if err != nil {
		return nil, Checkpoint{}, err
	}
	if !ts.Complete() {
		return nil, Checkpoint{}, errors.New("the log's tree is still being built (a server builds it at start); verify again once it is complete")
	}
	origin := s.Origin
	if origin == "" {
		origin = DefaultOrigin
	}
	return nil, Checkpoint{Origin: origin, Size: ts.Size, Root: ts.Edge.Root(), Replacements: ts.Replacements, Chain: ts.Chain}, nil
}

// Leaves implements [Source].
func (s *StoreSource) Leaves(ctx context.Context, after, size int64, limit int) ([]Leaf, error) {
	ls, err := s.Store.Leaves(ctx, after, size, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Leaf, len(ls))
	for i, l := range ls {
		e := l.Event
		out[i] = Leaf{Number: e.Number, Stream: e.Stream, Sequence: e.Sequence, ExpectAck: strings.Join(e.ExpectAck, ","), Doc: e.Doc, Salt: l.Salt, TreeLeaf: l.Hash}
	}
	return out, nil
}

// Replacements implements [Source].
func (s *StoreSource) Replacements(ctx context.Context, after int64, limit int) ([]store.Replacement, error) {
	return s.Store.Replacements(ctx, after, limit)
}

// Consistency implements [Source]: the walk itself recomputes the earlier
// tree, so no proof is needed.
func (s *StoreSource) Consistency(context.Context, int64, int64) (tlog.TreeProof, error) {
	return nil, nil
}
