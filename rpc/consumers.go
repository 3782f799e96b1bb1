package rpc

import (
	"context"
	"errors"
	"fmt"
	"math"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/fossil"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
)

// consumerName checks a consumer name and the consume grant.
func consumerName(ctx context.Context, name string) error {
	if err := fossil.ValidateConsumerName("consumer", name); err != nil {
		return err
	}
	return auth.CanConsume(ctx, name)
}

// Commit stores a consumer's offset, as PUT /consumer/{name}/commit.
func (h *Handler) Commit(ctx context.Context, req *connect.Request[fossilv1.CommitRequest]) (*connect.Response[fossilv1.CommitResponse], error) {
	m := req.Msg
	if err := consumerName(ctx, m.GetConsumer()); err != nil {
		return nil, h.fail(ctx, err)
	}
	if m.Offset == nil {
		return nil, h.fail(ctx, fossil.Invalid("offset", "the offset is required"))
	}
	if m.GetOffset() > math.MaxInt64 {
		return nil, h.fail(ctx, fossil.Invalid("offset", "must be at most %d", int64(math.MaxInt64)))
	}
	if err := h.cfg.Store.CommitOffset(ctx, m.GetConsumer(), int64(m.GetOffset()), m.GetRewind()); err != nil {
		var inv *fossil.InvalidError
		if errors.As(err, &inv) {
			inv.Location = "offset" // the store names the HTTP header
		}
		return nil, h.fail(ctx, err)
	}
	return connect.NewResponse(&fossilv1.CommitResponse{}), nil
}

// Ack acknowledges an event for a consumer, as POST /events/{id}/ack.
func (h *Handler) Ack(ctx context.Context, req *connect.Request[fossilv1.AckRequest]) (*connect.Response[fossilv1.AckResponse], error) {
	m := req.Msg
	if m.GetId() == "" {
		return nil, h.fail(ctx, fossil.Invalid("id", "the event id is required"))
	}
	if err := fossil.ValidateText("id", "event id", m.GetId()); err != nil {
		return nil, h.fail(ctx, err)
	}
	if err := fossil.ValidateText("source", "source", m.GetSource()); err != nil {
		return nil, h.fail(ctx, err)
	}
	if err := consumerName(ctx, m.GetConsumer()); err != nil {
		return nil, h.fail(ctx, err)
	}
	// An event outside the token's read grant is unknown to it, as over HTTP.
	if _, err := h.cfg.Store.Ack(ctx, m.GetId(), m.GetSource(), m.GetConsumer(), auth.ReadFilter(ctx)); err != nil {
		return nil, h.fail(ctx, fmt.Errorf("ack %q: %w", m.GetId(), err))
	}
	return connect.NewResponse(&fossilv1.AckResponse{}), nil
}

// GetConsumer returns a consumer's state, as GET /consumer/{name}.
func (h *Handler) GetConsumer(ctx context.Context, req *connect.Request[fossilv1.GetConsumerRequest]) (*connect.Response[fossilv1.Consumer], error) {
	name := req.Msg.GetConsumer()
	if err := consumerName(ctx, name); err != nil {
		return nil, h.fail(ctx, err)
	}
	c, err := h.cfg.Store.GetConsumer(ctx, name)
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	out := &fossilv1.Consumer{Name: c.Name, Offset: uint64(max(c.Offset, 0)), Lag: uint64(max(c.Lag, 0)), Connected: c.Connected}
	if c.CommittedAt != nil {
		out.CommittedAt = timestamppb.New(*c.CommittedAt)
	}
	return connect.NewResponse(out), nil
}
