package cmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/internal/dbtest"
)

// verifyLog is a server on a fresh database holding 30 events in three
// streams (event 12 replaced with the server's consent), signed with a key
// from `fossil keygen`.
type verifyLog struct {
	srv  *Server
	db   string
	key  string // verifier key
	pool *pgxpool.Pool
}

func newVerifyLog(t *testing.T) *verifyLog {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "signer.key")
	var out bytes.Buffer
	if code := run(context.Background(), []string{"keygen", "--output", keyFile}, &out, os.Stderr, envOf(nil)); code != 0 {
		t.Fatalf("keygen exit %d", code)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	l := &verifyLog{db: dbtest.NewDB(t), key: strings.TrimSpace(out.String())}
	l.start(t, keyFile)
	for i := 1; i <= 30; i++ {
		l.post(t, fmt.Sprintf("s/%d", i%3), fmt.Sprint(i), fmt.Sprintf(`{"i":%d}`, i))
	}
	// Event 12 is in stream s/0 with id 12.
	l.post(t, "s/0", "12", `{"erased":true}`, "Fossil-Replace", "true")
	pool, err := pgxpool.New(context.Background(), l.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	l.pool = pool
	return l
}

func (l *verifyLog) start(t *testing.T, keyFile string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DatabaseURL, cfg.Addr, cfg.SigningKeyFile = l.db, "127.0.0.1:0", keyFile
	srv := NewServer(cfg, nil)
	if err := srv.Run(context.Background()); err != nil {
		_ = srv.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	l.srv = srv
}

func (l *verifyLog) post(t *testing.T, stream, id, data string, headers ...string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, l.srv.URL()+"/collect", strings.NewReader(data))
	for k, v := range map[string]string{"Fossil-Stream": stream, "ce-specversion": "1.0", "ce-id": id, "ce-source": "/verify", "ce-type": "t", "Content-Type": "application/json"} {
		req.Header.Set(k, v)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("post %s: %d %s", id, resp.StatusCode, b)
	}
}

// verify runs `fossil verify` with args and returns its exit code and
// output.
func verify(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"verify"}, args...), &out, &errOut, envOf(nil))
	return code, out.String() + errOut.String()
}

// TestVerify: an untouched log verifies online (with the key pinned, or
// trusted on first use) and offline, reporting the authorised
// replacement, and a checkpoint kept before a replacement stays
// consistent with the later ones.
func TestVerify(t *testing.T) {
	t.Parallel()
	l := newVerifyLog(t)
	prev := filepath.Join(t.TempDir(), "checkpoint")
	for _, args := range [][]string{
		{"--url", l.srv.URL(), "--key", l.key, "--previous", prev},
		{"--url", l.srv.URL()},
		{"--database-url", l.db},
	} {
		code, out := verify(t, args...)
		if code != 0 || !strings.Contains(out, "OK: 30 events verified") || !strings.Contains(out, "1 replaced events (authorised, in the replacement chain): 12") {
			t.Fatalf("verify %v: exit %d\n%s", args, code, out)
		}
	}
	if b, err := os.ReadFile(prev); err != nil || !bytes.HasPrefix(b, []byte("fossil\n30\n")) {
		t.Fatalf("--previous file: %q %v", b, err)
	}
	// More events and another replacement: the kept checkpoint (30 events,
	// one replacement) is still consistent.
	l.post(t, "s/1", "31", `{"i":31}`)
	l.post(t, "s/1", "4", `{"erased":true}`, "Fossil-Replace", "true")
	l.post(t, "s/1", "32", `{"i":32}`)
	// Structured and batched events, with the attributes and data kinds
	// whose leaves the collector builds while encoding the document.
	l.post(t, "s/2", "-", `{"specversion":"1.0","id":"33","source":"/verify","type":"t","subject":"s\u00e9","time":"2024-01-02T03:04:05.5+01:00","ext":5,"flag":true,"word":"w","datacontenttype":"text/plain","data":"x \"y\""}`,
		"Content-Type", "application/cloudevents+json")
	l.post(t, "s/2", "-", `[{"specversion":"1.0","id":"34","source":"/verify","type":"t","dataschema":"http://x/s.json","data":{"a" : [1, 2]}},{"specversion":"1.0","id":"35","source":"/verify","type":"t","data_base64":"AAEC"}]`,
		"Content-Type", "application/cloudevents-batch+json")
	code, out := verify(t, "--url", l.srv.URL(), "--key", l.key, "--previous", prev)
	if code != 0 || !strings.Contains(out, "OK: 35 events verified") || !strings.Contains(out, "consistent with the previous checkpoint of 30 events") || !strings.Contains(out, "2 replaced events (authorised, in the replacement chain): 4, 12") {
		t.Fatalf("verify after more replacements: exit %d\n%s", code, out)
	}
	code, out = verify(t, "--database-url", l.db, "--key", l.key, "--previous", prev)
	if code != 0 || !strings.Contains(out, "consistent with the previous checkpoint of 35 events") {
		t.Fatalf("offline verify against the kept checkpoint: exit %d\n%s", code, out)
	}
	// A wrong key is refused.
	other := filepath.Join(t.TempDir(), "other.key")
	var vk bytes.Buffer
	run(context.Background(), []string{"keygen", "--output", other}, &vk, io.Discard, envOf(nil))
	if code, out := verify(t, "--url", l.srv.URL(), "--key", strings.TrimSpace(vk.String())); code != 1 || !strings.Contains(out, "signature") {
		t.Fatalf("wrong key: exit %d\n%s", code, out)
	}
}

// TestVerifyTampered changes the database behind Fossil's back, in every
// way the issue names, and requires `fossil verify` (online and offline)
// to fail naming the first event that no longer verifies.
func TestVerifyTampered(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		sql   string
		first int64
	}{
		{"data", `UPDATE fossil_events SET doc = replace(doc::text, '"i":7', '"i":8')::json WHERE number = 7`, 7},
		{"type", `UPDATE fossil_events SET type = 'x', doc = replace(doc::text, '"type":"t"', '"type":"x"')::json WHERE number = 9`, 9},
		{"stream", `UPDATE fossil_events SET stream = 's/9' WHERE number = 11`, 11},
		{"number", `UPDATE fossil_events SET number = 1000 WHERE number = 15`, 15},
		{"deleted", `DELETE FROM fossil_events WHERE number = 20`, 20},
		{"swapped", `UPDATE fossil_events SET number = 100000 WHERE number = 22;
			UPDATE fossil_events SET number = 22 WHERE number = 23;
			UPDATE fossil_events SET number = 23 WHERE number = 100000`, 22},
		{"replaced-changed", `UPDATE fossil_events SET doc = replace(doc::text, 'true', 'false')::json WHERE number = 12`, 12},
		{"salt", `UPDATE fossil_events SET salt = sha256(salt) WHERE number = 3`, 3},
		{"sequence", `UPDATE fossil_events SET sequence = sequence + 100 WHERE number = 26`, 26},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newVerifyLog(t)
			if _, err := l.pool.Exec(context.Background(), tc.sql); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"--url", l.srv.URL(), "--key", l.key}, {"--database-url", l.db}} {
				code, out := verify(t, args...)
				want := fmt.Sprintf("first event that does not verify: %d\n", tc.first)
				if code != 1 || !strings.Contains(out, want) {
					t.Errorf("verify %v: exit %d, want 1 and %q:\n%s", args, code, want, out)
				}
			}
		})
	}
}
