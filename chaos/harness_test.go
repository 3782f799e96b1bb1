//go:build chaos

// Package chaos is Fossil's reliability suite: real server processes
// (built from this tree) on a PostgreSQL cluster of its own, killed,
// restarted, starved of disk and flooded with hostile or greedy clients.
// Run it with `make chaos` (about ten minutes); the figures it prints
// (lines starting with FIGURE) are kept in docs/RELIABILITY.md. Every
// target is on loopback.
package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	fossilBin string   // the server binary built from this tree
	pg        *cluster // the suite's PostgreSQL
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fossil-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// FOSSIL_CHAOS_BIN runs the suite against another build (an older
	// release, to compare figures); by default it builds this tree.
	if fossilBin = os.Getenv("FOSSIL_CHAOS_BIN"); fossilBin == "" {
		fossilBin = filepath.Join(dir, "fossil")
		build := exec.Command("go", "build", "-o", fossilBin, "..")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: build the server:", err)
			return 1
		}
	}
	pg, err = startCluster(filepath.Join(dir, "pg"), "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: PostgreSQL:", err)
		return 1
	}
	defer pg.stop()
	return m.Run()
}

// cluster is a PostgreSQL server run with pg_ctl on a loopback TCP port,
// so that the tests can restart it (fast or immediate) and the servers
// reconnect to the same address.
type cluster struct {
	bin, dir string
	port     int
	runAs    string // "postgres" when the suite runs as root
}

func pgBinDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) == 0 {
		return "", fmt.Errorf("pg_ctl not found: install the PostgreSQL server programs (apt-get install postgresql)")
	}
	sort.Strings(matches)
	return filepath.Dir(matches[len(matches)-1]), nil
}

func startCluster(dir, extraConf string) (*cluster, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, dir: dir, port: freePort()}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root needs the system user postgres to run PostgreSQL: %w", err)
		}
		c.runAs = "postgres"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if c.runAs != "" {
		if out, err := exec.Command("chown", "-R", c.runAs, dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown: %v: %s", err, out)
		}
	}
	if out, err := c.cmd("initdb", "-D", dir, "-U", "postgres", "-A", "trust", "--no-sync").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = ''\nmax_connections = 400\nshared_buffers = 128MB\n%s", c.port, extraConf)
	f, err := os.OpenFile(filepath.Join(dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, _ = f.WriteString(conf)
	f.Close()
	return c, c.ctl("start", "-l", filepath.Join(dir, "log"))
}

func (c *cluster) cmd(prog string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, prog)
	if c.runAs != "" {
		return exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (c *cluster) ctl(args ...string) error {
	args = append([]string{"-D", c.dir, "-w", "-t", "60"}, args...)
	if out, err := c.cmd("pg_ctl", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *cluster) stop() { _ = c.ctl("stop", "-m", "immediate") }

func (c *cluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// createDB makes a fresh database for one test.
func (c *cluster) createDB(t *testing.T) string {
	t.Helper()
	name := "chaos_" + strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
	conn, err := pgx.Connect(context.Background(), c.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return c.url(name)
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// server is one Fossil process.
type server struct {
	cmd  *exec.Cmd
	url  string
	addr string
	log  *os.File
	done chan struct{}
}

// startServer runs the binary on dbURL with the default configuration
// (plus env) and waits until it answers /healthz.
func startServer(t *testing.T, dbURL, addr string, env ...string) *server {
	t.Helper()
	if addr == "" {
		addr = fmt.Sprintf("127.0.0.1:%d", freePort())
	}
	logf, err := os.CreateTemp(t.TempDir(), "server-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fossilBin, "server")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "FOSSIL_ADDR="+addr, "FOSSIL_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, url: "http://" + addr, addr: addr, log: logf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("server exited at start:\n%s", b)
		default:
		}
		if resp, err := http.Get(s.url + "/healthz"); err == nil {
			resp.Body.Close()
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("server did not answer /healthz within 60s")
	return nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// kill9 ends the process at once, as a crash would.
func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// rssMB returns the resident set of pid in MB.
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// peakRSS samples pid's RSS every 50 ms until stop is called, which
// returns the peak in MB.
func peakRSS(pid int) (stop func() float64) {
	var mu sync.Mutex
	peak := 0.0
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if r := rssMB(pid); r > 0 {
				mu.Lock()
				peak = max(peak, r)
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// figure prints one measured figure for docs/RELIABILITY.md.
func figure(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	t.Log("FIGURE " + t.Name() + ": " + msg)
	fmt.Println("FIGURE " + t.Name() + ": " + msg)
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}

// post sends one binary-mode event.
func post(ctx context.Context, base, stream, id string, data []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/collect", strings.NewReader(string(data)))
	if err != nil {
		return nil, err
	}
	h := req.Header
	h.Set("Fossil-Stream", stream)
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", id)
	h.Set("ce-source", "/chaos")
	h.Set("ce-type", "chaos.event")
	h.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// ledger records every acknowledged event of the writers.
type ledger struct {
	mu         sync.Mutex
	acked      map[string]int64 // id → number
	retried    int              // requests sent again after an error or a 503
	duplicates int              // retries answered as duplicates (Fossil-Duplicate)
	unavail    int              // 503 answers
	other      map[int]int      // other statuses
}

func newLedger() *ledger { return &ledger{acked: map[string]int64{}, other: map[int]int{}} }

// writers runs n writers until ctx ends; each posts its own events one at
// a time and retries each (same id, same content) until it is answered 200.
func writers(ctx context.Context, n int, base func() string, l *ledger) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				id := fmt.Sprintf("w%d-%d", w, k)
				data := []byte(fmt.Sprintf(`{"w":%d,"k":%d}`, w, k))
				tries := 0
				for {
					if ctx.Err() != nil && tries == 0 {
						return
					}
					// An event sent once is retried to an answer, even after
					// ctx ends, so that the ledger knows its fate.
					rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					resp, err := post(rctx, base(), fmt.Sprintf("chaos/%d", w), id, data)
					cancel()
					tries++
					if err == nil && resp.StatusCode == http.StatusOK {
						num, _ := strconv.ParseInt(resp.Header.Get("Fossil-Event-Number"), 10, 64)
						l.mu.Lock()
						if prev, ok := l.acked[id]; ok && prev != num {
							l.other[-1]++ // renumbered: verify fails
						}
						l.acked[id] = num
						if tries > 1 {
							l.retried++
							if resp.Header.Get("Fossil-Duplicate") == "true" {
								l.duplicates++
							}
						}
						l.mu.Unlock()
						break
					}
					l.mu.Lock()
					switch {
					case err != nil:
					case resp.StatusCode == http.StatusServiceUnavailable:
						l.unavail++
					default:
						l.other[resp.StatusCode]++
					}
					l.mu.Unlock()
					if tries > 600 {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	return &wg
}

// verifyLog checks the log against the ledger: numbers dense from 1, every
// (id, source) once, every acknowledged event present with its number.
func verifyLog(t *testing.T, dbURL string, l *ledger) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT number, id FROM fossil_events ORDER BY number`)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]int64{}
	var n int64
	for rows.Next() {
		var num int64
		var id string
		if err := rows.Scan(&num, &id); err != nil {
			t.Fatal(err)
		}
		n++
		if num != n {
			t.Fatalf("hole or disorder: event %d at position %d", num, n)
		}
		if _, dup := byID[id]; dup {
			t.Fatalf("event id %s stored twice", id)
		}
		byID[id] = num
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.other[-1] > 0 {
		t.Fatalf("%d retries were answered with another number", l.other[-1])
	}
	for id, num := range l.acked {
		got, ok := byID[id]
		if !ok {
			t.Fatalf("acknowledged event %s (number %d) is lost", id, num)
		}
		if got != num {
			t.Fatalf("acknowledged event %s was numbered %d, is stored as %d", id, num, got)
		}
	}
	return int(n)
}

// sseFollower follows /sse?stream={+all} from the start, reconnecting with
// Last-Event-Id, and checks that numbers arrive one by one with no gap.
type sseFollower struct {
	mu     sync.Mutex
	last   int64
	gaps   []string
	drops  int
	cancel context.CancelFunc
	done   chan struct{}
}

func follow(base func() string) *sseFollower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &sseFollower{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for ctx.Err() == nil {
			f.once(ctx, base())
			if ctx.Err() == nil {
				f.mu.Lock()
				f.drops++
				f.mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	return f
}

func (f *sseFollower) once(ctx context.Context, base string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?stream=%7B%2Ball%7D", nil)
	f.mu.Lock()
	req.Header.Set("Last-Event-Id", strconv.FormatInt(f.last, 10))
	f.mu.Unlock()
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "id: ") {
			continue
		}
		n, _ := strconv.ParseInt(line[4:], 10, 64)
		f.mu.Lock()
		if n != f.last+1 {
			f.gaps = append(f.gaps, fmt.Sprintf("%d after %d", n, f.last))
		}
		f.last = n
		f.mu.Unlock()
	}
}

// waitFor waits until f has seen n.
func (f *sseFollower) waitFor(t *testing.T, n int64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		last := f.last
		f.mu.Unlock()
		if last >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Fatalf("SSE follower reached %d of %d", f.last, n)
}

func (f *sseFollower) stop() {
	f.cancel()
	<-f.done
}

func jsonBody(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
