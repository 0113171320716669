package deliver

import "sync"

// Most keys a target writes are new in their destination. For those, the
// HEAD before a small object's PUT only learns that nothing is there, which
// PUT If-None-Match: * learns as well, in the same request. The catch is the
// key that exists: the refused PUT is one more request before the HEAD and
// the PUT If-Match. Per write, reading first costs HEAD + PUT; writing first
// costs PUT + p·(PUT + HEAD) when a share p of keys exist, so it is cheaper
// while p < HEAD / (HEAD + PUT): 0.4 / 5.4 ≈ 7% at S3 Standard's request
// prices ($0.0004 and $0.005 per 1,000). The worker watches p per
// destination bucket, from refused PUTs and from what HEADs find, and
// reads first once it is above that, so an overwrite-heavy bucket does not
// pay for the guess.
const (
	headFirstAbove = 0.074
	// overwriteMemory is how many recent writes the share reflects (an
	// exponential decay), enough to be steady, few enough to follow a
	// workload that changes.
	overwriteMemory = 256
)

// overwrites estimates, per destination bucket, the recent share of writes
// whose key already existed.
type overwrites struct {
	mu      sync.Mutex
	buckets map[string]*share
}

type share struct{ writes, existed float64 }

// headFirst reports whether writes to bucket should read the key first.
func (o *overwrites) headFirst(bucket string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.buckets[bucket]
	return s != nil && s.existed > headFirstAbove*s.writes
}

// observe records whether a write to bucket found its key present.
func (o *overwrites) observe(bucket string, existed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.buckets == nil {
		o.buckets = map[string]*share{}
	}
	s := o.buckets[bucket]
	if s == nil {
		s = &share{}
		o.buckets[bucket] = s
	}
	const keep = 1 - 1.0/overwriteMemory
	s.writes = s.writes*keep + 1
	s.existed *= keep
	if existed {
		s.existed++
	}
}
