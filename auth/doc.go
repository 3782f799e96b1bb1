// Package auth authenticates Fossil's HTTP requests with JSON Web Tokens and
// keeps the verified claims in the request context, where the feature
// packages ask what the token grants.
//
// # Turning it on
//
// Authentication is off unless configured: [New] returns a nil
// [*Authenticator] when [Config] has neither an HS256 secret nor a public key
// file, and a nil Authenticator's [Authenticator.Middleware] passes every
// request through. With auth on, every route the middleware sees except
// /healthz needs a token (cmd serves the web console's static files under
// /ui/ beside it, without a token: they hold no data).
//
// # Where the token comes from
//
// The token is read from the Authorization header with the Bearer scheme
// (the scheme name is case-insensitive). Only when the request has no
// Authorization header is the access_token query parameter used, because a
// browser's EventSource cannot set headers. The access_token parameter is
// always removed from the request's URL and RequestURI before the next
// handler runs, so that handlers never see it; an access log must therefore
// be wrapped by the middleware, not wrap it, or it logs the token. A request that
// sends two Authorization headers or two access_token parameters is refused.
//
// # What is accepted
//
// Only configured algorithms are accepted. HS256 is accepted only when
// [Config.Secrets] holds a secret; RS256, RS384 and RS512 only when
// [Config.PublicKeyFile] holds an RSA key, and ES256, ES384 or ES512 (by the
// key's curve) only when it holds an ECDSA key. Everything else is refused,
// among it "none", tokens that use the RSA public key as an HMAC secret
// (algorithm confusion), and tokens that mark a header parameter as critical
// ("crit"), since none is understood. Secrets are tried in order, so a token
// signed with the previous secret keeps working while a new secret is rolled
// out.
//
// The exp and nbf claims are enforced when present, with [Config.Leeway] of
// clock skew (30 s by default). A token without exp is accepted. Tokens
// longer than [MaxTokenBytes] are refused before any decoding.
//
// # Failures
//
// A refused request gets a 401 application/problem+json response. When the
// request carried no bearer token the response has the header
// `WWW-Authenticate: Bearer`; when it carried one that failed, the header is
// `Bearer error="invalid_token", error_description="…"`. The description and
// the problem detail are drawn from a fixed list of reasons, and the reason is
// logged at Debug level. The token itself is never echoed or logged.
//
// # Grants
//
// The optional claim
//
//	"fossil": {"write": [templates], "read": [templates], "consume": [names], "admin": true}
//
// restricts what the token may do. A token without the fossil claim has full
// access. A token with the claim may do only what it lists: a missing "read"
// means the token may read nothing. write and read hold RFC 6570 stream
// templates (see [fossil.ParseTemplate]), compiled once when the token is
// verified; consume holds consumer names, where "*" means any. A fossil
// claim that is null, is not an object, holds a member of the wrong type or
// an invalid template makes the token invalid (401), never silently broader
// or narrower.
//
// Handlers ask with [CanWrite], [CanRead], [ReadFilter], [CanConsume] and
// [RequireAdmin]. Each returns nil when auth is off or the token has no
// fossil claim, and otherwise an error wrapping [fossil.ErrForbidden] (403)
// for anything outside the grant. [ExpiresAt] gives a long-lived response,
// such as an SSE stream, the moment its token expires.
package auth
