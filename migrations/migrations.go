// Package migrations embeds Fossil's SQL migrations and applies them with
// golang-migrate.
//
// Migrations are serialised between processes by golang-migrate's advisory
// lock, so several servers may start at once against one database. Applying
// them when the database is already current is a no-op.
package migrations

import (
	"embed"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers pgx5://
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

// FS holds the NNNN_name.{up,down}.sql files.
//
//go:embed *.sql
var FS embed.FS

// Table is the name of golang-migrate's bookkeeping table.
const Table = "fossil_schema_migrations"

// Up applies every pending migration to the database at databaseURL
// (a postgres:// or postgresql:// URL). Running it twice is fine.
func Up(databaseURL string) error {
	m, err := newMigrate(databaseURL)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// Version reports the applied migration version and whether the database is
// in a dirty (half-applied) state. A database without migrations reports 0.
func Version(databaseURL string) (uint, bool, error) {
	m, err := newMigrate(databaseURL)
	if err != nil {
		return 0, false, err
	}
	defer m.Close()
	v, dirty, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("migrate version: %w", err)
	}
	return v, dirty, nil
}

// Latest returns the highest migration version embedded in the binary.
func Latest() (uint, error) {
	src, err := iofs.New(FS, ".")
	if err != nil {
		return 0, fmt.Errorf("migrations source: %w", err)
	}
	defer src.Close()
	v, err := src.First()
	if err != nil {
		return 0, fmt.Errorf("migrations source: %w", err)
	}
	for {
		next, err := src.Next(v)
		if err != nil {
			return v, nil //nolint:nilerr // end of the list
		}
		v = next
	}
}

func newMigrate(databaseURL string) (*migrate.Migrate, error) {
	src, err := iofs.New(FS, ".")
	if err != nil {
		return nil, fmt.Errorf("migrations source: %w", err)
	}
	u, err := migrateURL(databaseURL)
	if err != nil {
		return nil, err
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, u)
	if err != nil {
		return nil, fmt.Errorf("migrate connect: %w", err)
	}
	return m, nil
}

// migrateURL turns a libpq URL into the pgx5:// form golang-migrate wants
// and names the bookkeeping table.
func migrateURL(databaseURL string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", fmt.Errorf("database url: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "postgres", "postgresql", "pgx5":
	default:
		return "", fmt.Errorf("database url: unsupported scheme %q (want postgres://)", u.Scheme)
	}
	u.Scheme = "pgx5"
	q := u.Query()
	q.Set("x-migrations-table", Table)
	u.RawQuery = q.Encode()
	return u.String(), nil
}
