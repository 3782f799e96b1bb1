package store

import (
	"slices"
	"testing"
)

// TestChannelsRegistry: every channel the store notifies on is listed once.
func TestChannelsRegistry(t *testing.T) {
	t.Parallel()
	got := Channels()
	for _, c := range []string{ChannelEvents, ChannelReplaced, ChannelAcks, ChannelSchemas, ChannelSubscriptions} {
		if slices.Index(got, c) < 0 {
			t.Errorf("Channels() = %v lacks %s", got, c)
		}
	}
	sorted := slices.Clone(got)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(got) {
		t.Errorf("Channels() = %v holds a channel twice", got)
	}
}
