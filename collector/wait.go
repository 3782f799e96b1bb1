package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/store"
)

// WaitSpec is one consumer a writer waits for, from Fossil-Wait-Consumer.
type WaitSpec struct {
	Name    string
	Timeout time.Duration
}

// maxWaitConsumers bounds the consumers one request may wait for.
const maxWaitConsumers = 32

// ParseWaitConsumers parses Fossil-Wait-Consumer values such as
// `<a>; timeout=1000, <b>; timeout=500` (angle brackets optional, timeouts
// in milliseconds). A missing timeout means def; timeouts above max are
// capped to max.
func ParseWaitConsumers(values []string, def, max time.Duration) ([]WaitSpec, error) {
	const loc = "header." + fossil.HeaderWaitConsumer
	var specs []WaitSpec
	seen := map[string]bool{}
	for _, value := range values {
		for _, item := range splitTopLevel(value) {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			name, params, err := splitItem(item)
			if err != nil {
				return nil, fossil.Invalid(loc, "%s", err.Error())
			}
			if err := fossil.ValidateConsumerName(loc, name); err != nil {
				return nil, err
			}
			if strings.ContainsAny(name, ",<>;") {
				return nil, fossil.Invalid(loc, "consumer name %q cannot be waited for: it contains one of , < > ;", name)
			}
			if seen[name] {
				return nil, fossil.Invalid(loc, "consumer %q is listed twice", name)
			}
			seen[name] = true
			spec := WaitSpec{Name: name, Timeout: def}
			for _, p := range params {
				k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
				k = strings.ToLower(strings.TrimSpace(k))
				if !ok || k != "timeout" {
					return nil, fossil.Invalid(loc, "unknown parameter %q; only timeout=<milliseconds> is supported", strings.TrimSpace(p))
				}
				v = strings.Trim(strings.TrimSpace(v), `"`)
				ms, err := strconv.ParseInt(v, 10, 64)
				if errors.Is(err, strconv.ErrRange) && allDigits(v) {
					// Too large for int64: still a number of milliseconds,
					// capped like any other large one below.
					ms, err = math.MaxInt64, nil
				}
				if err != nil || ms < 0 || !allDigits(v) {
					return nil, fossil.Invalid(loc, "timeout must be a non-negative integer of milliseconds, got %q", v)
				}
				if ms > int64(max/time.Millisecond) {
					ms = int64(max / time.Millisecond)
				}
				spec.Timeout = time.Duration(ms) * time.Millisecond
			}
			specs = append(specs, spec)
			if len(specs) > maxWaitConsumers {
				return nil, fossil.Invalid(loc, "at most %d consumers may be waited for", maxWaitConsumers)
			}
		}
	}
	return specs, nil
}

// allDigits reports whether s is a non-empty run of ASCII digits (no sign).
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// splitTopLevel splits on commas outside angle brackets.
func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '<':
			depth++
		case '>':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// splitItem splits `<name>; k=v; …` or `name; k=v`.
func splitItem(item string) (string, []string, error) {
	var name, rest string
	if strings.HasPrefix(item, "<") {
		end := strings.IndexByte(item, '>')
		if end < 0 {
			return "", nil, errUnclosed
		}
		name, rest = item[1:end], strings.TrimSpace(item[end+1:])
		if rest != "" && rest[0] != ';' {
			return "", nil, errAfterName
		}
	} else {
		name, rest, _ = strings.Cut(item, ";")
		name = strings.TrimSpace(name)
		rest = ";" + rest
	}
	var params []string
	for _, p := range strings.Split(strings.TrimPrefix(rest, ";"), ";") {
		if strings.TrimSpace(p) != "" {
			params = append(params, p)
		}
	}
	return name, params, nil
}

type parseError string

func (e parseError) Error() string { return string(e) }

const (
	errUnclosed  = parseError("a consumer name opened with '<' is not closed with '>'")
	errAfterName = parseError("expected ';' after the consumer name")
)

// waitAcks waits until each consumer in specs has acknowledged every event
// in numbers, each for its own timeout counted from now (after the commit).
// It returns the names that timed out, in the order given. It ends early
// with ctx's error when the client goes away.
func (h *Handler) waitAcks(ctx context.Context, numbers []int64, specs []WaitSpec) ([]string, error) {
	start := time.Now()
	payloads := make([]string, 0, len(numbers)*len(specs))
	for _, s := range specs {
		for _, n := range numbers {
			payloads = append(payloads, store.AckPayload(n, s.Name))
		}
	}
	// Subscribe before the first look, so an ack landing in between wakes us.
	sub := h.cfg.Broadcaster.Subscribe(store.ChannelAcks, payloads...)
	defer sub.Close()
	poll := time.NewTicker(h.cfg.AckPollInterval)
	defer poll.Stop()

	pending := make(map[string]time.Time, len(specs))
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		pending[s.Name] = start.Add(s.Timeout)
		names = append(names, s.Name)
	}
	timedOut := map[string]bool{}
	for {
		acked, err := h.cfg.Store.AckedBy(ctx, numbers, names)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			h.logger.WarnContext(ctx, "check acks; retrying", "error", err)
		}
		now := time.Now()
		var next time.Time
		remaining := names[:0]
		for _, name := range names {
			switch {
			case acked[name]:
			case !now.Before(pending[name]):
				timedOut[name] = true
			default:
				remaining = append(remaining, name)
				if next.IsZero() || pending[name].Before(next) {
					next = pending[name]
				}
			}
		}
		names = remaining
		if len(names) == 0 {
			break
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-sub.C():
		case <-poll.C:
		case <-timer.C:
		}
		timer.Stop()
	}
	var out []string
	for _, s := range specs {
		if timedOut[s.Name] {
			out = append(out, s.Name)
		}
	}
	return out, nil
}

// WaitAcks waits as POST /collect does with Fossil-Wait-Consumer, for the
// other front ends of the collector (the protobuf interface): until each
// consumer of specs has acknowledged every event of numbers, each for its
// own timeout counted from now, and returns the names that timed out.
func (h *Handler) WaitAcks(ctx context.Context, numbers []int64, specs []WaitSpec) ([]string, error) {
	if h.cfg.Broadcaster == nil {
		return nil, fmt.Errorf("%w: waiting for consumers is not available", fossil.ErrUnavailable)
	}
	return h.waitAcks(ctx, numbers, specs)
}
