package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// TestBankAccount runs the example against a real server.
func TestBankAccount(t *testing.T) {
	srv := testserver.Start(t)
	var out bytes.Buffer
	if err := run(context.Background(), srv.URL, "", &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	lines := regexp.MustCompile(`(?m)^bank/\w+/account-\d: balance 1920 after 64 events \(projection 1920\)$`).FindAllString(out.String(), -1)
	if len(lines) != accounts {
		t.Fatalf("output:\n%s\nwant %d accounts at 1920", out.String(), accounts)
	}
}
