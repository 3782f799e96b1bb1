package auth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/problem"
)

// fuzzReasons are all the details a 401 may carry.
var fuzzReasons = []string{
	"more than one token was sent",
	"authorization scheme is not Bearer",
	"bearer token is empty",
	"fossil claim is malformed",
	"no bearer token",
	"token claims are invalid",
	"token has critical header parameters",
	"token has expired",
	"token is invalid",
	"token is malformed",
	"token is not valid yet",
	"token is too large",
	"token signature is invalid",
	"token signing algorithm is not accepted",
}

var fuzzAuth = sync.OnceValue(func() *auth.Authenticator {
	a, err := auth.New(auth.Config{
		Secrets: [][]byte{currentSecret, previousSecret},
		Now:     func() time.Time { return testNow },
	})
	if err != nil {
		panic(err)
	}
	return a
})

// fuzzResult is what the handler behind the middleware saw.
type fuzzResult struct {
	called   bool
	claims   *auth.Claims
	rawQuery string
	uri      string
	write    error
	read     error
	filter   func(string) bool
	consume  error
	admin    error
	ctx      context.Context
}

// serveFuzz sends r through the fuzz Authenticator and checks what every
// answer must satisfy, whatever the input.
func serveFuzz(t *testing.T, r *http.Request, stream string) (*httptest.ResponseRecorder, *fuzzResult) {
	t.Helper()
	res := &fuzzResult{}
	h := fuzzAuth().Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		res.called = true
		res.ctx = ctx
		res.claims, _ = auth.ClaimsFromContext(ctx)
		res.rawQuery = r.URL.RawQuery
		res.uri = r.RequestURI
		res.write = auth.CanWrite(ctx, stream)
		res.read = auth.CanRead(ctx, stream)
		res.filter = auth.ReadFilter(ctx)
		res.consume = auth.CanConsume(ctx, stream)
		res.admin = auth.RequireAdmin(ctx)
		_, _ = auth.ExpiresAt(ctx)
		w.WriteHeader(http.StatusOK)
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)

	switch w.Code {
	case http.StatusOK:
		if !res.called {
			t.Fatal("200 without calling the handler")
		}
		if res.claims == nil && r.URL.Path != auth.HealthzPath {
			t.Fatal("handler called without claims")
		}
		if q, err := url.ParseQuery(res.rawQuery); err == nil && q.Has(auth.QueryParam) {
			t.Fatalf("handler saw access_token in %q", res.rawQuery)
		}
		if res.claims != nil && (res.filter == nil) != (res.claims.Fossil == nil) {
			t.Fatalf("ReadFilter nil = %v but fossil claim = %+v", res.filter == nil, res.claims.Fossil)
		}
		if res.filter != nil && res.filter(stream) != (res.read == nil) {
			t.Fatalf("ReadFilter(%q) = %v but CanRead = %v", stream, res.filter(stream), res.read)
		}
	case http.StatusUnauthorized:
		if res.called {
			t.Fatal("401 after calling the handler")
		}
		var p problem.Problem
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatalf("401 body %q: %v", w.Body.String(), err)
		}
		reason := p.Detail
		if !slices.Contains(fuzzReasons, reason) {
			t.Fatalf("401 detail %q is not a fixed reason", p.Detail)
		}
		if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" && got != `Bearer error="invalid_token", error_description="`+reason+`"` {
			t.Fatalf("WWW-Authenticate = %q for reason %q", got, reason)
		}
	default:
		t.Fatalf("status %d", w.Code)
	}
	return w, res
}

// FuzzBearerToken fuzzes the Authorization header and the query string,
// seeded with valid, expired, foreign and broken tokens.
func FuzzBearerToken(f *testing.F) {
	valid := sign(f, jwt.SigningMethodHS256, currentSecret, claims(&auth.Grant{Write: []string{"orders/{id}"}, Consume: []string{"*"}}))
	previous := sign(f, jwt.SigningMethodHS256, previousSecret, claims(nil))
	expired := claims(nil)
	expired.ExpiresAt = jwt.NewNumericDate(testNow.Add(-time.Hour))
	for _, seed := range []struct{ authorization, query string }{
		{"", ""},
		{"Bearer " + valid, ""},
		{"bearer " + previous, "a=1"},
		{"Bearer " + sign(f, jwt.SigningMethodHS256, currentSecret, expired), ""},
		{"Bearer " + sign(f, jwt.SigningMethodHS512, currentSecret, claims(nil)), ""},
		{"Bearer " + sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil)), ""},
		{"", "access_token=" + valid},
		{"", "x=1&access_token=" + valid + "&access_token=" + valid},
		{"", "access%5Ftoken=" + valid + "%zz"},
		{"Basic YWxpY2U6c2VjcmV0", "access_token=" + valid},
		{"Bearer", ""},
		{"Bearer a.b.c", ""},
		{"Bearer ...", ""},
		{"Bearer e30.e30.", ""},
		{"Bearer " + strings.Repeat(".", auth.MaxTokenBytes+1), ""},
		{"Bearer \t " + valid + " \t", ""},
	} {
		f.Add(seed.authorization, seed.query, "orders/1")
	}
	f.Fuzz(func(t *testing.T, authorization, query, stream string) {
		r := &http.Request{
			Method:     http.MethodGet,
			URL:        &url.URL{Path: "/events", RawQuery: query},
			Header:     http.Header{},
			RequestURI: "/events?" + query,
		}
		r = r.WithContext(context.Background())
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		_, res := serveFuzz(t, r, stream)
		if res.called && strings.Contains(res.uri, auth.QueryParam+"=") && strings.Contains(query, auth.QueryParam+"=") {
			if q, err := url.ParseQuery(strings.TrimPrefix(res.uri, "/events?")); err == nil && q.Has(auth.QueryParam) {
				t.Fatalf("handler saw access_token in RequestURI %q", res.uri)
			}
		}
	})
}

// FuzzClaims fuzzes the claims of a correctly signed HS256 token, so that
// claim decoding and grant compilation see arbitrary JSON.
func FuzzClaims(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`null`,
		`[]`,
		`"x"`,
		`{"sub":"alice","exp":1893553445}`,
		`{"exp":1}`,
		`{"exp":"tomorrow"}`,
		`{"exp":1e300,"nbf":-1e300}`,
		`{"nbf":1893553445.5}`,
		`{"aud":["a","b"],"iss":"x","iat":0}`,
		`{"aud":{}}`,
		`{"fossil":{}}`,
		`{"fossil":null}`,
		`{"fossil":[]}`,
		`{"fossil":{"write":"orders/1"}}`,
		`{"fossil":{"write":[1,null]}}`,
		`{"fossil":{"write":[null]}}`,
		`{"fossil":{"write":["orders/{id}","log"],"read":["orders/{+rest}","{a,b}"],"consume":["*","billing"],"admin":true}}`,
		`{"fossil":{"read":["{"]}}`,
		`{"fossil":{"read":["orders/{id:3}","{?q}","{#frag}","{/p*}","{;m}","{.d}","{&amp}"]}}`,
		`{"fossil":{"consume":["", "*"]}}`,
		`{"fossil":{"admin":"true"}}`,
		`{"FOSSIL":{"admin":true},"fossil":{}}`,
		`{"fossil":{"write":["a"]},"fossil":null}`,
	} {
		f.Add(seed, "orders/1")
	}
	f.Fuzz(func(t *testing.T, payload, stream string) {
		token := signRaw(t, jwt.SigningMethodHS256, currentSecret, hs256Header, payload)
		r := &http.Request{
			Method:     http.MethodGet,
			URL:        &url.URL{Path: "/events"},
			Header:     http.Header{"Authorization": {"Bearer " + token}},
			RequestURI: "/events",
		}
		r = r.WithContext(context.Background())
		w, res := serveFuzz(t, r, stream)
		if strings.Contains(w.Body.String(), token) {
			t.Fatal("response echoes the token")
		}
		if !res.called || res.claims.Fossil == nil {
			return
		}
		// Whatever the grant lists literally, the checks must allow.
		g := res.claims.Fossil
		for _, s := range g.Write {
			if !strings.ContainsAny(s, "{}") {
				if err := auth.CanWrite(res.ctx, s); err != nil {
					t.Fatalf("write template %q does not allow itself: %v", s, err)
				}
			}
		}
		for _, s := range g.Read {
			if !strings.ContainsAny(s, "{}") && auth.CanRead(res.ctx, s) != nil {
				t.Fatalf("read template %q does not allow itself", s)
			}
		}
		for _, name := range g.Consume {
			if name != "" && auth.CanConsume(res.ctx, name) != nil {
				t.Fatalf("consume name %q not allowed", name)
			}
		}
		if g.Admin != (res.admin == nil) {
			t.Fatalf("admin = %v but RequireAdmin = %v", g.Admin, res.admin)
		}
	})
}
