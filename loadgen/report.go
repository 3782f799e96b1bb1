package loadgen

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteTable writes r as a short human-readable report.
func (r *Result) WriteTable(w io.Writer) error {
	var b strings.Builder
	shape := fmt.Sprintf("%d clients × %d event(s), %s, %d-byte data", r.Clients, r.Batch, streamsText(r.Streams), r.DataBytes)
	if r.ExpectSequence {
		shape += ", expected sequences"
	}
	if r.Rate > 0 {
		shape += fmt.Sprintf(", rate %s events/s", group(int64(r.Rate)))
	}
	fmt.Fprintf(&b, "fossil bench  %s  run %s\n", r.URL, r.RunID)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(&b, "  %-12s "+format+"\n", append([]any{name}, args...)...)
	}
	if r.Clients > 0 {
		row("shape", "%s", shape)
		row("appended", "%s events in %.1fs = %s events/s (%s requests/s)",
			group(r.Events), r.Seconds, group(int64(r.EventsPerSecond)), group(int64(r.RequestsPerSecond)))
		row("append", "p50 %s  p95 %s  p99 %s  max %s", ms(r.Append.P50), ms(r.Append.P95), ms(r.Append.P99), ms(r.Append.Max))
	}
	if r.Subscribers > 0 {
		row("delivery", "%d subscribers, %s of %s deliveries: p50 %s  p95 %s  p99 %s  max %s (send → receive)",
			r.Subscribers, group(r.Delivered), group(r.DeliveryExpected),
			ms(r.Delivery.P50), ms(r.Delivery.P95), ms(r.Delivery.P99), ms(r.Delivery.Max))
		if r.SubscribersEndedEarly > 0 {
			row("", "%d subscriber stream(s) ended before the run did", r.SubscribersEndedEarly)
		}
	}
	if r.Replay != nil {
		row("replay", "%s events in %.2fs = %s events/s (one subscriber, {+all} from 0)",
			group(r.Replay.Events), r.Replay.Seconds, group(int64(r.Replay.EventsPerSecond)))
	}
	if r.Idle != nil {
		line := fmt.Sprintf("%s idle subscribers open (%d failed) in %.1fs", group(int64(r.Idle.Open)), r.Idle.Failed, r.Idle.Seconds)
		if r.Idle.RSSOpen > 0 {
			line += fmt.Sprintf("; server RSS %s before, %s open, %s at the end",
				mib(r.Idle.RSSBefore), mib(r.Idle.RSSOpen), mib(r.Idle.RSSEnd))
		}
		row("idle", "%s", line)
	}
	if len(r.Errors) == 0 {
		row("errors", "none")
	} else {
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s: %d", k, r.Errors[k])
		}
		row("errors", "%s", strings.Join(parts, ", "))
		row("", "first: %s", truncate(r.FirstError, 200))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func streamsText(n int) string {
	if n == 1 {
		return "one hot stream"
	}
	return group(int64(n)) + " streams"
}

func ms(v float64) string { return fmt.Sprintf("%.2fms", v) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// group formats n with thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
