package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fossil-events/fossil/fossil"
)

// TestInterpretErrorConceals: every driver failure gets its sentinel, and
// what a client reads of it (fossil.PublicText) holds no driver text — no
// user, database, host, port, file path or "no rows in result set" — while
// the full text stays in the error for the log.
func TestInterpretErrorConceals(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, connErr := pgx.Connect(ctx, "postgres://fossiluser@127.0.0.1:1/fossildb?connect_timeout=2")
	if connErr == nil {
		t.Fatal("connected to port 1")
	}
	tests := []struct {
		name     string
		err      error
		sentinel error
		secrets  []string
	}{
		{"NoRows", fmt.Errorf("consumer %q: %w", "billing", pgx.ErrNoRows), fossil.ErrNotFound, []string{"no rows", "result set"}},
		{"Connect", fmt.Errorf("read log: %w", connErr), fossil.ErrUnavailable, []string{"fossiluser", "fossildb", "127.0.0.1", ":1", "dial"}},
		{"DiskFull", &pgconn.PgError{Severity: "ERROR", Code: "53100", Message: `could not extend file "base/16384/16408": No space left on device`}, fossil.ErrUnavailable, []string{"base/16384", "extend", "SQLSTATE"}},
		{"AdminShutdown", &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}, fossil.ErrUnavailable, []string{"administrator", "SQLSTATE"}},
		{"InvalidText", &pgconn.PgError{Severity: "ERROR", Code: "22021", Message: `invalid byte sequence for encoding "UTF8": 0xff`}, fossil.ErrInvalid, []string{"0xff", "SQLSTATE", "UTF8\""}},
		{"Timeout", fmt.Errorf("read log: %w", context.DeadlineExceeded), fossil.ErrUnavailable, []string{"deadline"}},
		{"Unique", &pgconn.PgError{Code: "23505", ConstraintName: "fossil_events_id_source_key", Message: "duplicate key value violates unique constraint", Detail: "Key (id, source)=(a, b) already exists."}, fossil.ErrConflict, []string{"duplicate key", "Key ("}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := interpretError(tt.err)
			if !errors.Is(got, tt.sentinel) {
				t.Fatalf("interpretError(%v) = %v, want %v", tt.err, got, tt.sentinel)
			}
			public := fossil.PublicText(got)
			for _, s := range tt.secrets {
				if strings.Contains(public, s) {
					t.Errorf("client text %q holds %q", public, s)
				}
			}
			if !strings.Contains(got.Error(), tt.err.Error()) {
				t.Errorf("the log text %q lost the cause %q", got.Error(), tt.err.Error())
			}
			if wrapped := fmt.Errorf("ack %q: %w", "x", got); !strings.HasPrefix(fossil.PublicText(wrapped), `ack "x": `) {
				t.Errorf("a caller's context is lost: %q", fossil.PublicText(wrapped))
			}
		})
	}
}
