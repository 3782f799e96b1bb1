package store

// headCache lets a group commit in one round trip instead of two. It holds
// the log head after this process's last commit and the last sequence of
// the streams this process has read or written since, which are exact for
// as long as the head has not moved: a group planned from it sends BEGIN,
// the head lock, a check that the head is unchanged, the writes and COMMIT
// in one batch (see [cachedGroupTx]). Any doubt sends the group the long
// way, which reads under the lock and refreshes the cache.
//
// A nil *headCache is valid and never plans a group. Only the appender
// goroutine uses it.
type headCache struct {
	valid   bool
	head    int64
	streams map[string]int64
	// skip counts groups that take the long way after the cache turned out
	// stale, so that processes writing concurrently do not fail a round
	// trip on every group.
	skip int
}

const (
	// maxCachedStreams bounds the cache; beyond it, it starts over.
	maxCachedStreams = 1 << 16
	// skipAfterStale is how many groups take the long way after a stale
	// cache.
	skipAfterStale = 64
)

func newHeadCache() *headCache {
	return &headCache{streams: map[string]int64{}}
}

// plan returns the state of a group decided from the cache, or nil when
// the group must take the long way: the cache is not valid or is being
// skipped, the group reads its stored events (lookup, which any group with
// a replacement does), or a request expects a sequence in a stream the cache does not know. A
// stream the cache does not know is taken for new; if it exists, the
// unique index on (stream, sequence) says so.
func (c *headCache) plan(reqs []*AppendRequest, lookup bool) *groupState {
	if c == nil || lookup {
		return nil
	}
	if !c.valid || c.skip > 0 {
		if c.skip > 0 {
			c.skip--
		}
		return nil
	}
	st := newGroupState(len(reqs))
	st.fromCache, st.loadedHead, st.head = true, c.head, c.head
	for _, r := range reqs {
		seq, ok := c.streams[r.Stream]
		if r.ExpectedSequence > 0 && !ok {
			return nil
		}
		if ok {
			st.streams[r.Stream] = seq
		}
	}
	return st
}

// committed records a group planned from the cache that has committed.
func (c *headCache) committed(st *groupState) {
	c.head = st.head
	c.remember(st)
}

// refresh records a group that took the long way and committed. What it
// read under the lock is exact; what the cache held stays exact only if no
// other process had written since this one's last commit.
func (c *headCache) refresh(st *groupState) {
	if c == nil {
		return
	}
	if !c.valid || st.loadedHead != c.head {
		clear(c.streams)
	}
	c.valid, c.head = true, st.head
	c.remember(st)
}

func (c *headCache) remember(st *groupState) {
	if len(c.streams)+len(st.streams) > maxCachedStreams {
		clear(c.streams)
	}
	for name, seq := range st.streams {
		c.streams[name] = seq
	}
}

// stale forgets everything after a group planned from the cache found it
// stale, and sends the next groups the long way.
func (c *headCache) stale() {
	c.reset()
	c.skip = skipAfterStale
}

// reset forgets everything: after a failed group the outcome of its commit
// may be unknown.
func (c *headCache) reset() {
	if c == nil {
		return
	}
	c.valid = false
	clear(c.streams)
}
