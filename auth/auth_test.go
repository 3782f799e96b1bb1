package auth_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testNow is the clock of every test Authenticator.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

var (
	currentSecret  = []byte("current-secret-that-is-at-least-32-bytes-long")
	previousSecret = []byte("previous-secret-that-is-at-least-32-bytes-long")
	wrongSecret    = []byte("wrong-secret-that-is-also-at-least-32-bytes")

	rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
	ecKey    = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECKey(elliptic.P256()) })
	ec384Key = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECKey(elliptic.P384()) })
)

func mustECKey(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// pemBytes encodes pub as a PKIX "PUBLIC KEY" PEM block.
func pemBytes(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// writeFile writes data to a fresh file and returns its path.
func writeFile(t testing.TB, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Configurations the table tests choose from.
const (
	cfgHS       = "HS256"         // current and previous secret
	cfgHSLeeway = "HS256Leeway5s" // current secret, 5 s of leeway
	cfgRS       = "RS256"         // RSA key file only
	cfgES       = "ES256"         // P-256 key file only
	cfgBoth     = "HS256+RS256"   // current secret and RSA key file
)

func config(t testing.TB, kind string) auth.Config {
	t.Helper()
	cfg := auth.Config{Now: func() time.Time { return testNow }}
	switch kind {
	case cfgHS:
		cfg.Secrets = [][]byte{currentSecret, nil, previousSecret}
	case cfgHSLeeway:
		cfg.Secrets = [][]byte{currentSecret}
		cfg.Leeway = 5 * time.Second
	case cfgRS:
		cfg.PublicKeyFile = writeFile(t, pemBytes(t, &rsaKey().PublicKey))
	case cfgES:
		cfg.PublicKeyFile = writeFile(t, pemBytes(t, &ecKey().PublicKey))
	case cfgBoth:
		cfg.Secrets = [][]byte{currentSecret}
		cfg.PublicKeyFile = writeFile(t, pemBytes(t, &rsaKey().PublicKey))
	default:
		t.Fatalf("unknown config %q", kind)
	}
	return cfg
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// echo is what echoHandler reports about the request it was handed.
type echo struct {
	ExpiresAt  *time.Time `json:"expires_at"`
	HasClaims  bool       `json:"has_claims"`
	Path       string     `json:"path"`
	RawQuery   string     `json:"raw_query"`
	ReadAll    bool       `json:"read_all"`
	Readable   []string   `json:"readable"`
	RequestURI string     `json:"request_uri"`
	Subject    string     `json:"subject"`
}

// echoHandler runs the check named by ?op= on ?arg= and answers 403 when it
// fails, and otherwise reports the request and what the grant allows; the
// streams given as ?stream= are passed through the read filter.
func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		q := r.URL.Query()
		var err error
		switch q.Get("op") {
		case "write":
			err = auth.CanWrite(ctx, q.Get("arg"))
		case "read":
			err = auth.CanRead(ctx, q.Get("arg"))
		case "consume":
			err = auth.CanConsume(ctx, q.Get("arg"))
		case "admin":
			err = auth.RequireAdmin(ctx)
		}
		if err != nil {
			problem.Write(w, r, problem.FromError(err))
			return
		}
		body := echo{Path: r.URL.Path, RawQuery: r.URL.RawQuery, RequestURI: r.RequestURI, Readable: []string{}}
		if c, ok := auth.ClaimsFromContext(ctx); ok {
			body.HasClaims = true
			body.Subject = c.Subject
		}
		if exp, ok := auth.ExpiresAt(ctx); ok {
			body.ExpiresAt = &exp
		}
		if f := auth.ReadFilter(ctx); f == nil {
			body.ReadAll = true
		} else {
			for _, s := range q["stream"] {
				if f(s) {
					body.Readable = append(body.Readable, s)
				}
			}
		}
		problem.WriteJSON(w, http.StatusOK, body)
	})
}

type testBundle struct {
	logs *syncBuffer
	srv  *httptest.Server
}

// setup starts a server running echoHandler behind an Authenticator built
// from cfg. Its Debug log goes to bundle.logs, or to logs when given.
func setup(t *testing.T, cfg auth.Config, logs *syncBuffer) *testBundle {
	t.Helper()
	if logs == nil {
		logs = &syncBuffer{}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a == nil {
		t.Fatal("New returned nil: auth is off")
	}
	srv := httptest.NewServer(a.Middleware(echoHandler()))
	t.Cleanup(srv.Close)
	return &testBundle{logs: logs, srv: srv}
}

// response is a finished HTTP exchange.
type response struct {
	body   string
	header http.Header
	status int
}

// get sends GET target with the given Authorization header values.
func (b *testBundle) get(t *testing.T, target string, authorization ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range authorization {
		req.Header.Add("Authorization", v)
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{body: string(body), header: resp.Header, status: resp.StatusCode}
}

// claims returns valid claims: issued now, expiring in an hour.
func claims(g *auth.Grant) *auth.Claims {
	return &auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "alice",
			IssuedAt:  jwt.NewNumericDate(testNow),
			ExpiresAt: jwt.NewNumericDate(testNow.Add(time.Hour)),
		},
		Fossil: g,
	}
}

func sign(t testing.TB, method jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signRaw signs a token whose header and payload are given as JSON text, so
// that tests can send claims no Go type would produce.
func signRaw(t testing.TB, method jwt.SigningMethod, key any, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := method.Sign(signing, key)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

const hs256Header = `{"alg":"HS256","typ":"JWT"}`

// challenge is the WWW-Authenticate value for a refused token.
func challenge(reason string) string {
	return `Bearer error="invalid_token", error_description="` + reason + `"`
}

// authCase is one request against the middleware.
type authCase struct {
	name string
	cfg  string
	// target is the request path and query; "/" when empty. The token, when
	// it travels in the query, is already part of it.
	target        string
	authorization []string
	// token is what must never be echoed or logged.
	token string

	wantStatus    int
	wantChallenge string // WWW-Authenticate of a 401
	wantReason    string // the refusal reason in the problem detail
	wantRawQuery  string // what the handler sees of the query on a 200
}

func authCases(t *testing.T) []authCase {
	t.Helper()
	valid := sign(t, jwt.SigningMethodHS256, currentSecret, claims(nil))
	bearer := func(tok string) []string { return []string{"Bearer " + tok} }
	at := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(testNow.Add(d)) }
	withTimes := func(exp, nbf *jwt.NumericDate) *auth.Claims {
		c := claims(nil)
		c.ExpiresAt, c.NotBefore = exp, nbf
		return c
	}
	rsaPEM := pemBytes(t, &rsaKey().PublicKey)
	big := claims(nil)
	big.Subject = strings.Repeat("s", auth.MaxTokenBytes)
	tooLarge := sign(t, jwt.SigningMethodHS256, currentSecret, big)
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))
	hs512 := sign(t, jwt.SigningMethodHS512, currentSecret, claims(nil))
	rs256 := sign(t, jwt.SigningMethodRS256, rsaKey(), claims(nil))
	rs512 := sign(t, jwt.SigningMethodRS512, rsaKey(), claims(nil))
	es256 := sign(t, jwt.SigningMethodES256, ecKey(), claims(nil))
	es384 := sign(t, jwt.SigningMethodES384, ec384Key(), claims(nil))
	confused := sign(t, jwt.SigningMethodHS256, rsaPEM, claims(nil))
	raw := func(payload string) string {
		return signRaw(t, jwt.SigningMethodHS256, currentSecret, hs256Header, payload)
	}

	const (
		reasonAlgorithm   = "token signing algorithm is not accepted"
		reasonAmbiguous   = "more than one token was sent"
		reasonCritical    = "token has critical header parameters"
		reasonEmpty       = "bearer token is empty"
		reasonExpired     = "token has expired"
		reasonGrant       = "fossil claim is malformed"
		reasonMalformed   = "token is malformed"
		reasonMissing     = "no bearer token"
		reasonNotYetValid = "token is not valid yet"
		reasonScheme      = "authorization scheme is not Bearer"
		reasonSignature   = "token signature is invalid"
		reasonTooLarge    = "token is too large"
	)
	ok := http.StatusOK
	no := http.StatusUnauthorized
	return []authCase{
		{name: "MissingToken", cfg: cfgHS, wantStatus: no, wantChallenge: "Bearer", wantReason: reasonMissing},
		{name: "WrongSchemeBasic", cfg: cfgHS, authorization: []string{"Basic YWxpY2U6c2VjcmV0"}, token: "YWxpY2U6c2VjcmV0", wantStatus: no, wantChallenge: "Bearer", wantReason: reasonScheme},
		{name: "WrongSchemeWithValidToken", cfg: cfgHS, authorization: []string{"Token " + valid}, token: valid, wantStatus: no, wantChallenge: "Bearer", wantReason: reasonScheme},
		{name: "EmptyBearer", cfg: cfgHS, authorization: []string{"Bearer "}, wantStatus: no, wantChallenge: "Bearer", wantReason: reasonEmpty},
		{name: "BearerWithoutSpace", cfg: cfgHS, authorization: []string{"Bearer"}, wantStatus: no, wantChallenge: "Bearer", wantReason: reasonEmpty},
		{name: "LowercaseBearer", cfg: cfgHS, authorization: []string{"bearer " + valid}, token: valid, wantStatus: ok},
		{name: "UppercaseBearerExtraSpaces", cfg: cfgHS, authorization: []string{"BEARER   " + valid}, token: valid, wantStatus: ok},
		{name: "TwoAuthorizationHeaders", cfg: cfgHS, authorization: []string{"Bearer " + valid, "Bearer " + valid}, token: valid, wantStatus: no, wantChallenge: challenge(reasonAmbiguous), wantReason: reasonAmbiguous},
		{name: "GarbageToken", cfg: cfgHS, authorization: bearer("not-a-jwt-at-all"), token: "not-a-jwt-at-all", wantStatus: no, wantChallenge: challenge(reasonMalformed), wantReason: reasonMalformed},
		{name: "CurrentSecret", cfg: cfgHS, authorization: bearer(valid), token: valid, wantStatus: ok},
		{name: "PreviousSecretAccepted", cfg: cfgHS, authorization: bearer(sign(t, jwt.SigningMethodHS256, previousSecret, claims(nil))), wantStatus: ok},
		{name: "WrongSecret", cfg: cfgHS, authorization: bearer(sign(t, jwt.SigningMethodHS256, wrongSecret, claims(nil))), wantStatus: no, wantChallenge: challenge(reasonSignature), wantReason: reasonSignature},
		{name: "TamperedPayload", cfg: cfgHS, authorization: bearer(tamper(t, valid)), wantStatus: no, wantChallenge: challenge(reasonSignature), wantReason: reasonSignature},
		{name: "Expired", cfg: cfgHS, authorization: bearer(sign(t, jwt.SigningMethodHS256, currentSecret, withTimes(at(-time.Hour), nil))), wantStatus: no, wantChallenge: challenge(reasonExpired), wantReason: reasonExpired},
		{name: "NotYetValid", cfg: cfgHS, authorization: bearer(sign(t, jwt.SigningMethodHS256, currentSecret, withTimes(at(2*time.Hour), at(time.Hour)))), wantStatus: no, wantChallenge: challenge(reasonNotYetValid), wantReason: reasonNotYetValid},
		{name: "ExpiredWithinLeeway", cfg: cfgHS, authorization: bearer(sign(t, jwt.SigningMethodHS256, currentSecret, withTimes(at(-10*time.Second), nil))), wantStatus: ok},
		{name: "NotBeforeWithinLeeway", cfg: cfgHS, authorization: bearer(sign(t, jwt.SigningMethodHS256, currentSecret, withTimes(at(time.Hour), at(10*time.Second)))), wantStatus: ok},
		{name: "ExpiredBeyondConfiguredLeeway", cfg: cfgHSLeeway, authorization: bearer(sign(t, jwt.SigningMethodHS256, currentSecret, withTimes(at(-10*time.Second), nil))), wantStatus: no, wantChallenge: challenge(reasonExpired), wantReason: reasonExpired},
		{name: "NoExpiry", cfg: cfgHS, authorization: bearer(sign(t, jwt.SigningMethodHS256, currentSecret, withTimes(nil, nil))), wantStatus: ok},
		{name: "AlgNone", cfg: cfgHS, authorization: bearer(none), token: none, wantStatus: no, wantChallenge: challenge(reasonAlgorithm), wantReason: reasonAlgorithm},
		{name: "AlgNoneWithKeyFile", cfg: cfgRS, authorization: bearer(none), token: none, wantStatus: no, wantChallenge: challenge(reasonAlgorithm), wantReason: reasonAlgorithm},
		{name: "AlgorithmConfusion", cfg: cfgRS, authorization: bearer(confused), token: confused, wantStatus: no, wantChallenge: challenge(reasonAlgorithm), wantReason: reasonAlgorithm},
		{name: "AlgorithmConfusionWithSecretsToo", cfg: cfgBoth, authorization: bearer(confused), token: confused, wantStatus: no, wantChallenge: challenge(reasonSignature), wantReason: reasonSignature},
		{name: "UnlistedAlgorithmHS512", cfg: cfgHS, authorization: bearer(hs512), token: hs512, wantStatus: no, wantChallenge: challenge(reasonAlgorithm), wantReason: reasonAlgorithm},
		{name: "UnknownAlgorithm", cfg: cfgHS, authorization: bearer(signRaw(t, jwt.SigningMethodHS256, currentSecret, `{"alg":"HS999"}`, `{}`)), wantStatus: no, wantChallenge: challenge(reasonAlgorithm), wantReason: reasonAlgorithm},
		{name: "RS256WithoutKeyFile", cfg: cfgHS, authorization: bearer(rs256), token: rs256, wantStatus: no, wantChallenge: challenge(reasonAlgorithm), wantReason: reasonAlgorithm},
		{name: "RS256", cfg: cfgRS, authorization: bearer(rs256), token: rs256, wantStatus: ok},
		{name: "RS512", cfg: cfgRS, authorization: bearer(rs512), token: rs512, wantStatus: ok},
		{name: "RS256AndHS256", cfg: cfgBoth, authorization: bearer(rs256), token: rs256, wantStatus: ok},
		{name: "HS256AndRS256", cfg: cfgBoth, authorization: bearer(valid), token: valid, wantStatus: ok},
		{name: "ES256", cfg: cfgES, authorization: bearer(es256), token: es256, wantStatus: ok},
		{name: "ES384WithP256Key", cfg: cfgES, authorization: bearer(es384), token: es384, wantStatus: no, wantChallenge: challenge(reasonAlgorithm), wantReason: reasonAlgorithm},
		{name: "ES256WithRSAKey", cfg: cfgRS, authorization: bearer(es256), token: es256, wantStatus: no, wantChallenge: challenge(reasonAlgorithm), wantReason: reasonAlgorithm},
		{name: "CriticalHeader", cfg: cfgHS, authorization: bearer(signRaw(t, jwt.SigningMethodHS256, currentSecret, `{"alg":"HS256","crit":["exp"]}`, `{}`)), wantStatus: no, wantChallenge: challenge(reasonCritical), wantReason: reasonCritical},
		{name: "AccessTokenQuery", cfg: cfgHS, target: "/events?from=1&access_token=" + valid + "&x=%2F", token: valid, wantStatus: ok, wantRawQuery: "from=1&x=%2F"},
		{name: "AccessTokenQueryEscapedKey", cfg: cfgHS, target: "/events?access%5Ftoken=" + valid, token: valid, wantStatus: ok, wantRawQuery: ""},
		{name: "AccessTokenQueryExpired", cfg: cfgHS, target: "/events?access_token=" + sign(t, jwt.SigningMethodHS256, currentSecret, withTimes(at(-time.Hour), nil)), wantStatus: no, wantChallenge: challenge(reasonExpired), wantReason: reasonExpired},
		{name: "AccessTokenQueryEmpty", cfg: cfgHS, target: "/events?access_token=", wantStatus: no, wantChallenge: "Bearer", wantReason: reasonEmpty},
		{name: "AccessTokenQueryTwice", cfg: cfgHS, target: "/events?access_token=" + valid + "&access_token=" + valid, token: valid, wantStatus: no, wantChallenge: challenge(reasonAmbiguous), wantReason: reasonAmbiguous},
		{name: "AccessTokenQueryBadEscape", cfg: cfgHS, target: "/events?access_token=" + valid + "%zz", token: valid, wantStatus: no, wantChallenge: challenge(reasonMalformed), wantReason: reasonMalformed},
		{name: "AccessTokenIgnoredWithAuthorizationHeader", cfg: cfgHS, target: "/events?access_token=" + valid, authorization: []string{"Basic YWxpY2U6c2VjcmV0"}, token: valid, wantStatus: no, wantChallenge: "Bearer", wantReason: reasonScheme},
		{name: "OversizedToken", cfg: cfgHS, authorization: bearer(tooLarge), token: tooLarge, wantStatus: no, wantChallenge: challenge(reasonTooLarge), wantReason: reasonTooLarge},
		{name: "OversizedAccessToken", cfg: cfgHS, target: "/events?access_token=" + tooLarge, token: tooLarge, wantStatus: no, wantChallenge: challenge(reasonTooLarge), wantReason: reasonTooLarge},
		{name: "HealthzOpen", cfg: cfgHS, target: "/healthz", wantStatus: ok},
		{name: "HealthzStripsAccessToken", cfg: cfgHS, target: "/healthz?access_token=" + valid + "&v=1", token: valid, wantStatus: ok, wantRawQuery: "v=1"},
		{name: "HealthzSubpathNeedsToken", cfg: cfgHS, target: "/healthz/x", wantStatus: no, wantChallenge: "Bearer", wantReason: reasonMissing},
		{name: "ExpNotANumber", cfg: cfgHS, authorization: bearer(raw(`{"exp":"tomorrow"}`)), wantStatus: no, wantChallenge: challenge(reasonMalformed), wantReason: reasonMalformed},
		{name: "PayloadNotAnObject", cfg: cfgHS, authorization: bearer(raw(`["fossil"]`)), wantStatus: no, wantChallenge: challenge(reasonMalformed), wantReason: reasonMalformed},
		{name: "GrantWriteNotAList", cfg: cfgHS, authorization: bearer(raw(`{"fossil":{"write":"orders/1"}}`)), wantStatus: no, wantChallenge: challenge(reasonGrant), wantReason: reasonGrant},
		{name: "GrantWriteNotStrings", cfg: cfgHS, authorization: bearer(raw(`{"fossil":{"write":[1]}}`)), wantStatus: no, wantChallenge: challenge(reasonGrant), wantReason: reasonGrant},
		{name: "GrantInvalidTemplate", cfg: cfgHS, authorization: bearer(raw(`{"fossil":{"read":["orders/{id"]}}`)), wantStatus: no, wantChallenge: challenge(reasonGrant), wantReason: reasonGrant},
		{name: "GrantEmptyTemplate", cfg: cfgHS, authorization: bearer(raw(`{"fossil":{"write":[""]}}`)), wantStatus: no, wantChallenge: challenge(reasonGrant), wantReason: reasonGrant},
		{name: "GrantNull", cfg: cfgHS, authorization: bearer(raw(`{"fossil":null}`)), wantStatus: no, wantChallenge: challenge(reasonGrant), wantReason: reasonGrant},
		{name: "GrantNotAnObject", cfg: cfgHS, authorization: bearer(raw(`{"fossil":["admin"]}`)), wantStatus: no, wantChallenge: challenge(reasonGrant), wantReason: reasonGrant},
		{name: "GrantAdminNotABool", cfg: cfgHS, authorization: bearer(raw(`{"fossil":{"admin":"true"}}`)), wantStatus: no, wantChallenge: challenge(reasonGrant), wantReason: reasonGrant},
		{name: "GrantEmptyObject", cfg: cfgHS, authorization: bearer(raw(`{"fossil":{}}`)), wantStatus: ok},
	}
}

// tamper changes the subject in a token's payload and keeps the signature.
func tamper(t testing.TB, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payload = bytes.Replace(payload, []byte(`"alice"`), []byte(`"admin"`), 1)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// tokenSecrets returns the strings of tc that must appear in no response and
// no log: the token and each of its long segments.
func tokenSecrets(tc authCase) []string {
	var out []string
	toks := []string{tc.token}
	for _, v := range tc.authorization {
		if _, tok, ok := strings.Cut(v, " "); ok {
			toks = append(toks, strings.TrimSpace(tok))
		}
	}
	if _, q, ok := strings.Cut(tc.target, "access_token="); ok {
		tok, _, _ := strings.Cut(q, "&")
		toks = append(toks, tok)
	}
	for _, tok := range toks {
		if len(tok) < 8 {
			continue
		}
		out = append(out, tok)
		for _, seg := range strings.Split(tok, ".") {
			if len(seg) >= 16 {
				out = append(out, seg)
			}
		}
	}
	return out
}

func (tc authCase) run(t *testing.T, b *testBundle) {
	t.Helper()
	target := tc.target
	if target == "" {
		target = "/"
	}
	resp := b.get(t, target, tc.authorization...)
	if resp.status != tc.wantStatus {
		t.Fatalf("status = %d, want %d; body %s", resp.status, tc.wantStatus, resp.body)
	}
	for _, s := range tokenSecrets(tc) {
		if strings.Contains(resp.body, s) {
			t.Errorf("response body contains the token: %s", resp.body)
		}
		for name, vs := range resp.header {
			for _, v := range vs {
				if strings.Contains(v, s) {
					t.Errorf("response header %s contains the token", name)
				}
			}
		}
	}
	if tc.wantStatus == http.StatusOK {
		var got echo
		if err := json.Unmarshal([]byte(resp.body), &got); err != nil {
			t.Fatalf("decode echo %q: %v", resp.body, err)
		}
		if got.RawQuery != tc.wantRawQuery {
			t.Errorf("handler saw raw query %q, want %q", got.RawQuery, tc.wantRawQuery)
		}
		if strings.Contains(got.RequestURI, "access_token") || strings.Contains(got.RequestURI, "access%5Ftoken") {
			t.Errorf("handler saw RequestURI %q with the token parameter", got.RequestURI)
		}
		path, _, _ := strings.Cut(target, "?")
		wantURI := path
		if tc.wantRawQuery != "" {
			wantURI += "?" + tc.wantRawQuery
		}
		if got.RequestURI != wantURI {
			t.Errorf("handler saw RequestURI %q, want %q", got.RequestURI, wantURI)
		}
		if wantClaims := path != auth.HealthzPath; got.HasClaims != wantClaims {
			t.Errorf("handler has claims = %v, want %v", got.HasClaims, wantClaims)
		}
		return
	}
	if got := resp.header.Get("WWW-Authenticate"); got != tc.wantChallenge {
		t.Errorf("WWW-Authenticate = %q, want %q", got, tc.wantChallenge)
	}
	if got := resp.header.Get("Content-Type"); got != problem.ContentType {
		t.Errorf("Content-Type = %q, want %q", got, problem.ContentType)
	}
	var p problem.Problem
	if err := json.Unmarshal([]byte(resp.body), &p); err != nil {
		t.Fatalf("decode problem %q: %v", resp.body, err)
	}
	path, _, _ := strings.Cut(target, "?")
	want := problem.Problem{
		Type:     problem.TypeURI("unauthenticated"),
		Title:    "Authentication required",
		Status:   http.StatusUnauthorized,
		Detail:   tc.wantReason,
		Instance: path,
	}
	if p.Type != want.Type || p.Title != want.Title || p.Status != want.Status || p.Detail != want.Detail || p.Instance != want.Instance {
		t.Errorf("problem = %+v, want %+v", p, want)
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	for _, tc := range authCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, config(t, tc.cfg), nil)
			tc.run(t, b)
			if tc.wantStatus == http.StatusUnauthorized {
				if logs := b.logs.String(); !strings.Contains(logs, `reason="`+tc.wantReason+`"`) {
					t.Errorf("log does not name the reason %q:\n%s", tc.wantReason, logs)
				}
			}
		})
	}
}

// TestMiddlewareNeverLogsToken sends every case through servers that share
// one Debug logger and checks that the log holds no token.
func TestMiddlewareNeverLogsToken(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	cases := authCases(t)
	bundles := map[string]*testBundle{}
	for _, tc := range cases {
		b, ok := bundles[tc.cfg]
		if !ok {
			b = setup(t, config(t, tc.cfg), logs)
			bundles[tc.cfg] = b
		}
		tc.run(t, b)
	}
	out := logs.String()
	if !strings.Contains(out, "request not authenticated") {
		t.Fatalf("no refusal was logged:\n%s", out)
	}
	for _, tc := range cases {
		for _, s := range tokenSecrets(tc) {
			if strings.Contains(out, s) {
				t.Errorf("%s: log contains the token:\n%s", tc.name, out)
			}
		}
	}
	if strings.Contains(out, "access_token") {
		t.Errorf("log mentions access_token:\n%s", out)
	}
}

// TestMiddlewareRefusesHugeHeader sends a 1 MiB Authorization header. The
// server may refuse it itself (431) or hand it to the middleware (401).
func TestMiddlewareRefusesHugeHeader(t *testing.T) {
	t.Parallel()
	b := setup(t, config(t, cfgHS), nil)
	dots := strings.Repeat(".", 1<<20)
	for _, value := range []string{"Bearer " + dots, "Bearer " + dots[:auth.MaxTokenBytes+1]} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.srv.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", value)
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d-byte header: status %d", len(value), resp.StatusCode)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			if got, want := resp.Header.Get("WWW-Authenticate"), challenge("token is too large"); got != want {
				t.Errorf("WWW-Authenticate = %q, want %q", got, want)
			}
		case http.StatusRequestHeaderFieldsTooLarge:
		default:
			t.Errorf("status = %d, want 401 or 431", resp.StatusCode)
		}
		if bytes.Contains(body, []byte("....")) {
			t.Errorf("body echoes the token: %.200s", body)
		}
	}
}

func TestMiddlewareGrants(t *testing.T) {
	t.Parallel()
	b := setup(t, config(t, cfgHS), nil)
	token := func(g *auth.Grant) string { return sign(t, jwt.SigningMethodHS256, currentSecret, claims(g)) }
	full := token(nil)
	orders := token(&auth.Grant{Write: []string{"orders/{id}"}, Read: []string{"orders/{id}"}})
	wildcard := token(&auth.Grant{Consume: []string{"*"}})
	billing := token(&auth.Grant{Consume: []string{"billing", "audit"}})
	admin := token(&auth.Grant{Admin: true})
	empty := token(&auth.Grant{})
	readTree := token(&auth.Grant{Read: []string{"orders/{+rest}", "users/1"}})

	ok, forbidden := http.StatusOK, http.StatusForbidden
	tests := []struct {
		name  string
		token string
		query string

		wantStatus   int
		wantReadAll  bool
		wantReadable []string
	}{
		{name: "NoFossilClaimWrites", token: full, query: "op=write&arg=anything/at/all", wantStatus: ok, wantReadAll: true},
		{name: "NoFossilClaimConsumes", token: full, query: "op=consume&arg=billing", wantStatus: ok, wantReadAll: true},
		{name: "NoFossilClaimIsAdmin", token: full, query: "op=admin", wantStatus: ok, wantReadAll: true},
		{name: "WriteAllowed", token: orders, query: "op=write&arg=orders/1", wantStatus: ok, wantReadable: []string{}},
		{name: "WriteRefusedOtherStream", token: orders, query: "op=write&arg=users/1", wantStatus: forbidden},
		{name: "WriteRefusedDeeperStream", token: orders, query: "op=write&arg=orders/1/x", wantStatus: forbidden},
		{name: "WriteRefusedEmptyVariable", token: orders, query: "op=write&arg=orders/", wantStatus: forbidden},
		{name: "ReadAllowed", token: orders, query: "op=read&arg=orders/1", wantStatus: ok, wantReadable: []string{}},
		{name: "ReadRefused", token: orders, query: "op=read&arg=users/1", wantStatus: forbidden},
		{name: "ReadFilterTemplates", token: orders, query: "stream=orders/1&stream=orders/1/x&stream=users/1&stream=orders/2", wantStatus: ok, wantReadable: []string{"orders/1", "orders/2"}},
		{name: "ReadFilterReservedExpansion", token: readTree, query: "stream=orders/1/x&stream=users/1&stream=users/2&stream=orders", wantStatus: ok, wantReadable: []string{"orders/1/x", "users/1"}},
		{name: "ReadFilterWithoutReadReadsNothing", token: admin, query: "stream=orders/1&stream=users/1", wantStatus: ok, wantReadable: []string{}},
		{name: "ReadWithoutReadRefused", token: empty, query: "op=read&arg=orders/1", wantStatus: forbidden},
		{name: "WriteWithoutWriteRefused", token: admin, query: "op=write&arg=orders/1", wantStatus: forbidden},
		{name: "ConsumeWildcard", token: wildcard, query: "op=consume&arg=anyone", wantStatus: ok, wantReadable: []string{}},
		{name: "ConsumeListed", token: billing, query: "op=consume&arg=billing", wantStatus: ok, wantReadable: []string{}},
		{name: "ConsumeNotListed", token: billing, query: "op=consume&arg=shipping", wantStatus: forbidden},
		{name: "ConsumeWithoutConsumeRefused", token: orders, query: "op=consume&arg=billing", wantStatus: forbidden},
		{name: "AdminAllowed", token: admin, query: "op=admin", wantStatus: ok, wantReadable: []string{}},
		{name: "AdminRefused", token: orders, query: "op=admin", wantStatus: forbidden},
		{name: "AdminRefusedEmptyGrant", token: empty, query: "op=admin", wantStatus: forbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Both ways of sending the token must give the same answer.
			for _, viaQuery := range []bool{false, true} {
				var resp response
				if viaQuery {
					resp = b.get(t, "/?"+tt.query+"&access_token="+tt.token)
				} else {
					resp = b.get(t, "/?"+tt.query, "Bearer "+tt.token)
				}
				if resp.status != tt.wantStatus {
					t.Fatalf("via query %v: status = %d, want %d; body %s", viaQuery, resp.status, tt.wantStatus, resp.body)
				}
				if strings.Contains(resp.body, tt.token) {
					t.Errorf("response body contains the token: %s", resp.body)
				}
				if tt.wantStatus == forbidden {
					if got, want := resp.header.Get("WWW-Authenticate"), `Bearer error="insufficient_scope"`; got != want {
						t.Errorf("WWW-Authenticate = %q, want %q", got, want)
					}
					var p problem.Problem
					if err := json.Unmarshal([]byte(resp.body), &p); err != nil {
						t.Fatalf("decode problem %q: %v", resp.body, err)
					}
					if p.Status != forbidden || p.Type != problem.TypeURI("forbidden") {
						t.Errorf("problem = %+v, want a 403 forbidden", p)
					}
					continue
				}
				var got echo
				if err := json.Unmarshal([]byte(resp.body), &got); err != nil {
					t.Fatalf("decode echo %q: %v", resp.body, err)
				}
				if got.ReadAll != tt.wantReadAll {
					t.Errorf("read all = %v, want %v", got.ReadAll, tt.wantReadAll)
				}
				if !tt.wantReadAll && !slices.Equal(got.Readable, tt.wantReadable) {
					t.Errorf("readable = %q, want %q", got.Readable, tt.wantReadable)
				}
				if got.Subject != "alice" {
					t.Errorf("subject = %q, want alice", got.Subject)
				}
				if want := testNow.Add(time.Hour); got.ExpiresAt == nil || !got.ExpiresAt.Equal(want) {
					t.Errorf("expires at = %v, want %v", got.ExpiresAt, want)
				}
			}
		})
	}
}

// TestMiddlewareNil checks that a nil Authenticator (auth off) lets every
// request through with full access.
func TestMiddlewareNil(t *testing.T) {
	t.Parallel()
	a, err := auth.New(auth.Config{Secrets: [][]byte{nil, {}}})
	if err != nil || a != nil {
		t.Fatalf("New with only empty secrets = %v, %v; want nil, nil", a, err)
	}
	srv := httptest.NewServer(a.Middleware(echoHandler()))
	t.Cleanup(srv.Close)
	b := &testBundle{logs: &syncBuffer{}, srv: srv}
	for _, target := range []string{"/", "/?op=write&arg=x", "/?op=consume&arg=x", "/?op=admin", "/?op=read&arg=x"} {
		resp := b.get(t, target)
		if resp.status != http.StatusOK {
			t.Fatalf("GET %s: status = %d, want 200; body %s", target, resp.status, resp.body)
		}
		var got echo
		if err := json.Unmarshal([]byte(resp.body), &got); err != nil {
			t.Fatal(err)
		}
		if got.HasClaims || !got.ReadAll {
			t.Errorf("GET %s: echo = %+v, want no claims and read-all", target, got)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(ecKey())
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey().PublicKey)})
	p384 := pemBytes(t, &ec384Key().PublicKey)
	tests := []struct {
		name    string
		cfg     auth.Config
		keyPEM  []byte // written to a file named by cfg.PublicKeyFile
		wantNil bool
		wantErr string
	}{
		{name: "ZeroConfigIsOff", wantNil: true},
		{name: "EmptySecretsAreOff", cfg: auth.Config{Secrets: [][]byte{nil, []byte("")}}, wantNil: true},
		{name: "Secret", cfg: auth.Config{Secrets: [][]byte{currentSecret}}},
		{name: "NegativeLeeway", cfg: auth.Config{Secrets: [][]byte{currentSecret}, Leeway: -time.Second}, wantErr: "negative"},
		{name: "MissingKeyFile", cfg: auth.Config{PublicKeyFile: filepath.Join(t.TempDir(), "nope.pem")}, wantErr: "no such file"},
		{name: "NotPEM", keyPEM: []byte("hello"), wantErr: "no PEM block"},
		{name: "PrivateKeyOnly", keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), wantErr: "no PEM block"},
		{name: "Ed25519Key", keyPEM: pemBytes(t, ed), wantErr: "unsupported key type"},
		{name: "SmallRSAKey", keyPEM: pemBytes(t, &small.PublicKey), wantErr: "at least 2048"},
		{name: "PKCS1RSAKey", keyPEM: pkcs1},
		{name: "P384Key", keyPEM: p384},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			if tt.keyPEM != nil {
				cfg.PublicKeyFile = writeFile(t, tt.keyPEM)
			}
			a, err := auth.New(cfg)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New = %v, want error containing %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("New: %v", err)
			case (a == nil) != tt.wantNil:
				t.Fatalf("New = %v, want nil %v", a, tt.wantNil)
			}
		})
	}
}

// TestNewWarnsShortSecret checks that a short secret is allowed but logged,
// without the secret.
func TestNewWarnsShortSecret(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	secret := "shortsecret"
	a, err := auth.New(auth.Config{Secrets: [][]byte{[]byte(secret)}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil || a == nil {
		t.Fatalf("New = %v, %v", a, err)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || strings.Contains(out, secret) {
		t.Errorf("log = %q, want a warning without the secret", out)
	}
}

// TestContext checks the context helpers without HTTP.
func TestContext(t *testing.T) {
	t.Parallel()
	exp := testNow.Add(time.Minute)
	tests := []struct {
		name   string
		claims *auth.Claims // nil: nothing in the context

		wantClaims  bool
		wantReadAll bool
		wantExp     bool
		write       map[string]bool
		read        map[string]bool
		consume     map[string]bool
		admin       bool
	}{
		{
			name:        "AuthOff",
			wantReadAll: true,
			write:       map[string]bool{"a": true},
			read:        map[string]bool{"a": true},
			consume:     map[string]bool{"a": true},
			admin:       true,
		},
		{
			name:        "NoFossilClaim",
			claims:      &auth.Claims{RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(exp)}},
			wantClaims:  true,
			wantReadAll: true,
			wantExp:     true,
			write:       map[string]bool{"a": true},
			read:        map[string]bool{"a": true},
			consume:     map[string]bool{"a": true},
			admin:       true,
		},
		{
			name:       "Grant",
			claims:     &auth.Claims{Fossil: &auth.Grant{Write: []string{"orders/{id}", "log"}, Read: []string{"orders/{+rest}"}, Consume: []string{"billing", ""}}},
			wantClaims: true,
			write:      map[string]bool{"orders/1": true, "log": true, "logs": false, "orders/1/x": false},
			read:       map[string]bool{"orders/1/x": true, "users/1": false},
			consume:    map[string]bool{"billing": true, "": false, "*": false, "shipping": false},
		},
		{
			name:       "InvalidTemplateFailsClosed",
			claims:     &auth.Claims{Fossil: &auth.Grant{Write: []string{"orders/{id"}, Read: []string{"orders/{id}"}, Consume: []string{"*"}, Admin: true}},
			wantClaims: true,
			write:      map[string]bool{"orders/{id": false, "orders/1": false},
			read:       map[string]bool{"orders/1": false},
			consume:    map[string]bool{"billing": false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := auth.NewContextWithClaims(context.Background(), tt.claims)
			if c, ok := auth.ClaimsFromContext(ctx); ok != tt.wantClaims || c != tt.claims {
				t.Errorf("ClaimsFromContext = %v, %v", c, ok)
			}
			if got, ok := auth.ExpiresAt(ctx); ok != tt.wantExp || (ok && !got.Equal(exp)) {
				t.Errorf("ExpiresAt = %v, %v", got, ok)
			}
			if f := auth.ReadFilter(ctx); (f == nil) != tt.wantReadAll {
				t.Errorf("ReadFilter nil = %v, want %v", f == nil, tt.wantReadAll)
			}
			check := func(what string, err error, want bool) {
				t.Helper()
				if want && err != nil {
					t.Errorf("%s: %v, want nil", what, err)
				}
				if !want && !errors.Is(err, fossil.ErrForbidden) {
					t.Errorf("%s: %v, want ErrForbidden", what, err)
				}
			}
			for s, want := range tt.write {
				check("CanWrite "+s, auth.CanWrite(ctx, s), want)
			}
			for s, want := range tt.read {
				check("CanRead "+s, auth.CanRead(ctx, s), want)
				if f := auth.ReadFilter(ctx); f != nil && f(s) != want {
					t.Errorf("ReadFilter(%q) = %v, want %v", s, f(s), want)
				}
			}
			for s, want := range tt.consume {
				check("CanConsume "+s, auth.CanConsume(ctx, s), want)
			}
			check("RequireAdmin", auth.RequireAdmin(ctx), tt.admin)
		})
	}
}

// TestClaimsUnmarshalJSON checks the strict decoding of the fossil claim.
func TestClaimsUnmarshalJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		json      string
		wantErr   bool
		wantGrant *auth.Grant
	}{
		{name: "NoClaim", json: `{"sub":"a"}`},
		{name: "EmptyGrant", json: `{"fossil":{}}`, wantGrant: &auth.Grant{}},
		{name: "FullGrant", json: `{"fossil":{"write":["a"],"read":["b"],"consume":["*"],"admin":true,"future":1}}`, wantGrant: &auth.Grant{Write: []string{"a"}, Read: []string{"b"}, Consume: []string{"*"}, Admin: true}},
		{name: "Null", json: `{"fossil":null}`, wantErr: true},
		{name: "String", json: `{"fossil":"admin"}`, wantErr: true},
		{name: "ReadNotAList", json: `{"fossil":{"read":"a"}}`, wantErr: true},
		{name: "ConsumeNotStrings", json: `{"fossil":{"consume":[{}]}}`, wantErr: true},
		{name: "BadExp", json: `{"exp":[]}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c auth.Claims
			err := json.Unmarshal([]byte(tt.json), &c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Unmarshal = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if (c.Fossil == nil) != (tt.wantGrant == nil) {
				t.Fatalf("Fossil = %+v, want %+v", c.Fossil, tt.wantGrant)
			}
			if c.Fossil != nil {
				g, w := c.Fossil, tt.wantGrant
				if !slices.Equal(g.Write, w.Write) || !slices.Equal(g.Read, w.Read) || !slices.Equal(g.Consume, w.Consume) || g.Admin != w.Admin {
					t.Errorf("Fossil = %+v, want %+v", g, w)
				}
			}
		})
	}
}
