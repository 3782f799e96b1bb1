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
	"sync"
	"testing"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/proctest"
)

// TestTreeTwoProcesses: two `fossil server` processes of the built binary
// append to one database at the same time, single events and batches,
// through both. The result is one tree: `fossil verify` checks every event
// through either process and offline against the database, the two
// processes sign the same checkpoint, and a checkpoint taken from one
// process in the middle of the load is consistent with the final tree
// served by the other.
func TestTreeTwoProcesses(t *testing.T) {
	t.Parallel()
	bin := proctest.Build(t)
	db := dbtest.NewDB(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "signer.key")
	var vkey bytes.Buffer
	if code := run(context.Background(), []string{"keygen", "--output", keyFile}, &vkey, os.Stderr, envOf(nil)); code != 0 {
		t.Fatalf("keygen exit %d", code)
	}
	key := strings.TrimSpace(vkey.String())
	env := []string{"DATABASE_URL=" + db, "FOSSIL_SIGNING_KEY_FILE=" + keyFile}
	procs := []*proctest.Process{proctest.Start(t, bin, env...), proctest.Start(t, bin, env...)}

	const writers, rounds = 8, 40 // each round: one single event, one batch of 4
	want := writers * rounds * 5
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	mid := make(chan struct{})
	var midOnce sync.Once
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			p := procs[w%2]
			for r := 0; r < rounds; r++ {
				stream := fmt.Sprintf("acct/%d", (w*rounds+r)%7)
				if err := postSingle(p.URL, stream, fmt.Sprintf("w%d-r%d", w, r)); err != nil {
					errs <- err
					return
				}
				if err := postBatch(p.URL, stream, fmt.Sprintf("w%d-r%d-b", w, r), 4); err != nil {
					errs <- err
					return
				}
				if w == 0 && r == rounds/2 {
					midOnce.Do(func() { close(mid) })
				}
			}
		}(w)
	}
	// A checkpoint taken from the first process while both are appending.
	prev := filepath.Join(dir, "previous")
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-mid:
	case <-finished:
		t.Fatal("the writers ended before the middle of the load")
	}
	if code, out := verify(t, "--url", procs[0].URL, "--key", key, "--previous", prev); code != 0 {
		t.Fatalf("verify during the load: exit %d\n%s", code, out)
	}
	<-finished
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, err := os.ReadFile(prev)
	if err != nil {
		t.Fatal(err)
	}
	midSize := strings.SplitN(string(b), "\n", 3)[1]

	okLine := fmt.Sprintf("OK: %d events verified", want)
	for i, args := range [][]string{
		{"--url", procs[1].URL, "--key", key, "--previous", prev},
		{"--url", procs[0].URL, "--key", key},
		{"--database-url", db, "--key", key},
	} {
		code, out := verify(t, args...)
		if code != 0 || !strings.Contains(out, okLine) {
			t.Fatalf("verify %v: exit %d, want %q\n%s", args, code, okLine, out)
		}
		if i == 0 && !strings.Contains(out, "consistent with the previous checkpoint of "+midSize+" events") {
			t.Fatalf("the checkpoint of %s events taken from process 1 is not reported consistent with process 2's tree:\n%s", midSize, out)
		}
	}
	// Both processes sign the same tree: the same checkpoint, byte for byte.
	var notes []string
	for _, p := range procs {
		res, err := http.Get(p.URL + "/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s/checkpoint: %d %s", p.URL, res.StatusCode, body)
		}
		notes = append(notes, string(body))
	}
	if notes[0] != notes[1] {
		t.Fatalf("the two processes sign different checkpoints:\n%s\n---\n%s", notes[0], notes[1])
	}
	if !strings.HasPrefix(notes[0], fmt.Sprintf("fossil\n%d\n", want)) {
		t.Fatalf("checkpoint does not cover the %d events:\n%s", want, notes[0])
	}
}

func postSingle(url, stream, id string) error {
	req, _ := http.NewRequest(http.MethodPost, url+"/collect", strings.NewReader(`{"id":"`+id+`"}`))
	for k, v := range map[string]string{"Fossil-Stream": stream, "ce-specversion": "1.0", "ce-id": id, "ce-source": "/two-processes", "ce-type": "t", "Content-Type": "application/json"} {
		req.Header.Set(k, v)
	}
	return doRequest(req)
}

func postBatch(url, stream, prefix string, n int) error {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"specversion":"1.0","id":"%s-%d","source":"/two-processes","type":"t","data":{"i":%d}}`, prefix, i, i)
	}
	b.WriteByte(']')
	req, _ := http.NewRequest(http.MethodPost, url+"/collect", strings.NewReader(b.String()))
	req.Header.Set("Fossil-Stream", stream)
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	return doRequest(req)
}

func doRequest(req *http.Request) error {
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL, res.StatusCode, body)
	}
	return nil
}
