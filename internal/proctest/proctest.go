// Package proctest runs `fossil server` as operating-system processes of the
// built binary, for tests that kill or restart a process. Test-only; it
// imports nothing of Fossil, so every package's tests may use it (cmd's
// included).
package proctest

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build builds the fossil binary of the module containing the working
// directory into a temporary directory and returns its path.
func Build(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "fossil")
	c := exec.Command("go", "build", "-o", bin, ".")
	c.Dir = root
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// Process is a running `fossil server`.
type Process struct {
	URL  string
	Cmd  *exec.Cmd
	Done chan struct{} // closed when the process has exited
	Err  error         // its exit status, once Done is closed
	logs lockedBuffer
}

// Start runs bin as `fossil server` on a free loopback port with the
// environment env added (FOSSIL_LOG_LEVEL=warn unless env sets it) and
// waits until /readyz answers 200. When the test ends the process gets
// SIGTERM (SIGKILL after 15 s); its log is printed if the test failed.
func Start(t testing.TB, bin string, env ...string) *Process {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	p := &Process{URL: "http://" + addr, Done: make(chan struct{})}
	p.Cmd = exec.Command(bin, "server", "--addr", addr)
	p.Cmd.Env = append(append(os.Environ(), "FOSSIL_LOG_LEVEL=warn"), env...)
	p.Cmd.Stdout, p.Cmd.Stderr = &p.logs, &p.logs
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.Err = p.Cmd.Wait(); close(p.Done) }()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.Done:
		case <-time.After(15 * time.Second):
			_ = p.Cmd.Process.Kill()
			<-p.Done
		}
		if t.Failed() {
			t.Logf("server %s log:\n%s", addr, p.Logs())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !p.ready(t) {
		if time.Now().After(deadline) {
			t.Fatalf("server %s not ready after 60s:\n%s", addr, p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// ready reports whether p answers /readyz with 200; it fails the test if p
// has exited.
func (p *Process) ready(t testing.TB) bool {
	select {
	case <-p.Done:
		t.Fatalf("server %s exited: %v\n%s", p.URL, p.Err, p.Logs())
	default:
	}
	res, err := http.Get(p.URL + "/readyz")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done
}

// Logs returns what the process has written so far.
func (p *Process) Logs() string { return p.logs.String() }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
