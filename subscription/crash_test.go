package subscription_test

// The crash test runs real `fossil server` processes and SIGKILLs the one
// delivering. It takes tens of seconds (a build, two processes, a lease
// expiry) and runs in the default suite; `make chaos-subscriptions` runs it
// alone, with TestTakeoverAfterLostLease and
// TestDeliveryRidesOutKilledConnections (pg_terminate_backend).

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
)

type process struct {
	cmd  *exec.Cmd
	url  string
	logs *bytes.Buffer
	done chan struct{} // closed when the process has exited
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fossil")
	c := exec.Command("go", "build", "-o", bin, ".")
	c.Dir = ".."
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startProcess(t *testing.T, bin, dbURL string) *process {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	p := &process{url: "http://" + addr, logs: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "server", "--addr", addr)
	p.cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FOSSIL_SUBSCRIPTION_LEASE=2s", "FOSSIL_LOG_LEVEL=warn")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("server %s log:\n%s", addr, p.logs.String())
		}
	})
	testserver.Eventually(t, 60*time.Second, "server ready", func() bool {
		res, err := http.Get(p.url + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return p
}

func postTo(t *testing.T, url, stream, id string) int64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/collect", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Fossil-Stream", stream)
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", id)
	req.Header.Set("ce-source", "/chaos")
	req.Header.Set("ce-type", "chaos.event")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n, err := strconv.ParseInt(resp.Header.Get("Fossil-Event-Number"), 10, 64)
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("post: %d", resp.StatusCode)
	}
	return n
}

// TestChaosSIGKILLDeliveringProcess kills the process that delivers a
// subscription in the middle of the log; the second process takes over.
func TestChaosSIGKILLDeliveringProcess(t *testing.T) {
	bin := buildBinary(t)
	dbURL := dbtest.NewDB(t)
	a := startProcess(t, bin, dbURL)
	wh := slowWebhook(t)
	var want []int64
	for i := range 600 {
		want = append(want, postTo(t, a.url, fmt.Sprintf("s%d", i%20), fmt.Sprintf("a%d", i)))
	}
	code, _, out := call(t, http.MethodPost, a.url+"/subscriptions", httpSub(wh.URL, map[string]any{"config": map[string]string{"startafter": "0", "maxinflight": "4"}}))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, out)
	}
	// a holds the lease (b does not exist yet) and is delivering.
	wh.waitAccepted(t, 100, 30*time.Second)
	b := startProcess(t, bin, dbURL)
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.done
	killedAt := len(wh.accepted())
	for i := range 200 {
		want = append(want, postTo(t, b.url, fmt.Sprintf("s%d", i%20), fmt.Sprintf("b%d", i)))
	}
	testserver.Eventually(t, 60*time.Second, "every event delivered", func() bool {
		seen := map[int64]bool{}
		for _, n := range wh.accepted() {
			seen[n] = true
		}
		return len(seen) >= len(want)
	})
	checkAtLeastOnce(t, wh, want)
	t.Logf("killed after %d deliveries; %d requests for %d events in all", killedAt, len(wh.deliveries()), len(want))
}
