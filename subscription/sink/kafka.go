package sink

import (
	"context"
	"errors"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaConfig configures a [Kafka] sink.
type KafkaConfig struct {
	Brokers  []string // host:port
	Topic    string
	ClientID string
}

// Kafka produces events with an idempotent producer (franz-go's default:
// a retried batch is written once per partition), the stream as record
// key (so a stream stays in one partition, in order) and the CloudEvents
// Kafka binary mode (attributes as ce_ headers, datacontenttype as
// content-type, the trace context also as traceparent and tracestate).
// Every record waits for all in-sync replicas.
type Kafka struct {
	cfg KafkaConfig

	mu     sync.Mutex
	client *kgo.Client
}

// NewKafka returns a Kafka sink; nothing is dialled until the first Send.
func NewKafka(cfg KafkaConfig) *Kafka { return &Kafka{cfg: cfg} }

func (s *Kafka) conn() (*kgo.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.cfg.Brokers...),
		kgo.DefaultProduceTopic(s.cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	}
	if s.cfg.ClientID != "" {
		opts = append(opts, kgo.ClientID(s.cfg.ClientID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	s.client = cl
	return cl, nil
}

// Send produces m and waits for the broker's acknowledgement. Records the
// broker can never take (too large, invalid) are rejected; everything else
// is retried.
func (s *Kafka) Send(ctx context.Context, m *Message) Outcome {
	cl, err := s.conn()
	if err != nil {
		return Outcome{Kind: Reject, Err: "kafka client: " + err.Error()}
	}
	hs, data := BinaryHeaders(m, "ce_")
	rec := &kgo.Record{Key: []byte(m.Stream), Value: data, Headers: make([]kgo.RecordHeader, 0, len(hs))}
	for _, h := range hs {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Name, Value: []byte(h.Value)})
	}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		switch {
		case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge), errors.Is(err, kerr.InvalidRecord),
			errors.Is(err, kerr.TopicAuthorizationFailed):
			return Outcome{Kind: Reject, Err: "kafka produce: " + err.Error()}
		case errors.Is(err, context.DeadlineExceeded):
			return Outcome{Kind: Retry, Err: "timeout: no Kafka acknowledgement within the ack timeout"}
		}
		return Outcome{Kind: Retry, Err: "kafka produce: " + err.Error()}
	}
	return Outcome{Kind: Delivered}
}

// Close flushes nothing (every Send waited) and closes the client.
func (s *Kafka) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
	return nil
}
