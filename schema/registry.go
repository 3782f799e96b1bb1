package schema

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/fossil-events/fossil/notify"
	"github.com/fossil-events/fossil/store"
)

// DefaultPollInterval is how often a started [Registry] reloads even when
// no notification woke it.
const DefaultPollInterval = 30 * time.Second

// Log keys.
const (
	logKeyError = "error"
	logKeyType  = "type"
)

// Registry keeps the compiled schema of every event type that has one and
// serves the /schemas routes. Validate is safe for concurrent use and does
// no I/O.
//
// Lifecycle: [NewRegistry], set the exported fields, then [Registry.Start]
// and, at shutdown, [Registry.Stop]. Validate works before Start (with no
// schemas) and after Stop (with the last ones loaded).
//
// Lock order: mu, then reloadMu.
type Registry struct {
	// Authorize, when not nil, is called at the start of every schema
	// route with the request's context; a non-nil error (such as one
	// wrapping fossil.ErrForbidden) is answered as a problem and the route
	// does nothing else. nil allows every request. The caller wires the
	// admin grant here.
	Authorize func(ctx context.Context) error

	// PollInterval is the period of the safety reload that runs even when
	// no notification arrives; 0 means [DefaultPollInterval]. Set it before
	// Start.
	PollInterval time.Duration

	store       *store.Store
	broadcaster *notify.Broadcaster // nil: poll only
	logger      *slog.Logger

	// schemas is replaced, never modified: readers load it without locks.
	schemas atomic.Pointer[map[string]*compiled]

	// reloadMu makes reading the store and publishing the result one step,
	// so an older snapshot never overwrites a newer one.
	reloadMu sync.Mutex

	mu     sync.Mutex // guards cancel and done
	cancel context.CancelFunc
	done   chan struct{}
}

// compiled is one type's schema. It is immutable once published.
type compiled struct {
	doc    []byte             // as stored, to skip recompiling an unchanged schema
	schema *jsonschema.Schema // nil when doc does not compile: not enforced
}

// NewRegistry returns a Registry that reads schemas from st and reloads
// when b (which may be nil, for poll-only) signals a change on
// [store.ChannelSchemas]; b must LISTEN on that channel. A nil logger
// discards.
func NewRegistry(st *store.Store, b *notify.Broadcaster, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{store: st, broadcaster: b, logger: logger.With("component", "schema")}
	r.schemas.Store(&map[string]*compiled{})
	return r
}

// Start loads and compiles every schema, then keeps them current in a
// background goroutine until ctx ends or [Registry.Stop] is called. It
// returns the error of the first load (the database is unreachable, say),
// in which case nothing keeps running. Start may be called once.
func (r *Registry) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		return errors.New("schema registry already started")
	}
	// Subscribe before the first load: a change committed during the load
	// then wakes the loop instead of being missed.
	var sub *notify.Subscription
	var wake <-chan struct{}
	if r.broadcaster != nil {
		sub = r.broadcaster.Subscribe(store.ChannelSchemas, "")
		wake = sub.C()
	}
	if err := r.reload(ctx, "", nil); err != nil {
		if sub != nil {
			sub.Close()
		}
		return fmt.Errorf("load schemas: %w", err)
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go r.loop(ctx, sub, wake, r.done)
	return nil
}

// Stop ends the background reloads and waits for them to finish. It is safe
// to call more than once, and without Start.
func (r *Registry) Stop() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// loop reloads on every wake-up (a change anywhere, or a listener
// reconnect) and when the jittered poll timer fires.
func (r *Registry) loop(ctx context.Context, sub *notify.Subscription, wake <-chan struct{}, done chan struct{}) {
	defer close(done)
	if sub != nil {
		defer sub.Close()
	}
	interval := r.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	timer := time.NewTimer(jitter(interval))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-timer.C:
		}
		if err := r.reload(ctx, "", nil); err != nil {
			if ctx.Err() != nil {
				return
			}
			// The previous schemas stay in force; the next wake-up or
			// poll retries.
			r.logger.WarnContext(ctx, "reload schemas failed", logKeyError, err)
		}
		timer.Reset(jitter(interval))
	}
}

// jitter adds 0–10 % to d so that processes do not poll in lockstep.
func jitter(d time.Duration) time.Duration {
	return d + rand.N(d/10+1)
}

// reload reads every schema and publishes a new map. Unchanged documents
// keep their compiled schema, so a reload caused by one change compiles one
// schema; known, when not nil, is a schema this process just compiled for
// typ, used if the stored document is still the same.
func (r *Registry) reload(ctx context.Context, typ string, known *compiled) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	docs, err := r.store.AllSchemas(ctx)
	if err != nil {
		return err
	}
	old := *r.schemas.Load()
	next := make(map[string]*compiled, len(docs))
	for t, doc := range docs {
		if c, ok := old[t]; ok && bytes.Equal(c.doc, doc) {
			next[t] = c
			continue
		}
		if t == typ && known != nil && bytes.Equal(known.doc, doc) {
			next[t] = known
			continue
		}
		sch, err := compile(t, doc)
		if err != nil {
			r.logger.ErrorContext(ctx, "stored schema does not compile; events of its type are not validated until it is replaced",
				logKeyType, t, logKeyError, err)
		}
		next[t] = &compiled{doc: doc, schema: sch}
	}
	r.schemas.Store(&next)
	return nil
}

// afterWrite makes this process see its own change at once. When the
// reload fails it applies the change it knows about (c, or a deletion when
// c is nil); the next wake-up or poll then corrects anything else.
func (r *Registry) afterWrite(ctx context.Context, typ string, c *compiled) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := r.reload(ctx, typ, c)
	if err == nil {
		return
	}
	r.logger.WarnContext(ctx, "reload schemas after a write failed; applying the write locally", logKeyType, typ, logKeyError, err)
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	old := *r.schemas.Load()
	next := make(map[string]*compiled, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if c == nil {
		delete(next, typ)
	} else {
		next[typ] = c
	}
	r.schemas.Store(&next)
}

// location is the URI a type's schema is compiled under. Relative
// references resolve against it; since nothing but the document itself is
// ever loaded, they resolve only to parts of the document.
func location(typ string) string {
	return "fossil:///schemas/" + url.PathEscape(typ)
}

// compile parses and compiles a stored document.
func compile(typ string, doc []byte) (*jsonschema.Schema, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	return compileValue(typ, v)
}

// compileValue compiles a parsed document (as parsed by
// jsonschema.UnmarshalJSON) with a compiler of its own: a compiler is not
// safe for concurrent use, and one bad schema must not affect another.
func compileValue(typ string, v any) (*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(refuseLoader{})
	loc := location(typ)
	if err := c.AddResource(loc, v); err != nil {
		return nil, err
	}
	return c.Compile(loc)
}

// refuseLoader is the compiler's only loader. The draft meta-schemas are
// built into the library and the registered document is added as a
// resource, so any URL that reaches the loader is a reference to a document
// Fossil will not fetch.
type refuseLoader struct{}

func (refuseLoader) Load(string) (any, error) {
	return nil, errors.New("schemas are never fetched: a schema may refer only to itself and to the standard draft meta-schemas")
}
