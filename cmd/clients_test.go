package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fossil-events/fossil/internal/dbtest"
)

// startTestServer runs a server on a fresh database.
func startTestServer(t *testing.T, opts ...func(*Config)) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = dbtest.NewDB(t)
	cfg.PollInterval = 200 * time.Millisecond
	for _, o := range opts {
		o(&cfg)
	}
	srv := NewServer(cfg, nil)
	if err := srv.Run(context.Background()); err != nil {
		_ = srv.Close()
		t.Fatalf("run: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// fossilCmd runs a client command with stdin in and returns its exit code,
// stdout and stderr.
func fossilCmd(t *testing.T, in string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runWithStdin(context.Background(), strings.NewReader(in), args, &out, &errOut, envOf(nil))
	return code, out.String(), errOut.String()
}

// runWithStdin runs the command line with stdin replaced; the client
// commands' tests do not run in parallel with each other for that reason.
func runWithStdin(ctx context.Context, in io.Reader, args []string, stdout, stderr io.Writer, env envLookup) int {
	stdinMu.Lock()
	defer stdinMu.Unlock()
	old := stdin
	stdin = in
	defer func() { stdin = old }()
	return run(ctx, args, stdout, stderr, env)
}

// adminToken signs an HS256 token with the given fossil claim.
func adminToken(t *testing.T, secret string, claim map[string]any, exp time.Duration) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "cli", "exp": time.Now().Add(exp).Unix(), "fossil": claim}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stdinMu serialises the tests that replace stdin.
var stdinMu sync.Mutex

// get reads a URL and returns the body (the status must be 200).
func get(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
	}
	return body
}

func post(t *testing.T, u string, header map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// populate writes a varied log: every data representation, optional
// attributes, extensions, a wait-for-ack list, a replacement, several
// streams with non-ASCII names, through the CLI and curl-like requests.
func populate(t *testing.T, base string) {
	t.Helper()
	lines := []string{
		`{"specversion":"1.0","id":"o1","source":"/shop","type":"order.placed","subject":"42","time":"2026-01-02T03:04:05.123Z","datacontenttype":"application/json","data":{"total":10, "items": [1,2]}}`,
		`{"specversion":"1.0","id":"o2","source":"/shop","type":"order.paid","data_base64":"AAECAwQ="}`,
		`{"specversion":"1.0","id":"o3","source":"/shop","type":"order.note","datacontenttype":"text/plain","data":"hello\nworld","traceid":"abc","priority":3}`,
	}
	code, out, errOut := fossilCmd(t, strings.Join(lines, "\n")+"\n", "collect", "--url", base, "--stream", "orders/42", "--batch", "2")
	if code != 0 {
		t.Fatalf("collect: exit %d: %s", code, errOut)
	}
	if n := strings.Count(out, "\n"); n != 3 || !strings.Contains(out, `"fossilsequenceinstream":3`) {
		t.Fatalf("collect printed %q, want 3 result lines", out)
	}
	code, _, errOut = fossilCmd(t, `{"specversion":"1.0","id":"c1","source":"urn:café","type":"t","data":{"é":"ü"}}`, "collect", "--url", base, "--stream", "café/1")
	if code != 0 {
		t.Fatalf("collect: exit %d: %s", code, errOut)
	}
	// Binary mode with a wait nobody answers: fossilexpectack is stored.
	resp, body := post(t, base+"/collect", map[string]string{
		"Fossil-Stream": "orders/43", "Fossil-Wait-Consumer": "billing; timeout=1, mailer; timeout=1",
		"ce-specversion": "1.0", "ce-id": "o4", "ce-source": "/shop", "ce-type": "order.placed", "Content-Type": "application/octet-stream",
	}, "\x00\x01binary")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("collect with wait: %d %s", resp.StatusCode, body)
	}
	// A replacement (GDPR): same number, new content.
	resp, body = post(t, base+"/collect", map[string]string{
		"Fossil-Stream": "orders/42", "Fossil-Replace": "true", "Content-Type": "application/cloudevents+json",
	}, `{"specversion":"1.0","id":"o1","source":"/shop","type":"order.placed","data":{"total":"[redacted]"}}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("replace: %d %s", resp.StatusCode, body)
	}
	for i := range 20 {
		code, _, errOut = fossilCmd(t, fmt.Sprintf(`{"specversion":"1.0","id":"m%d","source":"/many","type":"t","data":%d}`, i, i), "collect", "--url", base, "--stream", fmt.Sprint("many/", i%3))
		if code != 0 {
			t.Fatalf("collect: exit %d: %s", code, errOut)
		}
	}
}

// reads returns every read of the log that a client can make, to compare
// two servers byte for byte.
func reads(t *testing.T, base string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, path := range []string{
		"/events?after=0&limit=1000",
		"/events?after=3&limit=2",
		"/events/1", "/events/5", "/events/25",
		"/streams/orders%2F42/events",
		"/streams/orders%2F43/events",
		"/streams/" + url.PathEscape("café/1") + "/events",
		"/streams/many%2F1/events?from=2&limit=3",
	} {
		out[path] = get(t, base+path)
	}
	return out
}

func TestExportImportRoundTrip(t *testing.T) {
	src := startTestServer(t)
	populate(t, src.URL())
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.ndjson")

	code, out, errOut := fossilCmd(t, "", "export", "--url", src.URL(), "--output", file)
	if code != 0 || out != "" || !strings.Contains(errOut, "exported 25 events") {
		t.Fatalf("export: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	export, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Exported to stdout, the same bytes.
	if code, out, _ := fossilCmd(t, "", "export", "--url", src.URL()); code != 0 || out != string(export) {
		t.Fatalf("export to stdout differs from the file")
	}
	// The export is the log as served, each event with its salt and leaf
	// hash, then the replacement chain.
	var log []json.RawMessage
	if err := json.Unmarshal(get(t, src.URL()+"/events?after=0&limit=1000"), &log); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(export), "\n"), "\n")
	if len(lines) != len(log)+1 || !strings.HasPrefix(lines[len(log)], `{"fossilreplacement":{"index":1,"number":1,`) {
		t.Fatalf("export has %d lines for %d events and one replacement:\n%s", len(lines), len(log), export)
	}
	for i, e := range log {
		if !strings.HasPrefix(lines[i], string(e[:len(e)-1])+`,"fossilsalt":"`) || !strings.Contains(lines[i], `","fossilleafhash":"`) {
			t.Fatalf("export line %d:\n%s\nwant the event as served\n%s", i+1, lines[i], e)
		}
	}

	dst := startTestServer(t)
	code, out, errOut = fossilCmd(t, "", "import", "--url", dst.URL(), "--input", file)
	if code != 0 || strings.TrimSpace(out) != `{"events":25,"streams":6,"replacements":1}` {
		t.Fatalf("import: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	want, got := reads(t, src.URL()), reads(t, dst.URL())
	// The same tree: the same checkpoint (origin, size, root, replacement
	// chain), signed by each server's own key.
	srcNote, dstNote := strings.Split(string(get(t, src.URL()+"/checkpoint")), "\n\n")[0], strings.Split(string(get(t, dst.URL()+"/checkpoint")), "\n\n")[0]
	if srcNote != dstNote || !strings.Contains(srcNote, "\n25\n") || !strings.Contains(srcNote, "fossil-replacements 1 ") {
		t.Errorf("checkpoint after the round trip:\n%s\nwant\n%s", dstNote, srcNote)
	}
	for _, path := range []string{"/events/7/proof", "/events/1/proof", "/proofs/consistency?from=3&to=25"} {
		want[path], got[path] = get(t, src.URL()+path), get(t, dst.URL()+path)
	}
	for path := range want {
		if !bytes.Equal(want[path], got[path]) {
			t.Errorf("GET %s after the round trip:\n%s\nwant\n%s", path, got[path], want[path])
		}
	}

	// Appends continue the imported log: the next number, the stream's
	// next sequence, and duplicates of imported events are recognised.
	resp, body := post(t, dst.URL()+"/collect", map[string]string{"Fossil-Stream": "orders/42", "Fossil-Expected-Sequence-Number": "4", "Content-Type": "application/cloudevents+json"},
		`{"specversion":"1.0","id":"o9","source":"/shop","type":"t"}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Fossil-Event-Number") != "26" || resp.Header.Get("Fossil-Sequence-Number") != "4" {
		t.Fatalf("append after import: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = post(t, dst.URL()+"/collect", map[string]string{"Fossil-Stream": "orders/42", "Content-Type": "application/cloudevents+json"},
		`{"specversion":"1.0","id":"o2","source":"/shop","type":"order.paid","data_base64":"AAECAwQ="}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Fossil-Duplicate") != "true" || resp.Header.Get("Fossil-Event-Number") != "2" {
		t.Fatalf("duplicate of an imported event: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	// A second import is refused: the store is not empty.
	code, _, errOut = fossilCmd(t, "", "import", "--url", dst.URL(), "--input", file)
	if code != 1 || !strings.Contains(errOut, "409") || !strings.Contains(errOut, "empty") {
		t.Fatalf("import into a non-empty store: exit %d, stderr %q", code, errOut)
	}
}

func TestImportIsAtomic(t *testing.T) {
	src := startTestServer(t)
	populate(t, src.URL())
	_, export, _ := fossilCmd(t, "", "export", "--url", src.URL())
	lines := strings.SplitAfter(strings.TrimSuffix(export, "\n"), "\n")
	corrupt := func(i int, with string) string {
		l := append([]string(nil), lines...)
		l[i] = with
		return strings.Join(l, "")
	}
	cases := map[string]string{
		"a hole in the numbers":         strings.Join(append(append([]string(nil), lines[:5]...), lines[6:]...), ""),
		"the last line broken":          corrupt(len(lines)-1, `{"specversion":"1.0","id":"x"`),
		"a sequence out of order":       corrupt(20, strings.Replace(lines[20], `"fossilsequenceinstream":`, `"fossilsequenceinstream":1`, 1)),
		"a copied event at the end":     export + strings.Replace(strings.Replace(lines[1], `"fossileventnumber":2`, `"fossileventnumber":26`, 1), `"fossilstream":"orders/42"`, `"fossilstream":"orders/99"`, 1),
		"reserved attributes inside":    corrupt(3, strings.Replace(lines[3], `"specversion":"1.0"`, `"specversion":"1.0","fossilstream":"x"`, 1)),
		"content that is not its leaf":  corrupt(4, strings.Replace(lines[4], `"source":"/shop"`, `"source":"/shopping"`, 1)),
		"a salt that is not the leaf's": corrupt(6, strings.Replace(lines[6], `"fossilsalt":"`, `"fossilsalt":"AAAA`, 1)),
		"the replacement chain broken":  corrupt(len(lines)-1, strings.Replace(lines[len(lines)-1], `"number":1,`, `"number":2,`, 1)),
		"the replacement chain dropped": strings.Join(lines[:len(lines)-1], ""),
	}
	dst := startTestServer(t)
	for name, input := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := fossilCmd(t, input, "import", "--url", dst.URL())
			if code != 1 || out != "" || !strings.Contains(errOut, "400") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 with a 400", code, out, errOut)
			}
			if body := get(t, dst.URL()+"/events"); string(body) != "[]\n" {
				t.Fatalf("a failed import left events: %s", body)
			}
		})
	}
	// The store is still empty and importable.
	code, out, errOut := fossilCmd(t, export, "import", "--url", dst.URL())
	if code != 0 || !strings.Contains(out, `"events":25`) || !strings.Contains(out, `"replacements":1`) {
		t.Fatalf("import after failed ones: exit %d %q %q", code, out, errOut)
	}
}

func TestImportNeedsAdmin(t *testing.T) {
	srv := startTestServer(t, func(c *Config) { c.JWTSecret = "import-test-secret-that-is-long-enough" })
	code, _, errOut := fossilCmd(t, "", "import", "--url", srv.URL())
	if code != 1 || !strings.Contains(errOut, "401") {
		t.Fatalf("without a token: exit %d, %q", code, errOut)
	}
	reader := adminToken(t, "import-test-secret-that-is-long-enough", map[string]any{"read": []string{"{+all}"}}, time.Hour)
	code, _, errOut = fossilCmd(t, "", "import", "--url", srv.URL(), "--token", reader)
	if code != 1 || !strings.Contains(errOut, "403") {
		t.Fatalf("without admin: exit %d, %q", code, errOut)
	}
	admin := adminToken(t, "import-test-secret-that-is-long-enough", map[string]any{"admin": true}, time.Hour)
	var out, errBuf bytes.Buffer
	code = runWithStdin(context.Background(), strings.NewReader(""), []string{"import", "--url", srv.URL()}, &out, &errBuf, envOf(map[string]string{"FOSSIL_TOKEN": admin}))
	if code != 0 || strings.TrimSpace(out.String()) != `{"events":0,"streams":0,"replacements":0}` {
		t.Fatalf("admin via FOSSIL_TOKEN: exit %d, %q %q", code, out.String(), errBuf.String())
	}
}

// TestCollectPipelined: fossil collect sends an input of several batches
// over a gRPC CollectStream call, prints the answers in order, and stops at
// the first failure.
func TestCollectPipelined(t *testing.T) {
	srv := startTestServer(t)
	env := envOf(map[string]string{"FOSSIL_URL": srv.URL()})
	runEnv := func(in string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := runWithStdin(context.Background(), strings.NewReader(in), args, &out, &errOut, env)
		return code, out.String(), errOut.String()
	}
	many := ""
	for i := range 7 {
		many += fmt.Sprintf(`{"specversion":"1.0","id":"m%d","source":"/s","type":"t","data":{"i":%d}}`+"\n", i, i)
	}
	code, out, errOut := runEnv(many, "collect", "--stream", "s/2", "--expect-sequence", "1", "--batch", "2")
	if code != 0 || strings.Count(out, "\n") != 7 || !strings.HasSuffix(out, `{"id":"m6","source":"/s","fossileventnumber":7,"fossilsequenceinstream":7}`+"\n") {
		t.Fatalf("pipelined collect: exit %d %q %q", code, out, errOut)
	}
	code, out, errOut = runEnv(many, "collect", "--stream", "s/3", "--expect-sequence", "2", "--batch", "2")
	if code != 1 || out != "" || !strings.Contains(errOut, "409") || !strings.Contains(errOut, "events 1–2") {
		t.Fatalf("pipelined conflict: exit %d %q %q", code, out, errOut)
	}
}

func TestClientCommands(t *testing.T) {
	srv := startTestServer(t)
	base := srv.URL()
	env := envOf(map[string]string{"FOSSIL_URL": base})
	runEnv := func(in string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := runWithStdin(context.Background(), strings.NewReader(in), args, &out, &errOut, env)
		return code, out.String(), errOut.String()
	}
	in := `{"specversion":"1.0","id":"a","source":"/s","type":"t"}
{"specversion":"1.0","id":"b","source":"/s","type":"t"}
`
	code, out, errOut := runEnv(in, "collect", "--stream", "s/1", "--expect-sequence", "1", "--batch", "1")
	if code != 0 || out != `{"id":"a","source":"/s","fossileventnumber":1,"fossilsequenceinstream":1}`+"\n"+`{"id":"b","source":"/s","fossileventnumber":2,"fossilsequenceinstream":2}`+"\n" {
		t.Fatalf("collect: exit %d %q %q", code, out, errOut)
	}
	// The same lines again: duplicates, said so.
	code, out, _ = runEnv(in, "collect", "--stream", "s/1")
	if code != 0 || strings.Count(out, `"duplicate":true`) != 2 {
		t.Fatalf("collect again: exit %d %q", code, out)
	}
	// A conflict: exit 1, the problem on stderr.
	code, _, errOut = runEnv(`{"specversion":"1.0","id":"c","source":"/s","type":"t"}`, "collect", "--stream", "s/1", "--expect-sequence", "1")
	if code != 1 || !strings.Contains(errOut, "409") {
		t.Fatalf("conflict: exit %d %q", code, errOut)
	}
	code, _, errOut = runEnv("not json\n", "collect", "--stream", "s/1")
	if code != 1 || !strings.Contains(errOut, "line 1") {
		t.Fatalf("bad line: exit %d %q", code, errOut)
	}

	code, out, errOut = runEnv("", "tail", "--count", "2", "s/{n}")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, `"fossileventnumber":2,"fossilsequenceinstream":2,"fossilstream":"s/1"`) {
		t.Fatalf("tail: exit %d %q %q", code, out, errOut)
	}
	code, out, _ = runEnv("", "tail", "--after", "1", "--count", "1", "{+all}")
	if code != 0 || !strings.HasPrefix(out, `{"specversion":"1.0","id":"b"`) {
		t.Fatalf("tail --after: exit %d %q", code, out)
	}

	req, _ := http.NewRequest(http.MethodPut, base+"/consumer/billing/commit", nil)
	req.Header.Set("Last-Event-Id", "1")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("commit: %v %v", resp, err)
	}
	code, out, _ = runEnv("", "consumers")
	if code != 0 || !strings.HasPrefix(out, `{"name":"billing","offset":1,"lag":1,"connected":false,"committed_at":"`) {
		t.Fatalf("consumers: exit %d %q", code, out)
	}
	code, _, errOut = runEnv("", "consumers", "nobody")
	if code != 1 || !strings.Contains(errOut, "404") {
		t.Fatalf("unknown consumer: exit %d %q", code, errOut)
	}

	// Usage errors exit 2; help exits 0.
	for _, args := range [][]string{
		{"collect"},
		{"collect", "--stream", "s", "--batch", "0"},
		{"tail"},
		{"export", "extra"},
		{"import", "--nope"},
		{"consumers", "--url", "ftp://x"},
	} {
		if code, _, errOut := runEnv("", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
	if code, _, errOut := runEnv("", "tail", "-h"); code != 0 || !strings.Contains(errOut, "--after") && !strings.Contains(errOut, "-after") {
		t.Errorf("tail -h: exit %d %q", code, errOut)
	}
	// A server that is not there: exit 1.
	if code, _, _ := fossilCmd(t, "", "consumers", "--url", "http://127.0.0.1:1"); code != 1 {
		t.Errorf("unreachable server: exit %d, want 1", code)
	}
}

// TestIncrementalImport keeps a copy up to date: a whole export restored,
// then `fossil export --after H` of what the source added since, imported
// onto the copy, gives the same log, the same tree and the same reads.
func TestIncrementalImport(t *testing.T) {
	src := startTestServer(t)
	populate(t, src.URL())
	dst := startTestServer(t)
	_, base, _ := fossilCmd(t, "", "export", "--url", src.URL())
	if code, out, errOut := fossilCmd(t, base, "import", "--url", dst.URL()); code != 0 || !strings.Contains(out, `"events":25`) {
		t.Fatalf("base import: exit %d %q %q", code, out, errOut)
	}

	// The source goes on: new events in old and new streams, and one of
	// them replaced.
	for i := range 7 {
		stream := []string{"orders/42", "many/1", "new/1"}[i%3]
		resp, body := post(t, src.URL()+"/collect", map[string]string{"Fossil-Stream": stream, "Content-Type": "application/cloudevents+json"},
			fmt.Sprintf(`{"specversion":"1.0","id":"n%d","source":"/inc","type":"t","data":{"i":%d}}`, i, i))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("collect: %d %s", resp.StatusCode, body)
		}
	}
	resp, body := post(t, src.URL()+"/collect", map[string]string{"Fossil-Stream": "many/1", "Fossil-Replace": "true", "Content-Type": "application/cloudevents+json"},
		`{"specversion":"1.0","id":"n1","source":"/inc","type":"t","data":{"i":"[redacted]"}}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("replace: %d %s", resp.StatusCode, body)
	}

	// An increment that does not start right after the copy's newest
	// event is refused, and changes nothing.
	_, gap, _ := fossilCmd(t, "", "export", "--url", src.URL(), "--after", "27")
	if code, _, errOut := fossilCmd(t, gap, "import", "--url", dst.URL()); code != 1 || !strings.Contains(errOut, "409") || !strings.Contains(errOut, "--after 25") {
		t.Fatalf("import of a gap: exit %d %q", code, errOut)
	}

	code, inc, errOut := fossilCmd(t, "", "export", "--url", src.URL(), "--after", "25")
	if code != 0 || !strings.Contains(errOut, "exported 7 events") {
		t.Fatalf("incremental export: exit %d %q", code, errOut)
	}
	if n := strings.Count(inc, `{"fossilreplacement":`); n != 2 {
		t.Fatalf("the incremental export has %d replacement records, want the whole chain (2):\n%s", n, inc)
	}
	code, out, errOut := fossilCmd(t, inc, "import", "--url", dst.URL())
	if code != 0 || strings.TrimSpace(out) != `{"events":7,"streams":3,"replacements":1}` {
		t.Fatalf("incremental import: exit %d %q %q", code, out, errOut)
	}
	want, got := reads(t, src.URL()), reads(t, dst.URL())
	for _, path := range []string{"/checkpoint", "/events/30/proof", "/events/27/proof", "/proofs/consistency?from=25&to=32", "/streams/new%2F1/events", "/streams/orders%2F42/events"} {
		want[path], got[path] = get(t, src.URL()+path), get(t, dst.URL()+path)
		if path == "/checkpoint" { // signed by each server's own key
			want[path], got[path] = bytes.Split(want[path], []byte("\n\n"))[0], bytes.Split(got[path], []byte("\n\n"))[0]
		}
	}
	for path := range want {
		if !bytes.Equal(want[path], got[path]) {
			t.Errorf("GET %s after the incremental import:\n%s\nwant\n%s", path, got[path], want[path])
		}
	}
	if !bytes.Contains(got["/checkpoint"], []byte("\n32\n")) {
		t.Errorf("checkpoint %s, want size 32", got["/checkpoint"])
	}
	// The same increment twice: the copy moved on, so it is refused.
	if code, _, errOut := fossilCmd(t, inc, "import", "--url", dst.URL()); code != 1 || !strings.Contains(errOut, "409") {
		t.Fatalf("the same increment again: exit %d %q", code, errOut)
	}
	// Nothing new at the source: the increment is the chain alone, which
	// the copy holds.
	_, none, _ := fossilCmd(t, "", "export", "--url", src.URL(), "--after", "32")
	if code, out, errOut := fossilCmd(t, none, "import", "--url", dst.URL()); code != 0 || strings.TrimSpace(out) != `{"events":0,"streams":0,"replacements":0}` {
		t.Fatalf("an empty increment: exit %d %q %q\n%s", code, out, errOut, none)
	}
	// Appends on the copy continue it.
	resp, body = post(t, dst.URL()+"/collect", map[string]string{"Fossil-Stream": "new/1", "Fossil-Expected-Sequence-Number": "3", "Content-Type": "application/cloudevents+json"},
		`{"specversion":"1.0","id":"after","source":"/inc","type":"t"}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Fossil-Event-Number") != "33" {
		t.Fatalf("append after the incremental import: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	// An event the copy already holds, replaced at the source since:
	// an increment cannot carry that, and says to take a whole export.
	src2 := startTestServer(t)
	populate(t, src2.URL())
	dst2 := startTestServer(t)
	_, base2, _ := fossilCmd(t, "", "export", "--url", src2.URL())
	if code, _, errOut := fossilCmd(t, base2, "import", "--url", dst2.URL()); code != 0 {
		t.Fatalf("base import: %q", errOut)
	}
	post(t, src2.URL()+"/collect", map[string]string{"Fossil-Stream": "many/0", "Content-Type": "application/cloudevents+json"}, `{"specversion":"1.0","id":"x","source":"/inc","type":"t"}`)
	resp, body = post(t, src2.URL()+"/collect", map[string]string{"Fossil-Stream": "orders/42", "Fossil-Replace": "true", "Content-Type": "application/cloudevents+json"},
		`{"specversion":"1.0","id":"o3","source":"/shop","type":"order.note","data":"[redacted]"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("replace: %d %s", resp.StatusCode, body)
	}
	_, inc2, _ := fossilCmd(t, "", "export", "--url", src2.URL(), "--after", "25")
	if code, _, errOut := fossilCmd(t, inc2, "import", "--url", dst2.URL()); code != 1 || !strings.Contains(errOut, "400") || !strings.Contains(errOut, "whole export") {
		t.Fatalf("increment with an old event replaced: exit %d %q", code, errOut)
	}
	if body := get(t, dst2.URL()+"/events?after=25"); string(body) != "[]\n" {
		t.Fatalf("a refused increment left events: %s", body)
	}
}

func TestSubscriptionsCommand(t *testing.T) {
	srv := startTestServer(t)
	u := srv.URL()
	code, out, errOut := fossilCmd(t, `{"protocol":"SSE","config":{"streams":"orders/{id}","startafter":"0"}}`, "subscriptions", "create", "--url", u)
	if code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("create: exit %d %q %q", code, out, errOut)
	}
	var created struct {
		ID     string            `json:"id"`
		Config map[string]string `json:"config"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" || created.Config["streams"] != "orders/{id}" {
		t.Fatalf("create printed %q: %v", out, err)
	}
	if code, out, _ := fossilCmd(t, "", "subscriptions", "--url", u); code != 0 || !strings.Contains(out, `"id":"`+created.ID+`"`) || strings.Count(out, "\n") != 1 {
		t.Fatalf("list: exit %d %q", code, out)
	}
	if code, out, _ := fossilCmd(t, "", "subscriptions", "get", "--url", u, created.ID); code != 0 || !strings.Contains(out, `"status":{"state":"active"`) {
		t.Fatalf("get: exit %d %q", code, out)
	}
	if code, out, errOut := fossilCmd(t, "", "subscriptions", "parked", "--url", u, created.ID); code != 0 || out != "" {
		t.Fatalf("parked: exit %d %q %q", code, out, errOut)
	}
	if code, _, errOut := fossilCmd(t, "", "subscriptions", "replay", "--url", u, created.ID); code != 0 || !strings.Contains(errOut, "replaying") {
		t.Fatalf("replay: exit %d %q", code, errOut)
	}
	if code, out, _ := fossilCmd(t, "", "subscriptions", "delete", "--url", u, created.ID); code != 0 || !strings.Contains(out, created.ID) {
		t.Fatalf("delete: exit %d %q", code, out)
	}
	if code, _, errOut := fossilCmd(t, "", "subscriptions", "get", "--url", u, created.ID); code != 1 || !strings.Contains(errOut, "404") {
		t.Fatalf("get after delete: exit %d %q", code, errOut)
	}
	if code, _, errOut := fossilCmd(t, `{"protocol":"SMTP"}`, "subscriptions", "create", "--url", u); code != 1 || !strings.Contains(errOut, "400") {
		t.Fatalf("bad definition: exit %d %q", code, errOut)
	}
	for _, args := range [][]string{{"subscriptions", "frob"}, {"subscriptions", "get"}, {"subscriptions", "parked", "a", "b"}} {
		if code, _, errOut := fossilCmd(t, "not json", append(args, "--url", u)...); code != 2 {
			t.Fatalf("%v: exit %d %q, want 2", args, code, errOut)
		}
	}
	if code, _, _ := fossilCmd(t, "not json", "subscriptions", "create", "--url", u); code != 2 {
		t.Fatalf("create from non-JSON: exit %d, want 2", code)
	}
}
