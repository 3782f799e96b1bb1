package schema_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/notify"
	"github.com/fossil-events/fossil/problem"
	"github.com/fossil-events/fossil/schema"
	"github.com/fossil-events/fossil/store"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// process is one Fossil server process: its own pool, LISTEN connection,
// registry and HTTP server, on a shared database.
type process struct {
	store    *store.Store
	registry *schema.Registry
	server   *httptest.Server
}

type processOpts struct {
	pollOnly     bool // no broadcaster: only the safety poll reloads
	pollInterval time.Duration
	authorize    func(context.Context) error
}

// startProcess opens a process on dbURL; everything is stopped in
// t.Cleanup.
func startProcess(t testing.TB, dbURL string, opts processOpts) *process {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DatabaseURL: dbURL, MaxConns: 8})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	var b *notify.Broadcaster
	if !opts.pollOnly {
		b = notify.New(st.NewListener(), notify.Config{Channels: []string{store.ChannelSchemas}})
		if err := b.Start(ctx); err != nil {
			t.Fatalf("start broadcaster: %v", err)
		}
		t.Cleanup(b.Stop)
	}
	reg := schema.NewRegistry(st, b, nil)
	reg.PollInterval = opts.pollInterval
	reg.Authorize = opts.authorize
	if err := reg.Start(ctx); err != nil {
		t.Fatalf("start registry: %v", err)
	}
	t.Cleanup(reg.Stop)
	router := mux.NewRouter().UseEncodedPath()
	router.NotFoundHandler = http.HandlerFunc(problem.NotFound)
	router.MethodNotAllowedHandler = http.HandlerFunc(problem.MethodNotAllowed)
	reg.Register(router)
	srv := httptest.NewServer(router)
	t.Cleanup(srv.Close)
	return &process{store: st, registry: reg, server: srv}
}

func setup(t testing.TB) *process {
	t.Helper()
	return startProcess(t, dbtest.NewDB(t), processOpts{})
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (p *process) do(t testing.TB, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, p.server.URL+path, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/schema+json")
	}
	resp, err := p.server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// put registers doc for the path-escaped type and fails unless the status
// is 200 or 201.
func (p *process) put(t testing.TB, escapedType, doc string) {
	t.Helper()
	if r := p.do(t, http.MethodPut, "/schemas/"+escapedType, doc); r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("PUT %s: %d %s", escapedType, r.status, r.body)
	}
}

func decodeProblem(t testing.TB, r response) problem.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != problem.ContentType {
		t.Errorf("Content-Type = %q, want %q (body %s)", ct, problem.ContentType, r.body)
	}
	var p problem.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", r.body, err)
	}
	return p
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

const orderSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "items"],
  "properties": {
    "id": {"type": "string"},
    "items": {"type": "array", "items": {"$ref": "#/$defs/item"}}
  },
  "$defs": {
    "item": {
      "type": "object",
      "required": ["sku", "qty"],
      "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}
    }
  }
}`

func TestRoutes(t *testing.T) {
	t.Parallel()
	p := setup(t)

	// Register: 201, Location, body echoed as sent.
	r := p.do(t, http.MethodPut, "/schemas/com.example.order", orderSchema)
	if r.status != http.StatusCreated {
		t.Fatalf("PUT new: status %d, want 201: %s", r.status, r.body)
	}
	if got := r.header.Get("Location"); got != "/schemas/com.example.order" {
		t.Errorf("Location = %q", got)
	}
	if got := r.header.Get("Content-Type"); got != schema.ContentType {
		t.Errorf("PUT Content-Type = %q, want %q", got, schema.ContentType)
	}
	if string(r.body) != orderSchema {
		t.Errorf("PUT body = %s, want the schema", r.body)
	}

	// Get: the document exactly as registered.
	r = p.do(t, http.MethodGet, "/schemas/com.example.order", "")
	if r.status != http.StatusOK || string(r.body) != orderSchema {
		t.Errorf("GET: %d %s", r.status, r.body)
	}
	if got := r.header.Get("Content-Type"); got != schema.ContentType {
		t.Errorf("GET Content-Type = %q, want %q", got, schema.ContentType)
	}

	// A type with '/' and a space, path-escaped.
	r = p.do(t, http.MethodPut, "/schemas/com.example%2Fpayment%20made", `{"type":"object"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("PUT escaped type: %d %s", r.status, r.body)
	}
	if got := r.header.Get("Location"); got != "/schemas/com.example%2Fpayment%20made" {
		t.Errorf("Location = %q", got)
	}
	if r := p.do(t, http.MethodGet, "/schemas/com.example%2Fpayment%20made", ""); r.status != http.StatusOK || string(r.body) != `{"type":"object"}` {
		t.Errorf("GET escaped type: %d %s", r.status, r.body)
	}

	// List, in byte order.
	r = p.do(t, http.MethodGet, "/schemas", "")
	var list struct {
		Schemas []string `json:"schemas"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &list) != nil {
		t.Fatalf("GET /schemas: %d %s", r.status, r.body)
	}
	if want := []string{"com.example.order", "com.example/payment made"}; !slices.Equal(list.Schemas, want) {
		t.Errorf("GET /schemas = %q, want %q", list.Schemas, want)
	}

	// Replace: 200, no Location, and the new document is served.
	r = p.do(t, http.MethodPut, "/schemas/com.example.order", `{"type":"object","required":["id"]}`)
	if r.status != http.StatusOK {
		t.Fatalf("PUT replace: status %d, want 200: %s", r.status, r.body)
	}
	if got := r.header.Get("Location"); got != "" {
		t.Errorf("replace sent Location %q", got)
	}
	if r := p.do(t, http.MethodGet, "/schemas/com.example.order", ""); string(r.body) != `{"type":"object","required":["id"]}` {
		t.Errorf("GET after replace: %s", r.body)
	}

	// Delete: 204, then 404 for everything about that type.
	if r := p.do(t, http.MethodDelete, "/schemas/com.example.order", ""); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Errorf("DELETE: %d %q", r.status, r.body)
	}
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		r := p.do(t, method, "/schemas/com.example.order", "")
		if r.status != http.StatusNotFound {
			t.Errorf("%s after delete: %d, want 404", method, r.status)
			continue
		}
		if prob := decodeProblem(t, r); prob.Status != http.StatusNotFound {
			t.Errorf("%s after delete: problem status %d", method, prob.Status)
		}
	}
	if r := p.do(t, http.MethodDelete, "/schemas/com.example%2Fpayment%20made", ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE escaped: %d", r.status)
	}
	if r := p.do(t, http.MethodGet, "/schemas", ""); r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"schemas":[]}` {
		t.Errorf("GET /schemas when empty: %d %s", r.status, r.body)
	}
}

func TestPutRejects(t *testing.T) {
	t.Parallel()
	p := setup(t)

	tests := []struct {
		name       string
		path       string
		body       string
		wantStatus int
		wantDetail string // substring of the problem's detail
	}{
		{"NotJSON", "/schemas/t", `{"type": "object"`, http.StatusBadRequest, "the body is not JSON"},
		{"TrailingGarbage", "/schemas/t", `{} {}`, http.StatusBadRequest, "the body is not JSON"},
		{"Empty", "/schemas/t", ``, http.StatusBadRequest, "empty"},
		{"NotUTF8", "/schemas/t", "{\"title\": \"\xff\"}", http.StatusBadRequest, "UTF-8"},
		{"NotASchema", "/schemas/t", `42`, http.StatusBadRequest, "not valid against metaschema"},
		{"BadKeywordValue", "/schemas/t", `{"type": "banana"}`, http.StatusBadRequest, "not valid against metaschema"},
		{"BadRegexp", "/schemas/t", `{"pattern": "(?<=a)b"}`, http.StatusBadRequest, "not a valid JSON Schema"},
		{"Draft7TupleUnderDefault2020", "/schemas/t", `{"items": [{"type": "string"}]}`, http.StatusBadRequest, "not valid against metaschema"},
		{"UnresolvableLocalRef", "/schemas/t", `{"$ref": "#/$defs/missing"}`, http.StatusBadRequest, "not a valid JSON Schema"},
		{"RemoteRef", "/schemas/t", `{"$ref": "https://example.com/schemas/other.json"}`, http.StatusBadRequest, "never fetched"},
		{"RelativeRef", "/schemas/t", `{"$ref": "other.json"}`, http.StatusBadRequest, "never fetched"},
		{"RemoteRefUnderID", "/schemas/t", `{"$id": "https://example.com/a.json", "$ref": "b.json"}`, http.StatusBadRequest, "never fetched"},
		{"RemoteMetaSchema", "/schemas/t", `{"$schema": "https://example.com/my-meta"}`, http.StatusBadRequest, "never fetched"},
		{"TooLarge", "/schemas/t", `{"description": "` + strings.Repeat("x", schema.MaxSchemaBytes) + `"}`, http.StatusRequestEntityTooLarge, "limit"},
		{"TypeTooLong", "/schemas/" + strings.Repeat("t", schema.MaxTypeLength+1), `{}`, http.StatusBadRequest, "at most"},
		{"TypeWithControlCharacter", "/schemas/a%00b", `{}`, http.StatusBadRequest, "control character"},
		{"TypeNotUTF8", "/schemas/a%FFb", `{}`, http.StatusBadRequest, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := p.do(t, http.MethodPut, tt.path, tt.body)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tt.wantStatus, r.body)
			}
			prob := decodeProblem(t, r)
			if !strings.Contains(prob.Detail, tt.wantDetail) {
				t.Errorf("detail %q does not contain %q", prob.Detail, tt.wantDetail)
			}
		})
	}

	t.Cleanup(func() {
		// Nothing was stored by any rejected request.
		types, err := p.store.ListSchemaTypes(context.Background())
		if err != nil || len(types) != 0 {
			t.Errorf("stored types after rejected PUTs: %q, %v", types, err)
		}
	})
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDB(t)
	var (
		mu    sync.Mutex
		calls int
	)
	p := startProcess(t, dbURL, processOpts{authorize: func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return fossil.ErrForbidden
	}})
	if _, err := p.store.PutSchema(context.Background(), "t", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}

	routes := []struct{ method, path, body string }{
		{http.MethodGet, "/schemas", ""},
		{http.MethodGet, "/schemas/t", ""},
		{http.MethodPut, "/schemas/u", `{}`},
		{http.MethodDelete, "/schemas/t", ""},
	}
	for _, rt := range routes {
		if r := p.do(t, rt.method, rt.path, rt.body); r.status != http.StatusForbidden {
			t.Errorf("%s %s: %d, want 403", rt.method, rt.path, r.status)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != len(routes) {
		t.Errorf("Authorize called %d times, want %d", calls, len(routes))
	}
	types, err := p.store.ListSchemaTypes(context.Background())
	if err != nil || !slices.Equal(types, []string{"t"}) {
		t.Errorf("types after forbidden requests = %q, %v; want [t]", types, err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	p := setup(t)

	p.put(t, "order", orderSchema)
	// Draft-07: tuple "items", "definitions", and "format" asserted.
	p.put(t, "point.v7", `{
	  "$schema": "http://json-schema.org/draft-07/schema#",
	  "definitions": {"coord": {"type": "number"}},
	  "type": "array",
	  "items": [{"$ref": "#/definitions/coord"}, {"$ref": "#/definitions/coord"}],
	  "additionalItems": false
	}`)
	p.put(t, "contact.v7", `{"$schema": "http://json-schema.org/draft-07/schema#", "type": "string", "format": "email"}`)
	// 2020-12 (by default): prefixItems, and "format" only annotates.
	p.put(t, "point", `{"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": false}`)
	p.put(t, "contact", `{"type": "string", "format": "email"}`)
	p.put(t, "nullable", `{"type": ["object", "null"]}`)
	p.put(t, "nothing", `false`)
	p.put(t, "a~b%2Fc", `{"type": "object", "properties": {"x/y": {"properties": {"m~n": {"type": "string"}}}}}`)

	type want []fossil.Violation
	tests := []struct {
		name  string
		typ   string
		kind  fossil.DataKind
		data  string
		wants want // nil: valid
	}{
		{"NoSchema", "unregistered", fossil.DataJSON, `{"anything": true}`, nil},
		{"NoSchemaNotJSON", "unregistered", fossil.DataBase64, "\x00\x01", nil},
		{"Valid", "order", fossil.DataJSON, `{"id":"o1","items":[{"sku":"a","qty":1}]}`, nil},
		{"NestedFailures", "order", fossil.DataJSON, `{"id":7,"items":[{"sku":"a","qty":1},{"qty":0}]}`, want{
			{Pointer: "/id", Message: "got number, want string"},
			{Pointer: "/items/1", Message: "missing property 'sku'"},
			{Pointer: "/items/1/qty", Message: "minimum: got 0, want 1"},
		}},
		{"MissingRequired", "order", fossil.DataJSON, `{}`, want{
			{Pointer: "", Message: "missing properties 'id', 'items'"},
		}},
		{"StringDataThatIsJSON", "order", fossil.DataString, `{"id":"o1","items":[]}`, nil},
		{"StringDataThatIsNotJSON", "order", fossil.DataString, `hello`, want{
			{Pointer: "", Message: "the type has a schema, so the data must be JSON, but the text does not parse as JSON: invalid character 'h' looking for beginning of value"},
		}},
		{"Base64DataThatIsJSON", "order", fossil.DataBase64, `{"id":"o1","items":[]}`, nil},
		{"Base64DataThatIsNotJSON", "order", fossil.DataBase64, "\x89PNG", want{
			{Pointer: "", Message: "the type has a schema, so the data must be JSON, but the binary data does not parse as JSON: invalid character '\\u0089' looking for beginning of value"},
		}},
		{"NoDataIsNull", "order", fossil.DataNone, ``, want{{Pointer: "", Message: "got null, want object"}}},
		{"NoDataIsNullAndNullAllowed", "nullable", fossil.DataNone, ``, nil},
		{"FalseSchema", "nothing", fossil.DataJSON, `{}`, want{{Pointer: "", Message: "false schema"}}},
		{"Draft7TupleValid", "point.v7", fossil.DataJSON, `[1, 2.5]`, nil},
		{"Draft7TupleInvalid", "point.v7", fossil.DataJSON, `[1, "x", 3]`, want{
			{Pointer: "", Message: "last 1 additionalItem(s) not allowed"},
			{Pointer: "/1", Message: "got string, want number"},
		}},
		{"Draft7FormatAsserted", "contact.v7", fossil.DataJSON, `"not an address"`, want{
			{Pointer: "", Message: "'not an address' is not valid email: missing @"},
		}},
		{"Draft2020TupleValid", "point", fossil.DataJSON, `[1, 2]`, nil},
		{"Draft2020TupleInvalid", "point", fossil.DataJSON, `["x", 2, 3]`, want{
			{Pointer: "/0", Message: "got string, want number"},
			{Pointer: "/2", Message: "false schema"},
		}},
		{"Draft2020FormatAnnotates", "contact", fossil.DataJSON, `"not an address"`, nil},
		{"PointerEscaping", "a~b/c", fossil.DataJSON, `{"x/y": {"m~n": 1}}`, want{
			{Pointer: "/x~1y/m~0n", Message: "got number, want string"},
		}},
		{"LargeNumbersKeepPrecision", "order", fossil.DataJSON, `{"id":"o","items":[{"sku":"a","qty":12345678901234567890123}]}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := p.registry.Validate("body[3].data", tt.typ, tt.kind, []byte(tt.data))
			if tt.wants == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var sv *fossil.SchemaViolationError
			if !errors.As(err, &sv) {
				t.Fatalf("Validate = %v, want *fossil.SchemaViolationError", err)
			}
			if !errors.Is(err, fossil.ErrSchemaViolation) {
				t.Errorf("error does not wrap ErrSchemaViolation")
			}
			if sv.Location != "body[3].data" || sv.Type != tt.typ {
				t.Errorf("Location, Type = %q, %q", sv.Location, sv.Type)
			}
			if !slices.Equal(sv.Violations, tt.wants) {
				t.Errorf("violations:\n got %q\nwant %q", sv.Violations, tt.wants)
			}
			if prob := problem.FromError(err); prob.Status != http.StatusUnprocessableEntity || len(prob.Errors) != len(tt.wants) {
				t.Errorf("problem: status %d, %d errors", prob.Status, len(prob.Errors))
			}
		})
	}
}

func TestValidateCapsViolations(t *testing.T) {
	t.Parallel()
	p := setup(t)
	p.put(t, "many", `{"type": "array", "items": {"type": "string"}}`)
	data := "[" + strings.TrimSuffix(strings.Repeat("1,", 250), ",") + "]"
	var sv *fossil.SchemaViolationError
	if err := p.registry.Validate("body", "many", fossil.DataJSON, []byte(data)); !errors.As(err, &sv) {
		t.Fatalf("Validate = %v", err)
	}
	if len(sv.Violations) != schema.MaxViolations {
		t.Fatalf("%d violations, want %d", len(sv.Violations), schema.MaxViolations)
	}
	if last := sv.Violations[len(sv.Violations)-1]; last.Message != "151 more violations not listed" {
		t.Errorf("last violation = %+v", last)
	}
}

// TestOtherProcess checks that a change made through one process is
// enforced by another on the same database within a second, and that the
// writer sees its own change at once.
func TestOtherProcess(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDB(t)
	a := startProcess(t, dbURL, processOpts{})
	b := startProcess(t, dbURL, processOpts{}) // default 30 s poll: only a notification is fast enough

	const typ = "com.example.shipped"
	bad := []byte(`{"carrier": 5}`)
	rejects := func(p *process) bool { return p.registry.Validate("body.data", typ, fossil.DataJSON, bad) != nil }

	if rejects(a) || rejects(b) {
		t.Fatal("enforced before registration")
	}
	a.put(t, typ, `{"properties": {"carrier": {"type": "string"}}}`)
	if !rejects(a) {
		t.Fatal("the writing process does not enforce its own schema at once")
	}
	waitFor(t, time.Second, "process B to enforce the schema", func() bool { return rejects(b) })

	// Replacing and deleting propagate the same way.
	a.put(t, typ, `{"properties": {"carrier": {"type": "integer"}}}`)
	if rejects(a) {
		t.Fatal("the writing process still enforces the replaced schema")
	}
	waitFor(t, time.Second, "process B to enforce the replacement", func() bool { return !rejects(b) })

	b.put(t, typ, `false`)
	waitFor(t, time.Second, "process A to see B's schema", func() bool { return rejects(a) })
	if r := a.do(t, http.MethodDelete, "/schemas/"+typ, ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if rejects(a) {
		t.Fatal("the writing process still enforces a deleted schema")
	}
	waitFor(t, time.Second, "process B to drop the deleted schema", func() bool { return !rejects(b) })
}

// TestPollFallback checks the safety poll alone: a process without a
// broadcaster still picks up changes.
func TestPollFallback(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDB(t)
	p := startProcess(t, dbURL, processOpts{pollOnly: true, pollInterval: 20 * time.Millisecond})
	writer := startProcess(t, dbURL, processOpts{pollOnly: true})
	writer.put(t, "polled", `false`)
	waitFor(t, 5*time.Second, "the poll to load the schema", func() bool {
		return p.registry.Validate("d", "polled", fossil.DataJSON, []byte(`1`)) != nil
	})
}

// TestStoredSchemaThatDoesNotCompile checks that a schema put into the
// table behind the API's back is not enforced and does not stop the others.
func TestStoredSchemaThatDoesNotCompile(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.NewDB(t)
	st, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for typ, doc := range map[string]string{"broken": `{"type": "banana"}`, "good": `false`} {
		if _, err := st.PutSchema(context.Background(), typ, []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	p := startProcess(t, dbURL, processOpts{})
	if err := p.registry.Validate("d", "broken", fossil.DataJSON, []byte(`1`)); err != nil {
		t.Errorf("broken schema enforced: %v", err)
	}
	if err := p.registry.Validate("d", "good", fossil.DataJSON, []byte(`1`)); err == nil {
		t.Error("good schema not enforced")
	}
	// It is still listed, so an operator can find and replace it.
	if r := p.do(t, http.MethodGet, "/schemas/broken", ""); r.status != http.StatusOK {
		t.Errorf("GET broken: %d", r.status)
	}
}

// TestConcurrentValidateAndReplace runs Validate while schemas are replaced,
// for the race detector.
func TestConcurrentValidateAndReplace(t *testing.T) {
	t.Parallel()
	p := setup(t)
	p.put(t, "t", `true`)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = p.registry.Validate("d", "t", fossil.DataJSON, []byte(`{"a": 1}`))
			}
		})
	}
	for i := range 6 {
		doc := `true`
		if i%2 == 0 {
			doc = `{"properties": {"a": {"type": "string"}}}`
		}
		p.put(t, "t", doc)
	}
	close(stop)
	wg.Wait()
}

func TestLifecycle(t *testing.T) {
	t.Parallel()

	t.Run("StopWithoutStart", func(t *testing.T) {
		t.Parallel()
		schema.NewRegistry(nil, nil, nil).Stop()
	})

	t.Run("StartTwice", func(t *testing.T) {
		t.Parallel()
		p := setup(t)
		if err := p.registry.Start(context.Background()); err == nil {
			t.Error("second Start succeeded")
		}
		p.registry.Stop()
		p.registry.Stop() // idempotent
	})

	t.Run("StopsWithContext", func(t *testing.T) {
		t.Parallel()
		dbURL := dbtest.NewDB(t)
		st, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		reg := schema.NewRegistry(st, nil, nil)
		ctx, cancel := context.WithCancel(context.Background())
		if err := reg.Start(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		reg.Stop() // returns once the loop, already ending, has ended
	})

	t.Run("StartFailsWhenDatabaseIsGone", func(t *testing.T) {
		t.Parallel()
		dbURL := dbtest.NewDB(t)
		st, err := store.Open(context.Background(), store.Config{DatabaseURL: dbURL})
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		reg := schema.NewRegistry(st, nil, nil)
		if err := reg.Start(context.Background()); err == nil {
			t.Error("Start succeeded on a closed store")
		}
		reg.Stop()
	})
}

// BenchmarkValidate validates a typical event: about 500 bytes of JSON
// data against a schema with nested objects, an array, formats and enums.
func BenchmarkValidate(b *testing.B) {
	p := setup(b)
	p.put(b, "com.example.order.placed", benchSchema)
	data := []byte(benchData)
	if err := p.registry.Validate("body.data", "com.example.order.placed", fossil.DataJSON, data); err != nil {
		b.Fatalf("benchmark data does not validate: %v", err)
	}
	invalid := []byte(strings.Replace(benchData, `"currency":"EUR"`, `"currency":"XXX"`, 1))
	if p.registry.Validate("body.data", "com.example.order.placed", fossil.DataJSON, invalid) == nil {
		b.Fatal("invalid benchmark data validates")
	}
	b.Logf("data: %d bytes", len(data))

	b.Run("Valid", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if err := p.registry.Validate("body.data", "com.example.order.placed", fossil.DataJSON, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ValidParallel", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := p.registry.Validate("body.data", "com.example.order.placed", fossil.DataJSON, data); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("Invalid", func(b *testing.B) {
		b.SetBytes(int64(len(invalid)))
		b.ReportAllocs()
		for b.Loop() {
			if p.registry.Validate("body.data", "com.example.order.placed", fossil.DataJSON, invalid) == nil {
				b.Fatal("validated")
			}
		}
	})
	b.Run("Base64", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if err := p.registry.Validate("body.data", "com.example.order.placed", fossil.DataBase64, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("NoSchema", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := p.registry.Validate("body.data", "com.example.other", fossil.DataJSON, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

const benchSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["orderId", "customer", "items", "total", "currency", "placedAt"],
  "additionalProperties": false,
  "properties": {
    "orderId": {"type": "string", "pattern": "^ord_[0-9a-z]{8,}$"},
    "customer": {
      "type": "object",
      "required": ["id", "email"],
      "properties": {
        "id": {"type": "string"},
        "email": {"type": "string", "format": "email"},
        "name": {"type": "string", "maxLength": 200}
      }
    },
    "items": {
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "object",
        "required": ["sku", "qty", "price"],
        "properties": {
          "sku": {"type": "string"},
          "qty": {"type": "integer", "minimum": 1},
          "price": {"type": "number", "minimum": 0}
        }
      }
    },
    "total": {"type": "number", "minimum": 0},
    "currency": {"enum": ["EUR", "USD", "GBP"]},
    "placedAt": {"type": "string", "format": "date-time"},
    "notes": {"type": ["string", "null"]}
  }
}`

const benchData = `{"orderId":"ord_7f3k9x2m1q","customer":{"id":"cus_1234567","email":"ada@example.com","name":"Ada Lovelace"},` +
	`"items":[{"sku":"BOOK-0001","qty":2,"price":12.5},{"sku":"PEN-0042","qty":10,"price":1.2},{"sku":"BAG-0007","qty":1,"price":35}],` +
	`"total":72,"currency":"EUR","placedAt":"2025-06-01T12:34:56.789Z","notes":"Please deliver to the back door, between nine and five, ` +
	`and ring twice. Gift wrap the book if possible; the receipt should not be included in the parcel."}`
