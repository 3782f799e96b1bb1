package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Listener is a dedicated LISTEN connection taken out of the pool with
// Hijack, so the pool never hands it to anyone else. It implements
// notify.Listener. Methods must not be called concurrently, except Close.
type Listener struct {
	store *Store
	mu    sync.Mutex
	conn  *pgx.Conn
}

// NewListener returns an unconnected listener.
func (s *Store) NewListener() *Listener { return &Listener{store: s} }

// Connect takes a connection from the pool and hijacks it.
func (l *Listener) Connect(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		return errors.New("listener already connected")
	}
	pc, err := l.store.pool.Acquire(ctx)
	if err != nil {
		return interpretError(fmt.Errorf("listener acquire: %w", err))
	}
	l.conn = pc.Hijack()
	return nil
}

// Listen subscribes the connection to channel.
func (l *Listener) Listen(ctx context.Context, channel string) error {
	conn := l.current()
	if conn == nil {
		return errors.New("listener not connected")
	}
	_, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize())
	return interpretError(err)
}

// WaitForNotification blocks until a notification arrives or ctx ends.
func (l *Listener) WaitForNotification(ctx context.Context) (string, string, error) {
	conn := l.current()
	if conn == nil {
		return "", "", errors.New("listener not connected")
	}
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		return "", "", err
	}
	return n.Channel, n.Payload, nil
}

// Ping checks the connection.
func (l *Listener) Ping(ctx context.Context) error {
	conn := l.current()
	if conn == nil {
		return errors.New("listener not connected")
	}
	return conn.Ping(ctx)
}

// Close closes the connection; the next Connect takes a new one.
func (l *Listener) Close(ctx context.Context) error {
	l.mu.Lock()
	conn := l.conn
	l.conn = nil
	l.mu.Unlock()
	if conn == nil {
		return nil
	}
	return conn.Close(ctx)
}

// BackendPID returns the server process id of the connection, so tests can
// kill it with pg_terminate_backend. 0 when not connected.
func (l *Listener) BackendPID() uint32 {
	conn := l.current()
	if conn == nil {
		return 0
	}
	return conn.PgConn().PID()
}

func (l *Listener) current() *pgx.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn
}
