package subscription_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fossil-events/fossil/internal/testserver"
)

// natsURL is the JetStream server the tests publish to; `make test`
// (.ci/test) starts one when none is running.
const natsURL = "nats://127.0.0.1:4222"

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// postMix posts events to three streams and returns their numbers.
func postMix(t *testing.T, srv *testserver.Server, prefix string, n int) []int64 {
	var out []int64
	for i := range n {
		s := fmt.Sprintf("orders/%d", i%3)
		out = append(out, srv.MustPost(t, s, testserver.Event{ID: fmt.Sprintf("%s%d", prefix, i), Type: "order.placed", Data: fmt.Sprintf(`{"i":%d}`, i)}))
	}
	return out
}

type brokerRecord struct {
	number int64
	stream string
	header map[string]string
	data   string
}

func checkBrokerRecords(t *testing.T, got []brokerRecord, want []int64) {
	t.Helper()
	var numbers []int64
	last := map[string]int64{}
	for _, r := range got {
		numbers = append(numbers, r.number)
		if r.number <= last[r.stream] {
			t.Fatalf("stream %s: %d after %d", r.stream, r.number, last[r.stream])
		}
		last[r.stream] = r.number
	}
	slices.Sort(numbers)
	if !slices.Equal(numbers, want) {
		t.Fatalf("received %v, want each of %v once", numbers, want)
	}
}

func TestNATSJetStreamSink(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, stream, name := jetStream(ctx, t, time.Minute)
	subject := name + ".events"

	srv := testserver.Start(t, fast)
	want := postMix(t, srv, "old", 30)
	id := create(t, srv, map[string]any{
		"protocol": "NATS", "sink": natsURL,
		"protocolsettings": map[string]any{"subject": subject},
		"config":           map[string]string{"startafter": "0"},
	})["id"].(string)
	want = append(want, postMix(t, srv, "live", 6)...) // live

	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got []brokerRecord
	for len(got) < len(want) {
		msgs, err := cons.Fetch(len(want)-len(got), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range msgs.Messages() {
			n++
			h := map[string]string{}
			for k := range m.Headers() {
				h[k] = m.Headers().Get(k)
			}
			num, _ := strconv.ParseInt(h["ce-fossileventnumber"], 10, 64)
			got = append(got, brokerRecord{number: num, stream: h["ce-fossilstream"], header: h, data: string(m.Data())})
		}
		if n == 0 {
			t.Fatalf("only %d of %d messages arrived", len(got), len(want))
		}
	}
	checkBrokerRecords(t, got, want)
	r := got[0]
	if r.header["Nats-Msg-Id"] != id+":"+strconv.FormatInt(r.number, 10) || r.header["ce-type"] != "order.placed" ||
		r.header["ce-specversion"] != "1.0" || r.header["ce-source"] != "/test" || r.header["content-type"] != "application/json" || r.data == "" {
		t.Fatalf("message %+v", r)
	}
	// A redelivery with the same Nats-Msg-Id is dropped by the stream.
	before, _ := stream.Info(ctx)
	dup := nats.NewMsg(subject)
	dup.Header.Set("Nats-Msg-Id", r.header["Nats-Msg-Id"])
	if _, err := js.PublishMsg(ctx, dup); err != nil {
		t.Fatal(err)
	}
	after, _ := stream.Info(ctx)
	if after.State.Msgs != before.State.Msgs || before.State.Msgs != uint64(len(want)) {
		t.Fatalf("messages %d → %d, want %d throughout", before.State.Msgs, after.State.Msgs, len(want))
	}
	testserver.Eventually(t, 5*time.Second, "status", func() bool {
		return status(t, srv, id)["delivered"] == float64(len(want))
	})
}

func TestKafkaSink(t *testing.T) {
	t.Parallel()
	topic, addr := kafkaCluster(t, 3)

	srv := testserver.Start(t, fast)
	want := postMix(t, srv, "old", 30)
	id := create(t, srv, map[string]any{
		"protocol": "KAFKA", "sink": "kafka://" + addr,
		"protocolsettings": map[string]any{"topicname": topic},
		"config":           map[string]string{"startafter": "0"},
	})["id"].(string)
	want = append(want, postMix(t, srv, "live", 6)...)

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []brokerRecord
	partitionOf := map[string]int32{}
	for len(got) < len(want) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d records arrived", len(got), len(want))
		}
		fs.EachRecord(func(rec *kgo.Record) {
			h := map[string]string{}
			for _, x := range rec.Headers {
				h[x.Key] = string(x.Value)
			}
			num, _ := strconv.ParseInt(h["ce_fossileventnumber"], 10, 64)
			if string(rec.Key) != h["ce_fossilstream"] {
				t.Errorf("key %q, stream %q", rec.Key, h["ce_fossilstream"])
			}
			if p, ok := partitionOf[string(rec.Key)]; ok && p != rec.Partition {
				t.Errorf("stream %s in partitions %d and %d", rec.Key, p, rec.Partition)
			}
			partitionOf[string(rec.Key)] = rec.Partition
			got = append(got, brokerRecord{number: num, stream: string(rec.Key), header: h, data: string(rec.Value)})
		})
	}
	// Order holds within a partition, and a stream lives in one: sort the
	// records by partition, keeping each partition's order.
	slices.SortStableFunc(got, func(a, b brokerRecord) int { return int(partitionOf[a.stream] - partitionOf[b.stream]) })
	checkBrokerRecords(t, got, want)
	r := got[0]
	if r.header["ce_type"] != "order.placed" || r.header["ce_specversion"] != "1.0" || r.header["ce_id"] == "" ||
		r.header["content-type"] != "application/json" || r.data == "" {
		t.Fatalf("record %+v", r)
	}
	testserver.Eventually(t, 5*time.Second, "status", func() bool {
		return status(t, srv, id)["delivered"] == float64(len(want))
	})
}

// jetStream connects to the JetStream at natsURL and creates a memory
// stream of its own (deleted when the test ends) on the subjects
// <name>.>, with the given deduplication window (0: the server's default).
func jetStream(ctx context.Context, t *testing.T, duplicates time.Duration) (jetstream.JetStream, jetstream.Stream, string) {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Timeout(3*time.Second))
	if err != nil {
		t.Fatalf("NATS JetStream must run on %s (make test starts one; or run nats-server -js): %v", natsURL, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := "fossiltest_" + randomName()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage, Duplicates: duplicates})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	return js, stream, name
}

// kafkaCluster starts a one-broker kfake cluster (stopped when the test
// ends) with a topic of its own of the given partitions, and returns the
// topic and the broker's address.
func kafkaCluster(t *testing.T, partitions int32) (topic, addr string) {
	t.Helper()
	topic = "fossil-" + randomName()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return topic, cluster.ListenAddrs()[0]
}
