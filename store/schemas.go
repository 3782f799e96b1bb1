package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// putSchemaSQL upserts a schema document, kept exactly as sent. xmax is 0
// only on a row version created by a plain INSERT; ON CONFLICT DO UPDATE
// writes a row version whose xmax is the updating transaction. So "created"
// is decided by the same statement that wins the row lock, and two
// concurrent first registrations cannot both report a creation.
const putSchemaSQL = `
INSERT INTO fossil_schemas (type, document, updated_at)
VALUES ($1, $2::json, now())
ON CONFLICT (type) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at
RETURNING (xmax = 0) AS created`

// PutSchema stores doc, a JSON Schema document, as the schema of event type
// typ, replacing any previous one, and notifies [ChannelSchemas] with typ as
// payload in the same transaction. created reports whether typ had no
// schema before. The caller validates doc; the database only checks that it
// is JSON.
func (s *Store) PutSchema(ctx context.Context, typ string, doc []byte) (created bool, err error) {
	err = WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, putSchemaSQL, typ, string(doc)).Scan(&created); err != nil {
			return err
		}
		return notifySchema(ctx, tx, typ)
	})
	if err != nil {
		return false, interpretError(fmt.Errorf("put schema %q: %w", typ, err))
	}
	s.committed(ChannelSchemas, typ)
	return created, nil
}

// notifySchema wakes every process's schema registry. It runs inside the
// writing transaction, so listeners wake only after the commit.
func notifySchema(ctx context.Context, tx DBTX, typ string) error {
	_, err := tx.Exec(ctx, notifySQL, ChannelSchemas, typ)
	return err
}

const getSchemaSQL = `SELECT document::text FROM fossil_schemas WHERE type = $1`

// GetSchema returns the schema document of event type typ as it was stored.
// Errors: [fossil.ErrNotFound] when typ has no schema.
func (s *Store) GetSchema(ctx context.Context, typ string) ([]byte, error) {
	var doc string
	if err := s.pool.QueryRow(ctx, getSchemaSQL, typ).Scan(&doc); err != nil {
		return nil, interpretError(fmt.Errorf("schema %q: %w", typ, err))
	}
	return []byte(doc), nil
}

const deleteSchemaSQL = `DELETE FROM fossil_schemas WHERE type = $1 RETURNING type`

// DeleteSchema removes the schema of event type typ and notifies
// [ChannelSchemas] in the same transaction.
// Errors: [fossil.ErrNotFound] when typ has no schema.
func (s *Store) DeleteSchema(ctx context.Context, typ string) error {
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		var deleted string
		if err := tx.QueryRow(ctx, deleteSchemaSQL, typ).Scan(&deleted); err != nil {
			return err
		}
		return notifySchema(ctx, tx, typ)
	})
	if err != nil {
		return interpretError(fmt.Errorf("delete schema %q: %w", typ, err))
	}
	s.committed(ChannelSchemas, typ)
	return nil
}

// listSchemaTypesSQL sorts in byte order (COLLATE "C") so the listing does
// not depend on the database's locale.
const listSchemaTypesSQL = `SELECT type FROM fossil_schemas ORDER BY type COLLATE "C"`

// ListSchemaTypes returns the event types that have a schema, sorted in
// byte order. It returns an empty, non-nil slice when there are none.
func (s *Store) ListSchemaTypes(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, listSchemaTypesSQL)
	if err != nil {
		return nil, interpretError(fmt.Errorf("list schemas: %w", err))
	}
	types, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, interpretError(fmt.Errorf("list schemas: %w", err))
	}
	if types == nil {
		types = []string{}
	}
	return types, nil
}

const allSchemasSQL = `SELECT type, document::text FROM fossil_schemas`

// AllSchemas returns every schema document keyed by event type, as one
// consistent snapshot. It returns an empty, non-nil map when there are none.
func (s *Store) AllSchemas(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.pool.Query(ctx, allSchemasSQL)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read schemas: %w", err))
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var (
			typ string
			doc string
		)
		if err := rows.Scan(&typ, &doc); err != nil {
			return nil, interpretError(fmt.Errorf("read schemas: %w", err))
		}
		out[typ] = []byte(doc)
	}
	if err := rows.Err(); err != nil {
		return nil, interpretError(fmt.Errorf("read schemas: %w", err))
	}
	return out, nil
}
