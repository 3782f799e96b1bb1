// Command scale is the fill and measuring half of `make bench-scale`
// (bench/scale.sh): it fills a Fossil log through the HTTP batch path to a
// target size and measures, at that size, what issue 17 asks to stay flat:
// SSE catch-up for selective templates (a literal small stream, a literal
// 100k-event stream, a prefix template, a template without a literal
// prefix), a subscriber at the head, /events paging, /events/{n} and
// /streams/… reads. Appends are measured by `fossil bench` in the script.
//
// The fill is deterministic in the position of each event, so a log can be
// extended later: every target/130 events one event goes to hidden/<k>
// (≈130 events for "hidden/{id}"), every target/100 one to c<k>/needle
// (≈100 for "{cat}/needle"), every target/100 one to small/one, and
// 100,000 events (or a tenth of the log, whichever is less) go to big/one,
// in batches spread through the log; the rest go in batches to
// scale/s<k>, k drawn from a Zipf distribution over --streams streams.
//
// Only loopback targets are contacted.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fossil-events/fossil/loadgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

type config struct {
	url       string
	have      int64 // events already in the log
	target    int64 // fill up to this many
	streams   int
	zipf      float64
	batch     int
	clients   int
	dataBytes int
	measure   bool
	label     string
	fillMode  string
	serverPID int
}

func run() error {
	var c config
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8080", "Fossil base URL (loopback only)")
	flag.Int64Var(&c.have, "have", 0, "events already in the log (the fill resumes there)")
	flag.Int64Var(&c.target, "events", 10_000_000, "fill the log up to this many events")
	flag.IntVar(&c.streams, "streams", 100_000, "streams of the bulk of the log")
	flag.Float64Var(&c.zipf, "zipf", 1.1, "Zipf exponent s (> 1) of the stream choice")
	flag.IntVar(&c.batch, "batch", 100, "events per POST")
	flag.IntVar(&c.clients, "clients", 8, "concurrent writers")
	flag.IntVar(&c.dataBytes, "data-bytes", 500, "approximate size of each event's data")
	flag.BoolVar(&c.measure, "measure", false, "measure instead of filling")
	flag.StringVar(&c.label, "label", "", "label of the measurement (the log size)")
	flag.IntVar(&c.serverPID, "server-pid", 0, "the server's process id, to report its CPU time per event of the big/one replay (Linux /proc; 0: not reported)")
	flag.StringVar(&c.fillMode, "fill", "auto", "how to fill: import (POST /import of a generated export, an empty log only), http (POST /collect batches) or auto (import when the log is empty)")
	flag.Parse()
	u, err := url.Parse(c.url)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("refusing %s: only loopback targets", c.url)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	if c.measure {
		return measure(ctx, client, c)
	}
	return fill(ctx, client, c)
}

// job is one POST of the fill.
type job struct {
	stream string
	first  int64 // position of its first event
	n      int
}

// plan returns the jobs that take the log from have to target events.
func plan(ctx context.Context, c config, out chan<- job) {
	defer close(out)
	big := min(int64(100_000), c.target/10)
	every := func(k int64) int64 { return max(1, c.target/k) }
	hiddenEvery, needleEvery, smallEvery := every(130), every(100), every(100)
	bigEvery := max(1, c.target/max(1, big/int64(c.batch))) // one big batch per bigEvery events
	z := rand.NewZipf(rand.New(rand.NewPCG(uint64(c.have), 18)), c.zipf, 1, uint64(c.streams-1))
	p := c.have
	send := func(j job) bool {
		select {
		case out <- j:
			p += int64(j.n)
			return true
		case <-ctx.Done():
			return false
		}
	}
	var nextHidden, nextNeedle, nextSmall, nextBig = next(p, hiddenEvery), next(p, needleEvery), next(p, smallEvery), next(p, bigEvery)
	for p < c.target {
		var j job
		switch {
		case p >= nextHidden:
			j = job{stream: "hidden/" + strconv.FormatInt(p/hiddenEvery, 10), n: 1}
			nextHidden += hiddenEvery
		case p >= nextNeedle:
			j = job{stream: "c" + strconv.FormatInt(p/needleEvery, 10) + "/needle", n: 1}
			nextNeedle += needleEvery
		case p >= nextSmall:
			j = job{stream: "small/one", n: 1}
			nextSmall += smallEvery
		case p >= nextBig:
			j = job{stream: "big/one", n: c.batch}
			nextBig += bigEvery
		default:
			j = job{stream: "scale/s" + strconv.FormatUint(z.Uint64(), 10), n: c.batch}
		}
		j.n = int(min(int64(j.n), c.target-p))
		j.first = p
		if !send(j) {
			return
		}
	}
}

// next returns the first multiple of every after p.
func next(p, every int64) int64 { return (p/every + 1) * every }

func fill(ctx context.Context, client *http.Client, c config) error {
	if c.have >= c.target {
		fmt.Fprintf(os.Stderr, "scale: the log holds %d events, the target is %d: reusing it\n", c.have, c.target)
		return nil
	}
	switch c.fillMode {
	case "import", "auto":
		if c.have == 0 {
			return importFill(ctx, client, c)
		}
		if c.fillMode == "import" {
			return fmt.Errorf("--fill import needs an empty log; this one holds %d events", c.have)
		}
	case "http":
	default:
		return fmt.Errorf("--fill %q: want import, http or auto", c.fillMode)
	}
	jobs := make(chan job, 64)
	go plan(ctx, c, jobs)
	data := strings.Repeat("x", max(0, c.dataBytes-40))
	var done atomic.Int64
	var firstErr error
	var errMu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range c.clients {
		wg.Go(func() {
			var buf bytes.Buffer
			for j := range jobs {
				buf.Reset()
				buf.WriteByte('[')
				for i := range j.n {
					if i > 0 {
						buf.WriteByte(',')
					}
					fmt.Fprintf(&buf, `{"specversion":"1.0","id":"scale-%d","source":"bench/scale","type":"bench.scale","datacontenttype":"application/json","data":{"n":%d,"pad":"%s"}}`, j.first+int64(i), j.first+int64(i), data)
				}
				buf.WriteByte(']')
				if err := post(ctx, client, c.url, j.stream, buf.Bytes()); err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				done.Add(int64(j.n))
			}
		})
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	for {
		select {
		case <-finished:
			el := time.Since(start)
			fmt.Fprintf(os.Stderr, "scale: filled %d events in %s (%.0f events/s)\n", done.Load(), el.Round(time.Second), float64(done.Load())/el.Seconds())
			return firstErr
		case <-tick.C:
			n := done.Load()
			fmt.Fprintf(os.Stderr, "scale: %d/%d events (%.0f/s)\n", c.have+n, c.target, float64(n)/time.Since(start).Seconds())
		}
	}
}

func post(ctx context.Context, client *http.Client, base, stream string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/collect", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	req.Header.Set("Fossil-Stream", stream)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /collect %s: %d %s", stream, resp.StatusCode, b)
	}
	return nil
}

// result is one measured figure.
type result struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Events int     `json:"events,omitempty"`
}

func measure(ctx context.Context, client *http.Client, c config) error {
	var out []result
	add := func(name string, v float64, unit string, n int) {
		out = append(out, result{Name: name, Value: v, Unit: unit, Events: n})
		fmt.Fprintf(os.Stderr, "scale %s: %-40s %12.2f %s (%d events)\n", c.label, name, v, unit, n)
	}
	// Each catch-up reads until a marker event posted now to a stream the
	// template matches, so it reads the whole log up to the head.
	mark := strconv.FormatInt(time.Now().UnixNano(), 36)
	catchups := []struct{ name, template, marker string }{
		{"sse catch-up literal small stream", "small/one", "small/one"},
		{"sse catch-up prefix hidden/{id}", "hidden/{id}", "hidden/end-" + mark},
		{"sse catch-up no prefix {cat}/needle", "{cat}/needle", "end" + mark + "/needle"},
		{"sse catch-up literal big/one", "big/one", "big/one"},
	}
	for _, cu := range catchups {
		id := "marker-" + mark + "-" + cu.marker
		body := fmt.Sprintf(`[{"specversion":"1.0","id":%q,"source":"bench/scale","type":"bench.scale.marker","data":{}}]`, id)
		if err := post(ctx, client, c.url, cu.marker, []byte(body)); err != nil {
			return err
		}
		// Three times: the first warms the catalogue and the page cache;
		// the faster of the other two is reported (on a shared machine,
		// the one less delayed by other processes), with its CPU time.
		var el, cpu time.Duration
		var n int
		for i := range catchUpRuns {
			cpu0 := cpuTime(c.serverPID)
			e, k, err := catchUp(ctx, c.url, cu.template, 0, id)
			if err != nil {
				return fmt.Errorf("%s: %w", cu.name, err)
			}
			if i == 1 || (i > 1 && e < el) {
				el, n, cpu = e, k, cpuTime(c.serverPID)-cpu0
			}
		}
		add(cu.name+" (ms)", float64(el.Microseconds())/1000, "ms", n)
		if cu.template == "big/one" {
			add(cu.name+" (events/s)", float64(n)/el.Seconds(), "events/s", n)
			if c.serverPID > 0 {
				add(cu.name+" server CPU (µs/event)", float64(cpu.Nanoseconds())/1000/float64(n), "µs", n)
			}
		}
	}
	// The global replay of as many events, for comparison: {+all} from
	// 100,000 events (or a tenth of the log) before a marker at the head.
	{
		id := "marker-" + mark + "-all"
		body := fmt.Sprintf(`[{"specversion":"1.0","id":%q,"source":"bench/scale","type":"bench.scale.marker","data":{}}]`, id)
		if err := post(ctx, client, c.url, "all/end-"+mark, []byte(body)); err != nil {
			return err
		}
		head, err := loadgen.Head(ctx, client, c.url)
		if err != nil {
			return err
		}
		after := max(0, head-min(100_000, head/10))
		var el, cpu time.Duration
		var n int
		for i := range catchUpRuns {
			cpu0 := cpuTime(c.serverPID)
			e, k, err := catchUp(ctx, c.url, "{+all}", after, id)
			if err != nil {
				return fmt.Errorf("global replay: %w", err)
			}
			if i == 1 || (i > 1 && e < el) {
				el, n, cpu = e, k, cpuTime(c.serverPID)-cpu0
			}
		}
		add("sse catch-up {+all}, same count (events/s)", float64(n)/el.Seconds(), "events/s", n)
		if c.serverPID > 0 {
			add("sse catch-up {+all} server CPU (µs/event)", float64(cpu.Nanoseconds())/1000/float64(n), "µs", n)
		}
	}
	// A subscriber at the head: time from POST to the frame.
	{
		var lat []time.Duration
		for i := range 20 {
			l, err := atHead(ctx, client, c.url, mark+"-"+strconv.Itoa(i))
			if err != nil {
				return fmt.Errorf("subscriber at the head: %w", err)
			}
			lat = append(lat, l)
		}
		slices.Sort(lat)
		add("sse subscriber at head p50 (ms)", float64(lat[len(lat)/2].Microseconds())/1000, "ms", len(lat))
	}
	// The global log and single events.
	head, err := loadgen.Head(ctx, client, c.url)
	if err != nil {
		return err
	}
	for _, at := range []struct {
		name  string
		after int64
	}{{"GET /events?limit=1000 at start (ms)", 0}, {"GET /events?limit=1000 in the middle (ms)", head / 2}, {"GET /events?limit=1000 near the head (ms)", max(0, head-1000)}} {
		d, err := median(5, func() error {
			return get(ctx, client, c.url+"/events?limit=1000&after="+strconv.FormatInt(at.after, 10))
		})
		if err != nil {
			return err
		}
		add(at.name, float64(d.Microseconds())/1000, "ms", 1000)
	}
	d, err := median(200, func() error {
		return get(ctx, client, c.url+"/events/"+strconv.FormatInt(1+rand.Int64N(head), 10))
	})
	if err != nil {
		return err
	}
	add("GET /events/{n} random (ms)", float64(d.Microseconds())/1000, "ms", 1)
	d, err = median(5, func() error { return get(ctx, client, c.url+"/streams/big%2Fone/events?from=1&limit=1000") })
	if err != nil {
		return err
	}
	add("GET /streams/big%2Fone/events limit=1000 (ms)", float64(d.Microseconds())/1000, "ms", 1000)
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"label": c.label, "head": head, "results": out})
}

// catchUpRuns is how many times each catch-up runs: the first warms, the
// fastest of the others is reported.
const catchUpRuns = 3

// catchUp opens /sse on template after cursor and reads until the event
// with id arrives; it returns the time and the number of frames.
func catchUp(ctx context.Context, base, template string, after int64, id string) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?stream="+url.QueryEscape(template), nil)
	if err != nil {
		return 0, 0, err
	}
	if after > 0 {
		req.Header.Set("Last-Event-Id", strconv.FormatInt(after, 10))
	}
	tr := &http.Transport{DisableKeepAlives: true, ReadBufferSize: 64 << 10}
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, 0, fmt.Errorf("GET /sse: %d %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	needle := []byte(`"id":"` + id + `"`)
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("data: ")) {
			continue
		}
		n++
		if bytes.Contains(line, needle) {
			return time.Since(start), n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, n, err
	}
	return 0, n, errors.New("the stream ended before the marker")
}

// atHead subscribes to a fresh stream after the head, posts one event to
// it and returns the time from the POST to its frame.
func atHead(ctx context.Context, client *http.Client, base, tag string) (time.Duration, error) {
	stream := "live/" + tag
	head, err := loadgen.Head(ctx, client, base)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?stream="+url.QueryEscape(stream), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Last-Event-Id", strconv.FormatInt(head, 10))
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	start := time.Now()
	body := fmt.Sprintf(`[{"specversion":"1.0","id":"live-%s","source":"bench/scale","type":"bench.scale.live","data":{}}]`, tag)
	if err := post(ctx, client, base, stream, []byte(body)); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), []byte("data: ")) {
			return time.Since(start), nil
		}
	}
	return 0, fmt.Errorf("no frame: %v", sc.Err())
}

func get(ctx context.Context, client *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", u, resp.StatusCode)
	}
	return nil
}

// median runs f n times and returns the median duration.
func median(n int, f func() error) (time.Duration, error) {
	ds := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[n/2], nil
}

// cpuTime returns the user and system CPU time the process pid has used
// (from /proc/pid/stat, in clock ticks of 10 ms), or 0 when pid is 0 or
// unreadable.
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime 14 and stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
