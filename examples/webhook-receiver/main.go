// Command webhook-receiver receives a Fossil subscription's deliveries:
// an HTTP server that answers the CloudEvents webhook validation
// handshake, takes each event in CloudEvents HTTP binary mode, and drops
// redeliveries by event number (delivery is at least once). It creates
// its subscription with the Go client, collects a few orders, prints each
// delivered event (and the trace it continues), and deletes the
// subscription once all of them arrived.
//
//	go run . server &                                   # a Fossil server
//	FOSSIL_URL=http://127.0.0.1:8080 go run ./examples/webhook-receiver
//
// WEBHOOK_ADDR sets the receiver's listen address (default 127.0.0.1:0,
// a free port); the server must be able to reach it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.opentelemetry.io/otel/trace"

	"github.com/fossil-events/fossil/client"
)

func main() {
	url := os.Getenv("FOSSIL_URL")
	if url == "" {
		fmt.Fprintln(os.Stderr, "webhook-receiver: set FOSSIL_URL to a running Fossil server, for example:\n  go run . server &\n  FOSSIL_URL=http://127.0.0.1:8080 go run ./examples/webhook-receiver")
		os.Exit(2)
	}
	addr := os.Getenv("WEBHOOK_ADDR")
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, url, os.Getenv("FOSSIL_TOKEN"), addr, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "webhook-receiver:", err)
		os.Exit(1)
	}
}

const orders = 5

// receiver is the webhook: it keeps each event once, by number.
type receiver struct {
	mu   sync.Mutex
	seen map[int64]bool
	out  io.Writer
	all  chan struct{} // closed when every order arrived
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		// The validation handshake: grant the origin that asks.
		w.Header().Set("WebHook-Allowed-Origin", r.Header.Get("WebHook-Request-Origin"))
		w.Header().Set("WebHook-Allowed-Rate", "*")
		return
	}
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	if err != nil {
		// Not a CloudEvent: a 400 parks it, it would never succeed.
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	number, err := strconv.ParseInt(fmt.Sprint(ev.Extensions()["fossileventnumber"]), 10, 64)
	if err != nil {
		http.Error(w, "no fossileventnumber", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.seen[number] {
		w.WriteHeader(http.StatusNoContent) // a redelivery: already handled
		return
	}
	rc.seen[number] = true
	var order struct {
		Total int `json:"total"`
	}
	_ = ev.DataAs(&order)
	traced := ""
	if tp, ok := ev.Extensions()["traceparent"].(string); ok && tp != "" {
		traced = " (trace " + traceID(tp) + ")"
	}
	fmt.Fprintf(rc.out, "event %d in %s: %s total %d%s\n", number, ev.Extensions()["fossilstream"], ev.Type(), order.Total, traced)
	if len(rc.seen) == orders {
		close(rc.all)
	}
	w.WriteHeader(http.StatusNoContent)
}

// traceID returns the trace id of a W3C traceparent.
func traceID(traceparent string) string {
	if len(traceparent) >= 35 {
		return traceparent[3:35]
	}
	return traceparent
}

func run(ctx context.Context, url, token, addr string, out io.Writer) error {
	var opts []client.Option
	if token != "" {
		opts = append(opts, client.WithToken(token))
	}
	c, err := client.New(url, opts...)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	rc := &receiver{seen: map[int64]bool{}, out: out, all: make(chan struct{})}
	hs := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()

	// One run's orders go to streams of their own, so the example can run
	// again on the same server.
	run := rand.Text()[:8]
	def, _ := json.Marshal(map[string]any{
		"protocol": "HTTP",
		"sink":     "http://" + ln.Addr().String() + "/orders",
		"types":    []string{"order.placed"},
		"config":   map[string]string{"streams": "shop/" + run + "/{order}", "startafter": "0"},
	})
	sub, err := c.CreateSubscription(ctx, def)
	if err != nil {
		return fmt.Errorf("create the subscription: %w", err)
	}
	defer func() { _, _ = c.DeleteSubscription(context.WithoutCancel(ctx), sub.ID) }()
	fmt.Fprintf(out, "subscription %s delivers shop/%s/{order} to %s\n", sub.ID, run, sub.Sink)

	// The producer's trace: its traceparent travels with each event.
	tid := trace.TraceID{}
	copy(tid[:], []byte(run+run))
	producer := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled}))
	for i := 1; i <= orders; i++ {
		ev := event.New()
		ev.SetID(fmt.Sprintf("%s-%d", run, i))
		ev.SetSource("/examples/webhook-receiver")
		ev.SetType("order.placed")
		_ = ev.SetData(event.ApplicationJSON, map[string]int{"total": 10 * i})
		if _, err := c.Collect(producer, fmt.Sprintf("shop/%s/%d", run, i), []event.Event{ev}); err != nil {
			return err
		}
	}
	select {
	case <-rc.all:
	case <-time.After(30 * time.Second):
		s, _ := c.Subscription(ctx, sub.ID)
		return fmt.Errorf("not every order arrived within 30 s; the subscription: %s", s.Raw)
	case <-ctx.Done():
		return ctx.Err()
	}
	// The subscription's status counts the deliveries once it has
	// recorded them.
	for deadline := time.Now().Add(10 * time.Second); ; {
		s, err := c.Subscription(ctx, sub.ID)
		if err != nil {
			return err
		}
		if s.Status == nil {
			return errors.New("the subscription has no status")
		}
		if s.Status.Delivered >= orders || time.Now().After(deadline) {
			fmt.Fprintf(out, "delivered %d, parked %d\n", s.Status.Delivered, s.Status.Parked)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}
