package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
)

const (
	// MaxTokenBytes is the longest token accepted. Longer tokens are refused
	// before any decoding, so that a huge header costs no more than its read.
	MaxTokenBytes = 8 << 10

	// DefaultLeeway is the clock skew allowed for exp and nbf when
	// [Config.Leeway] is zero.
	DefaultLeeway = 30 * time.Second

	// HealthzPath is the one route that needs no token.
	HealthzPath = "/healthz"

	// QueryParam is the query parameter that carries a token when the
	// request has no Authorization header.
	QueryParam = "access_token"

	// minSecretBytes is the shortest HS256 secret New does not warn about
	// (RFC 7518 section 3.2: a key of the same size as the hash output).
	minSecretBytes = 32

	// minRSABits is the smallest RSA key New accepts.
	minRSABits = 2048
)

// Config configures an [Authenticator]. The zero value turns auth off.
type Config struct {
	// Secrets are the HS256 secrets: the current one first, then previous
	// ones still accepted during a roll-over. Empty entries are ignored.
	Secrets [][]byte
	// PublicKeyFile names a PEM file holding a PKIX public key, a PKCS #1
	// RSA public key or a certificate. An RSA key enables RS256, RS384 and
	// RS512 (at least 2048 bits); an ECDSA key enables ES256, ES384 or ES512
	// to match its curve (P-256, P-384, P-521).
	PublicKeyFile string
	// Leeway is the clock skew allowed when checking exp and nbf. Zero means
	// [DefaultLeeway]; negative is an error.
	Leeway time.Duration
	// Logger receives Debug records naming why a request was refused, and a
	// Warn record from New for a short secret. Nil discards them.
	Logger *slog.Logger
	// Now returns the current time; tests set it. Nil means time.Now.
	Now func() time.Time
}

// Authenticator verifies bearer tokens. It is safe for concurrent use, and
// a nil *Authenticator means auth is off.
type Authenticator struct {
	algs    []string
	ecKey   *ecdsa.PublicKey
	logger  *slog.Logger
	parser  *jwt.Parser
	rsaKey  *rsa.PublicKey
	secrets []jwt.VerificationKey
}

// New builds an Authenticator from cfg. It returns (nil, nil) when cfg holds
// neither a secret nor a public key file, which means auth is off. It returns
// an error for a negative Leeway and for a key file that cannot be read, holds
// no public key, or holds a key of another type, a curve other than P-256,
// P-384 or P-521, or an RSA key shorter than 2048 bits.
func New(cfg Config) (*Authenticator, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a := &Authenticator{logger: logger.With("component", "auth")}
	for i, s := range cfg.Secrets {
		if len(s) == 0 {
			continue
		}
		if len(s) < minSecretBytes {
			a.logger.Warn("jwt secret is shorter than 32 bytes; use a longer random secret", "secret_index", i)
		}
		a.secrets = append(a.secrets, bytes.Clone(s))
	}
	if len(a.secrets) == 0 && cfg.PublicKeyFile == "" {
		return nil, nil
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("auth: leeway %s is negative", cfg.Leeway)
	}
	if len(a.secrets) > 0 {
		a.algs = append(a.algs, jwt.SigningMethodHS256.Alg())
	}
	if cfg.PublicKeyFile != "" {
		key, err := readPublicKey(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth: public key file %s: %w", cfg.PublicKeyFile, err)
		}
		switch key := key.(type) {
		case *rsa.PublicKey:
			if key.N.BitLen() < minRSABits {
				return nil, fmt.Errorf("auth: public key file %s: RSA key has %d bits; at least %d are required", cfg.PublicKeyFile, key.N.BitLen(), minRSABits)
			}
			a.rsaKey = key
			a.algs = append(a.algs, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodRS384.Alg(), jwt.SigningMethodRS512.Alg())
		case *ecdsa.PublicKey:
			var alg string
			switch key.Curve {
			case elliptic.P256():
				alg = jwt.SigningMethodES256.Alg()
			case elliptic.P384():
				alg = jwt.SigningMethodES384.Alg()
			case elliptic.P521():
				alg = jwt.SigningMethodES512.Alg()
			default:
				return nil, fmt.Errorf("auth: public key file %s: unsupported ECDSA curve %s", cfg.PublicKeyFile, key.Curve.Params().Name)
			}
			a.ecKey = key
			a.algs = append(a.algs, alg)
		default:
			return nil, fmt.Errorf("auth: public key file %s: unsupported key type %T; want RSA or ECDSA", cfg.PublicKeyFile, key)
		}
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(a.algs), jwt.WithLeeway(leeway)}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// readPublicKey returns the first public key in the PEM file at path.
func readPublicKey(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM block with a public key or certificate")
		}
		switch block.Type {
		case "PUBLIC KEY":
			return x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			return x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			return cert.PublicKey, nil
		}
	}
}

// Middleware returns next wrapped so that every request except
// [HealthzPath] must carry a valid token; see the package documentation for
// the rules. The verified claims reach next through the request context
// ([ClaimsFromContext]). On a nil receiver (auth off) it returns next
// unchanged.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	if a == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, queryTokens, badQuery := withoutQueryToken(r)
		if r.URL.Path == HealthzPath {
			next.ServeHTTP(w, r)
			return
		}
		token, f := bearerToken(r.Header, queryTokens, badQuery)
		if f != nil {
			a.refuse(w, r, f)
			return
		}
		p, err := a.verify(token)
		if err != nil {
			a.refuse(w, r, &failure{reason: reasonFor(err), tokenGiven: true})
			return
		}
		next.ServeHTTP(w, r.WithContext(newContext(r.Context(), p)))
	})
}

// Reasons a request is refused. They are fixed strings, so that nothing taken
// from the request, least of all the token, reaches a response or a log, and
// so that they can be quoted in WWW-Authenticate as they are.
const (
	reasonAlgorithm   = "token signing algorithm is not accepted"
	reasonAmbiguous   = "more than one token was sent"
	reasonClaims      = "token claims are invalid"
	reasonCritical    = "token has critical header parameters"
	reasonEmpty       = "bearer token is empty"
	reasonExpired     = "token has expired"
	reasonGrant       = "fossil claim is malformed"
	reasonInvalid     = "token is invalid"
	reasonMalformed   = "token is malformed"
	reasonMissing     = "no bearer token"
	reasonNotYetValid = "token is not valid yet"
	reasonScheme      = "authorization scheme is not Bearer"
	reasonSignature   = "token signature is invalid"
	reasonTooLarge    = "token is too large"
)

var (
	errAlgorithm = errors.New(reasonAlgorithm)
	errCritical  = errors.New(reasonCritical)
	errTooLarge  = errors.New(reasonTooLarge)
	// errMalformedGrant marks a fossil claim of the wrong shape or with an
	// invalid template.
	errMalformedGrant = errors.New(reasonGrant)
)

// failure is why a request is refused.
type failure struct {
	reason string
	// tokenGiven tells a bad token (error="invalid_token") from none at all.
	tokenGiven bool
}

// refuse answers 401 and logs why at Debug level.
func (a *Authenticator) refuse(w http.ResponseWriter, r *http.Request, f *failure) {
	a.logger.DebugContext(r.Context(), "request not authenticated", "method", r.Method, "path", r.URL.Path, "reason", f.reason)
	challenge := "Bearer"
	if f.tokenGiven {
		challenge = `Bearer error="invalid_token", error_description="` + f.reason + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	p := problem.FromError(fossil.ErrUnauthenticated)
	p.Detail = f.reason
	problem.Write(w, r, p)
}

// bearerToken picks the token from the Authorization header or, when there
// is none, from the access_token values taken off the query.
func bearerToken(h http.Header, queryTokens []string, badQuery bool) (string, *failure) {
	values := h.Values("Authorization")
	switch {
	case len(values) > 1:
		return "", &failure{reason: reasonAmbiguous, tokenGiven: true}
	case len(values) == 1:
		return headerToken(values[0])
	case badQuery:
		return "", &failure{reason: reasonMalformed, tokenGiven: true}
	case len(queryTokens) > 1:
		return "", &failure{reason: reasonAmbiguous, tokenGiven: true}
	case len(queryTokens) == 0:
		return "", &failure{reason: reasonMissing}
	case queryTokens[0] == "":
		return "", &failure{reason: reasonEmpty}
	case len(queryTokens[0]) > MaxTokenBytes:
		return "", &failure{reason: reasonTooLarge, tokenGiven: true}
	}
	return queryTokens[0], nil
}

// headerToken parses an Authorization header value "Bearer <token>".
func headerToken(v string) (string, *failure) {
	if len(v) > MaxTokenBytes+len("Bearer")+16 {
		// Long enough to be refused whatever it holds; do not scan it.
		return "", &failure{reason: reasonTooLarge, tokenGiven: true}
	}
	scheme, rest := v, ""
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		scheme, rest = v[:i], v[i+1:]
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return "", &failure{reason: reasonScheme}
	}
	token := strings.Trim(rest, " \t")
	switch {
	case token == "":
		return "", &failure{reason: reasonEmpty}
	case len(token) > MaxTokenBytes:
		return "", &failure{reason: reasonTooLarge, tokenGiven: true}
	}
	return token, nil
}

// withoutQueryToken returns r, or a shallow copy of r whose URL and
// RequestURI lack every access_token parameter, with the values removed.
// badQuery reports an access_token value that is not validly escaped.
func withoutQueryToken(r *http.Request) (_ *http.Request, tokens []string, badQuery bool) {
	if r.URL.RawQuery == "" {
		return r, nil, false
	}
	rest, tokens, found, badQuery := splitQuery(r.URL.RawQuery)
	if !found {
		return r, nil, false
	}
	r2 := r.WithContext(r.Context())
	u := *r.URL
	u.RawQuery = rest
	r2.URL = &u
	if path, _, ok := strings.Cut(r.RequestURI, "?"); ok {
		r2.RequestURI = path
		if rest != "" {
			r2.RequestURI = path + "?" + rest
		}
	}
	return r2, tokens, badQuery
}

// splitQuery removes the access_token parameters from a raw query, keeping
// the other parameters exactly as sent.
func splitQuery(raw string) (rest string, tokens []string, found, bad bool) {
	kept := make([]string, 0, strings.Count(raw, "&")+1)
	for raw != "" {
		var seg string
		seg, raw, _ = strings.Cut(raw, "&")
		key, val, _ := strings.Cut(seg, "=")
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
		if key != QueryParam {
			kept = append(kept, seg)
			continue
		}
		found = true
		v, err := url.QueryUnescape(val)
		if err != nil {
			bad = true
			continue
		}
		tokens = append(tokens, v)
	}
	return strings.Join(kept, "&"), tokens, found, bad
}

// verify checks token and compiles its grant.
func (a *Authenticator) verify(token string) (*principal, error) {
	if len(token) > MaxTokenBytes {
		return nil, errTooLarge
	}
	claims := new(Claims)
	t, err := a.parser.ParseWithClaims(token, claims, a.key)
	if err != nil {
		if t != nil && t.Method != nil && !a.accepts(t.Method.Alg()) {
			return nil, fmt.Errorf("%w: %w", errAlgorithm, err)
		}
		return nil, err
	}
	g, err := compileGrant(claims.Fossil)
	if err != nil {
		return nil, err
	}
	return &principal{claims: claims, grant: g}, nil
}

// key is the jwt.Keyfunc. The parser has already refused algorithms outside
// a.algs; key checks again that the method's family matches the key it gets,
// so that no secret ever verifies an RSA or ECDSA token and no public key an
// HMAC one.
func (a *Authenticator) key(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCritical
	}
	if !a.accepts(t.Method.Alg()) {
		return nil, errAlgorithm
	}
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(a.secrets) > 0 {
			return jwt.VerificationKeySet{Keys: a.secrets}, nil
		}
	case *jwt.SigningMethodRSA:
		if a.rsaKey != nil {
			return a.rsaKey, nil
		}
	case *jwt.SigningMethodECDSA:
		if a.ecKey != nil {
			return a.ecKey, nil
		}
	}
	return nil, errAlgorithm
}

func (a *Authenticator) accepts(alg string) bool {
	for _, ok := range a.algs {
		if ok == alg {
			return true
		}
	}
	return false
}

// reasonFor maps a verification error to one of the fixed reasons.
func reasonFor(err error) string {
	switch {
	case errors.Is(err, errTooLarge):
		return reasonTooLarge
	case errors.Is(err, errAlgorithm):
		return reasonAlgorithm
	case errors.Is(err, errCritical):
		return reasonCritical
	case errors.Is(err, errMalformedGrant):
		return reasonGrant
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reasonMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// An alg header that is missing or names no known algorithm.
		return reasonAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return reasonSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return reasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reasonNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return reasonClaims
	}
	return reasonInvalid
}
