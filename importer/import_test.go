package importer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/importer"
	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
)

// export renders n events over streams streams as `fossil export` writes
// them, each with about size bytes of JSON data.
func export(n, streams, size int) []byte { return exportTree(n, streams, size, false) }

// exportTree is export, with each event's salt and leaf hash when tree is
// set, as `fossil export` writes a log that has its Merkle tree.
func exportTree(n, streams, size int, tree bool) []byte {
	var b bytes.Buffer
	seqs := make([]int64, streams)
	pad := strings.Repeat("x", size)
	for i := range n {
		s := i % streams
		seqs[s]++
		doc := fmt.Sprintf(`{"specversion":"1.0","id":"e%d","source":"/import","type":"t","time":"2026-01-02T03:04:05Z","datacontenttype":"application/json","data":{"i":%d,"pad":%q}}`, i, i, pad)
		e := fossil.Event{Number: int64(i + 1), Stream: fmt.Sprintf("import/%d", s), Sequence: seqs[s], Doc: []byte(doc)}
		line := e.AppendJSON(nil)
		if tree {
			salt := make([]byte, fossil.SaltSize)
			binary.BigEndian.PutUint64(salt, uint64(i))
			leaf, err := e.LeafHash(salt)
			if err != nil {
				panic(err)
			}
			line = fmt.Appendf(line[:len(line)-1], `,"fossilsalt":"%s","fossilleafhash":"%s"}`,
				base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(leaf[:]))
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func postImport(t testing.TB, url string, body []byte, contentType string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/import", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestImportAnswers(t *testing.T) {
	srv := testserver.Start(t)
	if code, body := postImport(t, srv.URL, export(3, 2, 10), "text/csv"); code != http.StatusUnsupportedMediaType {
		t.Fatalf("wrong media type: %d %s", code, body)
	}
	code, body := postImport(t, srv.URL, []byte("{}\n"), "application/x-ndjson")
	var p struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(body, &p); err != nil || code != http.StatusBadRequest || !strings.Contains(p.Detail, "line 1") {
		t.Fatalf("bad line: %d %s", code, body)
	}
	code, body = postImport(t, srv.URL, export(30, 4, 10), "application/x-ndjson; charset=utf-8")
	if code != http.StatusOK || string(body) != `{"events":30,"streams":4,"replacements":0}`+"\n" {
		t.Fatalf("import: %d %s", code, body)
	}
	// Live readers see the imported log.
	sse := srv.OpenSSE(t, "/sse?stream=import%2F%7Bn%7D", "Last-Event-Id", "28")
	frames := sse.Next(t, 2, 10*time.Second)
	if frames[0].Number() != 29 || frames[1].Number() != 30 {
		t.Fatalf("frames %v", frames)
	}
	// And the appender continues after it.
	if n := srv.MustPost(t, "import/0", testserver.Event{ID: "after"}); n != 31 {
		t.Fatalf("append after import got number %d, want 31", n)
	}
	if code, _ := postImport(t, srv.URL, export(1, 1, 1), "application/x-ndjson"); code != http.StatusConflict {
		t.Fatalf("import into a non-empty store: %d", code)
	}
}

// BenchmarkImport restores 100,000 events of about 200 bytes of data into
// an empty store through POST /import; it reports events/s. Raw is the
// same rows copied straight into fossil_events with pgx, in the same run:
// the floor that PostgreSQL sets on this machine.
func BenchmarkImport(b *testing.B) {
	const n = 100_000
	body := exportTree(n, 1000, 200, true)
	b.Run("Raw", func(b *testing.B) {
		rows := make([][]any, 0, n)
		for line := range bytes.Lines(body) {
			item, err := importer.ParseLine("line", line)
			if err != nil {
				b.Fatal(err)
			}
			e := item.Event
			rows = append(rows, []any{e.Number, e.Stream, e.Sequence, e.ID, e.Source, e.Type, nil, e.Time, nil, e.Doc, e.Salt})
		}
		var total time.Duration
		for b.Loop() {
			b.StopTimer()
			pool := dbtest.NewPool(b)
			b.StartTimer()
			start := time.Now()
			_, err := pool.CopyFrom(context.Background(), pgx.Identifier{"fossil_events"},
				[]string{"number", "stream", "sequence", "id", "source", "type", "subject", "time", "expect_ack", "doc", "salt"}, pgx.CopyFromRows(rows))
			total += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
	})
	b.Run("Fossil", benchmarkImport(body, n))
}

func benchmarkImport(body []byte, n int) func(b *testing.B) {
	return func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		var total time.Duration
		for b.Loop() {
			b.StopTimer()
			srv := testserver.Start(b)
			b.StartTimer()
			start := time.Now()
			code, out := postImport(b, srv.URL, body, "application/x-ndjson")
			total += time.Since(start)
			if code != http.StatusOK {
				b.Fatalf("import: %d %s", code, out)
			}
		}
		b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
	}
}

// TestImportNamesTheBadLine: lines are parsed in parallel, in chunks; the
// error still names the first bad line, and nothing is imported.
func TestImportNamesTheBadLine(t *testing.T) {
	srv := testserver.Start(t)
	body := exportTree(2000, 7, 10, true)
	lines := bytes.SplitAfter(body, []byte("\n"))
	for _, bad := range []int{1, 700, 1999} {
		broken := bytes.Join(append(append(append([][]byte{}, lines[:bad-1]...), []byte("{\"x\":1}\n")), lines[bad:]...), nil)
		code, out := postImport(t, srv.URL, broken, "application/x-ndjson")
		if code != http.StatusBadRequest || !strings.Contains(string(out), fmt.Sprintf(`line %d`, bad)) {
			t.Fatalf("line %d broken: %d %s", bad, code, out)
		}
	}
	code, out := postImport(t, srv.URL, body, "application/x-ndjson")
	if code != http.StatusOK || string(out) != `{"events":2000,"streams":7,"replacements":0}`+"\n" {
		t.Fatalf("import after refused ones: %d %s", code, out)
	}
	// Continued by the next events (an incremental export), in chunks too.
	code, out = postImport(t, srv.URL, exportTree(3000, 7, 10, true)[len(body):], "application/x-ndjson")
	if code != http.StatusOK || string(out) != `{"events":1000,"streams":7,"replacements":0}`+"\n" {
		t.Fatalf("incremental import: %d %s", code, out)
	}
	var head struct {
		Number int64 `json:"fossileventnumber"`
	}
	resp, err := http.Get(srv.URL + "/events/3000")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&head); err != nil || head.Number != 3000 {
		t.Fatalf("event 3000: %d %v %+v", resp.StatusCode, err, head)
	}
}
