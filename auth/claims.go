package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fossil-events/fossil/fossil"
)

// Claims are the claims of a Fossil token: the registered claims plus the
// optional fossil grant.
type Claims struct {
	jwt.RegisteredClaims
	// Fossil restricts what the token may do; nil means full access.
	Fossil *Grant `json:"fossil,omitempty"`
}

// UnmarshalJSON decodes the claims strictly: a fossil claim that is null,
// not an object, or has a member of the wrong type is an error, so that a
// malformed grant invalidates the token instead of granting full access.
func (c *Claims) UnmarshalJSON(data []byte) error {
	var raw struct {
		jwt.RegisteredClaims
		Fossil json.RawMessage `json:"fossil"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*c = Claims{RegisteredClaims: raw.RegisteredClaims}
	if raw.Fossil == nil {
		return nil
	}
	if string(raw.Fossil) == "null" {
		return fmt.Errorf("%w: fossil claim is null", errMalformedGrant)
	}
	g := new(Grant)
	if err := json.Unmarshal(raw.Fossil, g); err != nil {
		return fmt.Errorf("%w: %w", errMalformedGrant, err)
	}
	c.Fossil = g
	return nil
}

// Grant is the fossil claim: what a token may do.
type Grant struct {
	// Write holds the stream templates the token may append to.
	Write []string `json:"write,omitempty"`
	// Read holds the stream templates whose events the token may read.
	Read []string `json:"read,omitempty"`
	// Consume holds the consumer names the token may use; "*" means any.
	Consume []string `json:"consume,omitempty"`
	// Admin allows managing schemas, and reading /metrics.
	Admin bool `json:"admin,omitempty"`
	// Metrics allows reading /metrics (consumer-lag series only for the
	// names in Consume).
	Metrics bool `json:"metrics,omitempty"`
}

// grant is a compiled [Grant].
type grant struct {
	admin      bool
	metrics    bool
	consume    map[string]bool
	consumeAll bool
	read       fossil.Templates
	write      fossil.Templates
}

// compileGrant compiles g's templates. A nil g (no fossil claim) gives a nil
// grant, meaning full access.
func compileGrant(g *Grant) (*grant, error) {
	if g == nil {
		return nil, nil
	}
	write, err := fossil.ParseTemplates("fossil.write", g.Write)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformedGrant, err)
	}
	read, err := fossil.ParseTemplates("fossil.read", g.Read)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformedGrant, err)
	}
	cg := &grant{admin: g.Admin, metrics: g.Metrics, read: read, write: write, consume: make(map[string]bool, len(g.Consume))}
	for _, name := range g.Consume {
		switch name {
		case "*":
			cg.consumeAll = true
		case "":
		default:
			cg.consume[name] = true
		}
	}
	return cg, nil
}

// principal is what the context holds for an authenticated request.
type principal struct {
	claims *Claims
	// grant is nil when the token has no fossil claim: full access.
	grant *grant
}

// contextKey is the context key of the *principal.
type contextKey struct{}

func newContext(ctx context.Context, p *principal) context.Context {
	return context.WithValue(ctx, contextKey{}, p)
}

// NewContextWithClaims returns a copy of ctx carrying c, as [Authenticator.Middleware]
// does for a verified token; tests and other entry points use it to act as a
// token holder. The grant's templates are compiled now; if one is invalid the
// grant allows nothing. A nil c returns ctx unchanged. c must not be modified
// afterwards.
func NewContextWithClaims(ctx context.Context, c *Claims) context.Context {
	if c == nil {
		return ctx
	}
	g, err := compileGrant(c.Fossil)
	if err != nil {
		g = &grant{}
	}
	return newContext(ctx, &principal{claims: c, grant: g})
}

// ClaimsFromContext returns the claims of the request's token. ok is false
// when the context has none, as when auth is off.
func ClaimsFromContext(ctx context.Context) (c *Claims, ok bool) {
	p, ok := ctx.Value(contextKey{}).(*principal)
	if !ok {
		return nil, false
	}
	return p.claims, true
}

// grantFrom returns the compiled grant in ctx, or nil for full access (auth
// off, or a token without a fossil claim).
func grantFrom(ctx context.Context) *grant {
	p, ok := ctx.Value(contextKey{}).(*principal)
	if !ok {
		return nil
	}
	return p.grant
}

// CanWrite returns nil when the token in ctx may append to stream: auth is
// off, the token has no fossil claim, or stream matches one of its write
// templates. Otherwise it returns an error wrapping [fossil.ErrForbidden].
func CanWrite(ctx context.Context, stream string) error {
	g := grantFrom(ctx)
	if g == nil || g.write.Match(stream) {
		return nil
	}
	return fmt.Errorf("the token does not grant write access to stream %q: %w", clip(stream), fossil.ErrForbidden)
}

// ReadFilter returns nil when the token in ctx may read every stream (auth
// off, or no fossil claim). Otherwise it returns a func reporting whether a
// stream matches one of the token's read templates; without read templates
// it matches nothing. The func is safe for concurrent use.
func ReadFilter(ctx context.Context) func(stream string) bool {
	g := grantFrom(ctx)
	if g == nil {
		return nil
	}
	return g.read.Match
}

// CanRead returns nil when the token in ctx may read stream (see
// [ReadFilter]) and otherwise an error wrapping [fossil.ErrForbidden].
func CanRead(ctx context.Context, stream string) error {
	g := grantFrom(ctx)
	if g == nil || g.read.Match(stream) {
		return nil
	}
	return fmt.Errorf("the token does not grant read access to stream %q: %w", clip(stream), fossil.ErrForbidden)
}

// CanConsume returns nil when the token in ctx may use the consumer name:
// auth is off, the token has no fossil claim, or its consume list holds
// name or "*". Otherwise it returns an error wrapping [fossil.ErrForbidden].
func CanConsume(ctx context.Context, name string) error {
	g := grantFrom(ctx)
	if g == nil || g.consumeAll || g.consume[name] {
		return nil
	}
	return fmt.Errorf("the token does not grant access to consumer %q: %w", clip(name), fossil.ErrForbidden)
}

// RequireAdmin returns nil when the token in ctx may manage schemas: auth is
// off, the token has no fossil claim, or its claim says "admin": true.
// Otherwise it returns an error wrapping [fossil.ErrForbidden].
func RequireAdmin(ctx context.Context) error {
	g := grantFrom(ctx)
	if g == nil || g.admin {
		return nil
	}
	return fmt.Errorf("the token does not grant admin access: %w", fossil.ErrForbidden)
}

// RequireMetrics returns nil when the token in ctx may read /metrics: auth
// is off, the token has no fossil claim, or its claim says "admin": true or
// "metrics": true. Otherwise it returns an error wrapping
// [fossil.ErrForbidden].
func RequireMetrics(ctx context.Context) error {
	g := grantFrom(ctx)
	if g == nil || g.admin || g.metrics {
		return nil
	}
	return fmt.Errorf("the token does not grant access to metrics (it needs \"admin\": true or \"metrics\": true): %w", fossil.ErrForbidden)
}

// ConsumeFilter returns nil when the token in ctx may use every consumer
// name, and otherwise a func reporting whether it may use one (see
// [CanConsume]), for lists that must leave out the names it may not see.
func ConsumeFilter(ctx context.Context) func(name string) bool {
	g := grantFrom(ctx)
	if g == nil || g.consumeAll {
		return nil
	}
	return func(name string) bool { return g.consume[name] }
}

// ExpiresAt returns the exp claim of the token in ctx, so that a long-lived
// response such as an SSE stream can end when its token expires. ok is false
// when auth is off or the token has no exp.
func ExpiresAt(ctx context.Context) (exp time.Time, ok bool) {
	c, ok := ClaimsFromContext(ctx)
	if !ok || c == nil || c.ExpiresAt == nil {
		return time.Time{}, false
	}
	return c.ExpiresAt.Time, true
}

// clip shortens s for an error message; names are checked for length
// elsewhere, but the check may come after this one.
func clip(s string) string {
	const maxLen = 256
	if len(s) <= maxLen {
		return s
	}
	return s[:maxLen] + "…"
}
