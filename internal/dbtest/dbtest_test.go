package dbtest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { Main(m) }

func TestNewDB(t *testing.T) {
	t.Parallel()

	t.Run("IsolatedAndMigrated", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		a, b := NewPool(t), NewPool(t)

		for _, pool := range []*pgxpool.Pool{a, b} {
			var n int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM fossil_schema_migrations WHERE NOT dirty").Scan(&n); err != nil {
				t.Fatalf("migrations table: %v", err)
			}
			if n != 1 {
				t.Fatalf("fossil_schema_migrations has %d clean rows, want 1", n)
			}
		}
		if _, err := a.Exec(ctx, "INSERT INTO fossil_schemas (type, document) VALUES ('t', '{}')"); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			name string
			pool *pgxpool.Pool
			want int
		}{{"a", a, 1}, {"b", b, 0}} {
			var n int
			if err := tt.pool.QueryRow(ctx, "SELECT count(*) FROM fossil_schemas").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != tt.want {
				t.Errorf("database %s has %d schemas, want %d", tt.name, n, tt.want)
			}
		}
		var dbA, dbB string
		if err := a.QueryRow(ctx, "SELECT current_database()").Scan(&dbA); err != nil {
			t.Fatal(err)
		}
		if err := b.QueryRow(ctx, "SELECT current_database()").Scan(&dbB); err != nil {
			t.Fatal(err)
		}
		if dbA == dbB || !strings.HasPrefix(dbA, "fossil_test_") {
			t.Fatalf("databases %q and %q", dbA, dbB)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		for i := range 8 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				var n int
				if err := NewPool(t).QueryRow(t.Context(), "SELECT last_number FROM fossil_head").Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 0 {
					t.Fatalf("last_number = %d in a fresh database", n)
				}
			})
		}
	})

	t.Run("DropsOnSuccessKeepsOnFailure", func(t *testing.T) {
		t.Parallel()
		for _, failed := range []bool{false, true} {
			tb := &recordingTB{TB: t, failed: failed}
			dbURL := NewDB(tb)
			cfg, err := pgx.ParseConfig(dbURL)
			if err != nil {
				t.Fatal(err)
			}
			if !databaseExists(t, cfg.Database) {
				t.Fatalf("database %s missing after NewDB", cfg.Database)
			}
			tb.runCleanups()
			if got := databaseExists(t, cfg.Database); got != failed {
				t.Fatalf("failed=%v: database exists after cleanup = %v", failed, got)
			}
			if failed {
				if !strings.Contains(tb.logs.String(), dbURL) {
					t.Fatalf("failed test log %q does not name %s", tb.logs.String(), dbURL)
				}
				if _, err := admin(t).Exec(t.Context(), "DROP DATABASE "+ident(cfg.Database)+" WITH (FORCE)"); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

func TestAdminURL(t *testing.T) {
	t.Parallel()
	cfg, err := pgx.ParseConfig(AdminURL())
	if err != nil {
		t.Fatalf("AdminURL %q: %v", AdminURL(), err)
	}
	if cfg.Database == "" {
		t.Fatalf("AdminURL %q names no database", AdminURL())
	}
}

func TestTemplateName(t *testing.T) {
	t.Parallel()
	a, err := templateName()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := templateName()
	if a != b || len(a) != len("fossil_tpl_")+12 {
		t.Fatalf("templateName = %q, %q", a, b)
	}
}

func admin(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := maintenancePool()
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	var exists bool
	err := admin(t).QueryRow(t.Context(), "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	return exists
}

// recordingTB lets a test run NewDB's cleanup itself, as a passed or a
// failed test.
type recordingTB struct {
	testing.TB
	failed   bool
	cleanups []func()
	logs     strings.Builder
}

func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Failed() bool     { return r.failed }
func (r *recordingTB) Logf(format string, args ...any) {
	fmt.Fprintf(&r.logs, format, args...)
}
func (r *recordingTB) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}
