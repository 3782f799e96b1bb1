package rpc

import (
	"context"
	"fmt"
	"math"

	"connectrpc.com/connect"

	"github.com/fossil-events/fossil/fossil"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
)

// Proofs serves the transparency log (the proof package, wired by cmd).
// Hashes are 32 bytes; errors are those of the HTTP endpoints, with the
// locations given.
type Proofs interface {
	// Checkpoint returns the signed note, its tree size and root hash.
	Checkpoint(ctx context.Context) (signed []byte, size int64, root []byte, err error)
	VerifierKey() string
	// Inclusion proves event n in the tree of size (0: the current one).
	Inclusion(ctx context.Context, n, size int64, numberLoc, sizeLoc string) (leafIndex, treeSize int64, leaf []byte, proof [][]byte, err error)
	Consistency(ctx context.Context, from, to int64, loc string) (proof [][]byte, err error)
}

func (h *Handler) proofs() (Proofs, error) {
	if h.cfg.Proofs == nil {
		return nil, fmt.Errorf("%w: proofs are not served", fossil.ErrUnavailable)
	}
	return h.cfg.Proofs, nil
}

// GetCheckpoint returns the signed checkpoint, as GET /checkpoint.
func (h *Handler) GetCheckpoint(ctx context.Context, _ *connect.Request[fossilv1.GetCheckpointRequest]) (*connect.Response[fossilv1.Checkpoint], error) {
	p, err := h.proofs()
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	signed, size, root, err := p.Checkpoint(ctx)
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	return connect.NewResponse(&fossilv1.Checkpoint{SignedNote: signed, TreeSize: uint64(size), RootHash: root, VerifierKey: p.VerifierKey()}), nil
}

// ProveInclusion proves an event, as GET /events/{n}/proof.
func (h *Handler) ProveInclusion(ctx context.Context, req *connect.Request[fossilv1.ProveInclusionRequest]) (*connect.Response[fossilv1.InclusionProof], error) {
	p, err := h.proofs()
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	m := req.Msg
	if m.GetEventNumber() > math.MaxInt64 || m.GetTreeSize() > math.MaxInt64 {
		return nil, h.fail(ctx, fossil.Invalid("event_number", "event_number and tree_size must be at most %d", int64(math.MaxInt64)))
	}
	idx, size, leaf, proof, err := p.Inclusion(ctx, int64(m.GetEventNumber()), int64(m.GetTreeSize()), "event_number", "tree_size")
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	return connect.NewResponse(&fossilv1.InclusionProof{LeafIndex: uint64(idx), TreeSize: uint64(size), LeafHash: leaf, Proof: proof}), nil
}

// ProveConsistency proves that a tree extends another, as
// GET /proofs/consistency.
func (h *Handler) ProveConsistency(ctx context.Context, req *connect.Request[fossilv1.ProveConsistencyRequest]) (*connect.Response[fossilv1.ConsistencyProof], error) {
	p, err := h.proofs()
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	m := req.Msg
	if m.GetFrom() > math.MaxInt64 || m.GetTo() > math.MaxInt64 {
		return nil, h.fail(ctx, fossil.Invalid("to", "from and to must be at most %d", int64(math.MaxInt64)))
	}
	proof, err := p.Consistency(ctx, int64(m.GetFrom()), int64(m.GetTo()), "from")
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	return connect.NewResponse(&fossilv1.ConsistencyProof{From: m.GetFrom(), To: m.GetTo(), Proof: proof}), nil
}
