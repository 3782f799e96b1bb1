package sink

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSConfig configures a [NATS] sink.
type NATSConfig struct {
	URL     string // nats://host:port
	Subject string
	// Token (an ACCESSTOKEN credential) or User and Password (PLAIN).
	Token          string
	User, Password string
	Name           string // the connection name, for the server's monitoring
}

// NATS publishes events to JetStream in the CloudEvents NATS binary mode
// (attributes as ce- headers, datacontenttype as content-type, the trace
// context also as traceparent and tracestate), with
// Nats-Msg-Id set to the delivery id so the stream drops a redelivery
// within its duplicate window. It connects on first use and lets nats.go
// reconnect.
type NATS struct {
	cfg NATSConfig

	mu sync.Mutex
	nc *nats.Conn
	js jetstream.JetStream
}

// NewNATS returns a NATS sink; nothing is dialled until the first Send.
func NewNATS(cfg NATSConfig) *NATS { return &NATS{cfg: cfg} }

func (s *NATS) conn() (jetstream.JetStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.js != nil {
		return s.js, nil
	}
	opts := []nats.Option{nats.Name(s.cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond), nats.Timeout(5 * time.Second)}
	switch {
	case s.cfg.Token != "":
		opts = append(opts, nats.Token(s.cfg.Token))
	case s.cfg.User != "":
		opts = append(opts, nats.UserInfo(s.cfg.User, s.cfg.Password))
	}
	nc, err := nats.Connect(s.cfg.URL, opts...)
	if err != nil {
		return nil, err
	}
	// Sends are published asynchronously and each waits for its own
	// acknowledgement: one reply subscription for all of them instead of a
	// request (and its reply routing) per event. An acknowledgement that
	// never comes is forgotten after asyncAckTimeout, long after the
	// attempt's own time limit has turned it into a retry.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(asyncMaxPending), jetstream.WithPublishAsyncTimeout(asyncAckTimeout))
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.nc, s.js = nc, js
	return js, nil
}

const (
	asyncMaxPending = 4096
	asyncAckTimeout = 2 * time.Minute
)

// Send publishes m and waits for JetStream's acknowledgement. Every
// failure is retried: a missing stream or an unreachable server may be
// fixed without touching the subscription.
func (s *NATS) Send(ctx context.Context, m *Message) Outcome {
	js, err := s.conn()
	if err != nil {
		return Outcome{Kind: Retry, Err: "nats connect: " + err.Error()}
	}
	hs, data := BinaryHeaders(m, "ce-")
	msg := nats.NewMsg(s.cfg.Subject)
	for _, h := range hs {
		msg.Header.Set(h.Name, h.Value)
	}
	msg.Data = data
	f, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(m.ID))
	if err != nil {
		return Outcome{Kind: Retry, Err: "nats publish: " + err.Error()}
	}
	select {
	case <-f.Ok():
		return Outcome{Kind: Delivered}
	case err := <-f.Err():
		return Outcome{Kind: Retry, Err: "nats publish: " + err.Error()}
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Outcome{Kind: Retry, Err: "timeout: no JetStream acknowledgement within the ack timeout"}
		}
		return Outcome{Kind: Retry, Err: "nats publish: " + ctx.Err().Error()}
	}
}

// Close closes the connection.
func (s *NATS) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nc != nil {
		s.nc.Close()
		s.nc, s.js = nil, nil
	}
	return nil
}
