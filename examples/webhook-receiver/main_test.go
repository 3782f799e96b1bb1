package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// TestWebhookReceiver runs the example against a real server: every order
// arrives once, with its trace.
func TestWebhookReceiver(t *testing.T) {
	srv := testserver.Start(t)
	var out bytes.Buffer
	if err := run(context.Background(), srv.URL, "", "127.0.0.1:0", &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	lines := regexp.MustCompile(`(?m)^event \d+ in shop/\w+/(\d): order.placed total (\d+)0 \(trace [0-9a-f]{32}\)$`).FindAllStringSubmatch(out.String(), -1)
	if len(lines) != orders {
		t.Fatalf("output:\n%s\nwant %d orders", out.String(), orders)
	}
	for _, l := range lines {
		if l[1] != l[2] {
			t.Fatalf("order %s has total %s0", l[1], l[2])
		}
	}
	if !strings.Contains(out.String(), "delivered 5, parked 0\n") {
		t.Fatalf("output:\n%s\nwant the subscription's status", out.String())
	}
}
