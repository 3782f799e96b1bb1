package feed

import (
	"context"
	"errors"

	"github.com/fossil-events/fossil/fossil"
)

// Events delivers what [Hub.Serve] delivers, as values rather than SSE
// frames, for the protobuf interface's Subscribe: every stored event after
// p.After whose stream matches, then live ones, in increasing event number
// order, with no gap and no duplicate. It reads up to [Hub.Last] (every
// event up to it is committed) through the store's selective reader and
// waits for the hub's wake-up when caught up. send gets each page; an error
// from it ends the stream and is returned. Events counts towards
// MaxClients and returns [ErrTooManyClients] before sending anything when
// the cap is reached. A cancelled ctx or p.Expires ends it with nil.
func (h *Hub) Events(ctx context.Context, p Params, send func([]*fossil.Event) error) error {
	if n := h.clients.Add(1); h.cfg.MaxClients > 0 && n > int64(h.cfg.MaxClients) {
		h.clients.Add(-1)
		return ErrTooManyClients
	}
	defer h.clients.Add(-1)
	if !p.Expires.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, p.Expires)
		defer cancel()
	}
	match := func(stream string) bool {
		return p.Templates.Match(stream) && (p.Allow == nil || p.Allow(stream))
	}
	reader := h.cfg.Store.NewReader(match)
	cursor := p.After
	for {
		// Take the wake-up channel before looking, so that an advance
		// between the look and the wait is not missed.
		changed := h.wait()
		if known := h.Last(); known > cursor {
			events, scanned, err := reader.Read(ctx, cursor, known, h.cfg.PageSize)
			if err != nil {
				if ctx.Err() != nil {
					return nil //nolint:nilerr // the subscriber went away or its token expired
				}
				return err
			}
			cursor = scanned
			if len(events) > 0 {
				if err := send(events); err != nil {
					return err
				}
			}
			continue
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil
			}
			return ctx.Err()
		case <-changed:
		}
	}
}
