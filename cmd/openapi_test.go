package cmd

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gorilla/mux"

	"github.com/fossil-events/fossil/openapi"
)

func loadOpenAPI(t *testing.T, serverURL string) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapi.Document)
	if err != nil {
		t.Fatalf("load openapi/openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi/openapi.json is not a valid OpenAPI document: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	doc.Servers = openapi3.Servers{{URL: serverURL}}
	return doc
}

func init() {
	for _, ct := range []string{"application/problem+json", "application/cloudevents+json", "application/cloudevents-batch+json", "application/schema+json"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.JSONBodyDecoder)
	}
	for _, ct := range []string{"text/event-stream", "application/x-ndjson"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.FileBodyDecoder)
	}
}

// TestOpenAPIResponses sends real requests to a server and checks each
// answer (status, headers, body) against GET /openapi.json.
func TestOpenAPIResponses(t *testing.T) {
	srv := startTestServer(t)
	base := srv.URL()
	doc := loadOpenAPI(t, base)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	served := get(t, base+"/openapi.json")
	if !bytes.Equal(served, openapi.Document) {
		t.Fatal("GET /openapi.json is not the embedded document")
	}

	type call struct {
		method, path, body string
		header             []string
		status             int
	}
	ce := []string{"ce-specversion", "1.0", "ce-source", "/t", "ce-type", "t", "Content-Type", "application/json"}
	calls := []call{
		{"POST", "/collect", `{"a":1}`, append([]string{"Fossil-Stream", "s/1", "ce-id", "1"}, ce...), 200},
		{"POST", "/collect", `{"a":1}`, append([]string{"Fossil-Stream", "s/1", "ce-id", "1"}, ce...), 200},
		{"POST", "/collect", `{"specversion":"1.0","id":"2","source":"/t","type":"t","data_base64":"AAE="}`, []string{"Fossil-Stream", "s/1", "Content-Type", "application/cloudevents+json"}, 200},
		{"POST", "/collect", `[{"specversion":"1.0","id":"3","source":"/t","type":"t"},{"specversion":"1.0","id":"4","source":"/t","type":"t"}]`, []string{"Fossil-Stream", "s/2", "Content-Type", "application/cloudevents-batch+json"}, 200},
		{"POST", "/collect", `{}`, append([]string{"Fossil-Stream", "s/1", "ce-id", "5", "Fossil-Expected-Sequence-Number", "1"}, ce...), 409},
		{"POST", "/collect", `{}`, append([]string{"Fossil-Stream", "s/1", "ce-id", "1"}, ce...), 409},
		{"POST", "/collect", `{}`, append([]string{"Fossil-Stream", "/bad", "ce-id", "6"}, ce...), 400},
		{"POST", "/collect", `hello`, []string{"Fossil-Stream", "s/1", "Content-Type", "text/plain"}, 415},
		{"POST", "/collect", `{}`, append([]string{"Fossil-Stream", "s/1", "ce-id", "7", "Fossil-Wait-Consumer", "nobody; timeout=1"}, ce...), 202},
		{"POST", "/collect", `{}`, append([]string{"Fossil-Stream", "s/1", "ce-id", "8", "Fossil-Replace", "true"}, ce...), 404},
		{"GET", "/events?after=0&limit=2", "", nil, 200},
		{"GET", "/events?limit=5000", "", nil, 400},
		{"GET", "/events/1", "", nil, 200},
		{"GET", "/events/999", "", nil, 404},
		{"GET", "/streams/s%2F1/events?from=1", "", nil, 200},
		{"GET", "/streams?prefix=s%2F&limit=1", "", nil, 200},
		{"GET", "/streams?limit=0", "", nil, 400},
		{"GET", "/streams/s%2F1", "", nil, 200},
		{"GET", "/streams/nowhere", "", nil, 404},
		{"GET", "/stats", "", nil, 200},
		{"GET", "/stats?x=1", "", nil, 400},
		{"GET", "/stats/consumers", "", nil, 200},
		{"GET", "/sse?stream=s%2F%7Bn%7D", "", []string{"Last-Event-Id", "1"}, 200},
		{"GET", "/sse?stream=%7Bbad", "", nil, 400},
		{"PUT", "/consumer/billing/commit", "", []string{"Last-Event-Id", "3"}, 204},
		{"PUT", "/consumer/billing/commit", "", []string{"Last-Event-Id", "1"}, 409},
		{"PUT", "/consumer/billing/commit", "", []string{"Last-Event-Id", "x"}, 400},
		{"GET", "/consumer/billing", "", nil, 200},
		{"GET", "/consumer/nobody", "", nil, 404},
		{"GET", "/consumers", "", nil, 200},
		{"GET", "/consumer/other/sse?stream=s%2F1", "", nil, 200},
		{"POST", "/events/7/ack", `{"consumer_name":"nobody"}`, []string{"Content-Type", "application/json"}, 204},
		{"POST", "/events/none/ack", `{"consumer_name":"nobody"}`, []string{"Content-Type", "application/json"}, 404},
		{"POST", "/events/7/ack", `{}`, []string{"Content-Type", "application/json"}, 400},
		{"PUT", "/schemas/order", `{"type":"object","required":["total"]}`, []string{"Content-Type", "application/json"}, 201},
		{"PUT", "/schemas/order", `{"type":"object","required":["total"]}`, []string{"Content-Type", "application/json"}, 200},
		{"GET", "/schemas/order", "", nil, 200},
		{"GET", "/schemas", "", nil, 200},
		{"POST", "/collect", `{}`, []string{"Fossil-Stream", "o/1", "ce-id", "9", "ce-specversion", "1.0", "ce-source", "/t", "ce-type", "order", "Content-Type", "application/json"}, 422},
		{"DELETE", "/schemas/order", "", nil, 204},
		{"GET", "/schemas/order", "", nil, 404},
		{"GET", "/healthz", "", nil, 200},
		{"GET", "/readyz", "", nil, 200},
		{"GET", "/metrics", "", nil, 200},
		{"GET", "/checkpoint", "", nil, 200},
		{"GET", "/checkpoint/key", "", nil, 200},
		{"GET", "/events/2/proof", "", nil, 200},
		{"GET", "/events/999/proof", "", nil, 404},
		{"GET", "/proofs/consistency?from=1&to=3", "", nil, 200},
		{"GET", "/proofs/consistency?from=3&to=1", "", nil, 400},
		{"GET", "/proofs/leaves?after=0&limit=2", "", nil, 200},
		{"GET", "/proofs/replacements", "", nil, 200},
		{"POST", "/subscriptions", `{"protocol":"SSE","config":{"streams":"s/{n}","startafter":"0"}}`, []string{"Content-Type", "application/json"}, 201},
		{"POST", "/subscriptions", `{"protocol":"SMTP"}`, []string{"Content-Type", "application/json"}, 400},
		{"GET", "/subscriptions", "", nil, 200},
		{"GET", "/subscriptions/nope", "", nil, 404},
		{"POST", "/import", `{"specversion":"1.0","id":"x","source":"/t","type":"t","fossileventnumber":1,"fossilsequenceinstream":1,"fossilstream":"s/9"}`, []string{"Content-Type", "application/x-ndjson"}, 409},
		{"POST", "/import", "", []string{"Content-Type", "text/csv"}, 415},
		{"GET", "/openapi.json", "", nil, 200},
	}
	var subID string
	for _, c := range calls {
		resp, body := doCall(t, base, c.method, c.path, c.body, c.header)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d: %s", c.method, c.path, resp.StatusCode, c.status, body)
			continue
		}
		if c.path == "/subscriptions" && c.status == 201 {
			subID = strings.TrimPrefix(resp.Header.Get("Location"), "/subscriptions/")
		}
		validateResponse(t, router, resp, body, c.method, c.path, c.body)
	}
	if subID == "" {
		t.Fatal("no subscription created")
	}
	for _, c := range []call{
		{"GET", "/subscriptions/" + subID, "", nil, 200},
		{"PUT", "/subscriptions/" + subID, `{"protocol":"SSE","config":{"streams":"s/{n}"}}`, []string{"Content-Type", "application/json"}, 200},
		{"GET", "/subscriptions/" + subID + "/parked", "", nil, 200},
		{"POST", "/subscriptions/" + subID + "/parked/replay", "", nil, 202},
		{"DELETE", "/subscriptions/" + subID + "/parked/3", "", nil, 404},
		{"POST", "/subscriptions/" + subID + "/ack", `{"numbers":[1]}`, []string{"Content-Type", "application/json"}, 409},
		{"GET", "/subscriptions/" + subID + "/sse", "", nil, 200},
		{"DELETE", "/subscriptions/" + subID, "", nil, 200},
	} {
		resp, body := doCall(t, base, c.method, c.path, c.body, c.header)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d: %s", c.method, c.path, resp.StatusCode, c.status, body)
			continue
		}
		validateResponse(t, router, resp, body, c.method, c.path, c.body)
	}
}

// doCall sends one request; a stream is read for half a second.
func doCall(t *testing.T, base, method, path, body string, header []string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if !strings.Contains(path, "sse") {
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	b, _ := io.ReadAll(resp.Body) // a stream ends with the context
	resp.Body.Close()
	return resp, b
}

// validateResponse checks one answer against the document.
func validateResponse(t *testing.T, router routers.Router, resp *http.Response, body []byte, method, path, reqBody string) {
	t.Helper()
	req := resp.Request.Clone(context.Background())
	req.Body = io.NopCloser(strings.NewReader(reqBody))
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Errorf("%s %s: not in openapi/openapi.json: %v", method, path, err)
		return
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if strings.Contains(resp.Header.Get("Content-Type"), "event-stream") {
		body = nil // a stream cut short; its status and headers are checked
		opts.ExcludeResponseBody = true
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                opts,
	})
	if err != nil {
		t.Errorf("%s %s → %d does not match openapi/openapi.json: %v\nbody: %.300s", method, path, resp.StatusCode, err, body)
	}
}

// TestOpenAPICoversEveryRoute: every route registered on the server's
// router, with each of its methods, is in the document.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	srv := startTestServer(t)
	doc := loadOpenAPI(t, srv.URL())
	type docPath struct {
		re      *regexp.Regexp
		methods []string
	}
	var paths []docPath
	param := regexp.MustCompile(`\{[^}]+\}`)
	for p, item := range doc.Paths.Map() {
		re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(param.ReplaceAllString(p, "\x00")), "\x00", "[^/]+") + "$")
		var methods []string
		for m := range item.Operations() {
			methods = append(methods, strings.ToUpper(m))
		}
		paths = append(paths, docPath{re, methods})
	}
	// A sample path for each route: {var} → 1, {var:regexp} → 1/1.
	sample := regexp.MustCompile(`\{[^}:]+(:[^}]*)?\}`)
	checked := 0
	err := srv.routes().Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err := route.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, err := route.GetMethods()
		if err != nil {
			return nil
		}
		p := sample.ReplaceAllStringFunc(tpl, func(v string) string {
			if strings.Contains(v, ":") {
				return "1/1"
			}
			return "1"
		})
		for _, m := range methods {
			checked++
			found := false
			for _, dp := range paths {
				if dp.re.MatchString(p) && slices.Contains(dp.methods, m) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("route %s %s is registered on the server but missing from openapi/openapi.json: "+
					"add the operation (every status, header and body shape of docs/api.md) to the document "+
					"and a request for it to TestOpenAPIResponses", m, tpl)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 40 {
		t.Fatalf("only %d routes found on the router: has its construction changed?", checked)
	}
}
