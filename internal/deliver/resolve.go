package deliver

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// ErrRejected marks an archive this region's config does not allow: its
// manifest names a rule, place or delete that the config does not map it
// to. Nothing is written from it; its message goes to the dead-letter queue.
var ErrRejected = errors.New("archive rejected")

// maxReasons bounds the problems a rejection lists.
const maxReasons = 5

// plan is what this worker does with one archive, decided from its own
// config alone.
type plan struct {
	rule *config.Rule
	// routes[i] are this region's destinations of m.Objects[i], from the
	// config (never from the manifest), without duplicates.
	routes [][]config.Route
}

// resolve decides where each object of m goes. The manifest only
// proposes: its rule must be configured, the archive must sit under that
// rule's staging prefix at a key naming its id, every object must be one
// the rule covers, every destination it proposes must be exactly what the
// rule maps the key to (region, bucket, key after prefix rewrite, storage
// class policy, KMS key), and deletes need a rule with deletes: true.
// Anything else rejects the whole archive, naming the field: a staging
// bucket is not a place to take orders from.
func (w *Worker) resolve(stagingKey string, staged time.Time, m *manifest.Manifest) (*plan, error) {
	reject := func(format string, args ...any) error {
		return fmt.Errorf("%w: archive %s: %s", ErrRejected, m.ArchiveID, fmt.Sprintf(format, args...))
	}
	rule, ok := w.Config.Rule(m.RuleID)
	if !ok {
		return nil, reject("manifest ruleId %q is not a rule of this deployment's config", m.RuleID)
	}
	if prefix := manifest.StagingPrefix(rule.ID); !strings.HasPrefix(stagingKey, prefix) {
		return nil, reject("staging key %q is not under rule %s's staging prefix %q", stagingKey, rule.ID, prefix)
	}
	// A source stages an archive under a key naming its id, and that key
	// stands for the archive: its uploads are recorded, resumed and
	// aborted under it, and a delivery found gone is looked up in the
	// ledger by the id the key names. An archive under another's key
	// would pass for that one. (The date in the key is only for listings.)
	if _, id, err := manifest.ParseStagingKey(stagingKey); err != nil || id != m.ArchiveID {
		return nil, reject("staging key %q does not name the archive's id %q, as its source would have staged it (%s)", stagingKey, m.ArchiveID, manifest.StagingKey(m))
	}
	if m.SourceRegion != rule.SourceRegion {
		return nil, reject("manifest sourceRegion %q is not rule %s's source region %q", m.SourceRegion, rule.ID, rule.SourceRegion)
	}
	p := &plan{rule: rule, routes: make([][]config.Route, len(m.Objects))}
	var reasons []string
	problem := func(i int, o *manifest.Object, format string, args ...any) {
		if len(reasons) < maxReasons {
			reasons = append(reasons, fmt.Sprintf("objects[%d] (key %q): ", i, o.Key)+fmt.Sprintf(format, args...))
		} else if len(reasons) == maxReasons {
			reasons = append(reasons, "and more")
		}
	}
	// Every time a manifest gives was read before the archive was
	// staged (staged: its staging object's Last-Modified, or a replica's,
	// later). One far past it cannot be a source's: dated in year 9999,
	// a delete's tombstone or a write's provenance would win against
	// every later write of the key for as long as it lasted. A day's
	// margin for a source's clock.
	latest := staged.Add(futureMargin)
	future := func(t time.Time) bool { return !staged.IsZero() && t.After(latest) }
	if future(m.CreatedAt) {
		return nil, reject("createdAt %s is after the archive was staged (%s)", m.CreatedAt.Format(time.RFC3339), staged.Format(time.RFC3339))
	}
	for i := range m.Objects {
		o := &m.Objects[i]
		switch {
		case future(o.LastModified) || future(o.Seen) || future(o.EventTime):
			problem(i, o, "lastModified %s, seen %s or eventTime %s is after the archive was staged (%s)", o.LastModified.Format(time.RFC3339),
				o.Seen.Format(time.RFC3339), o.EventTime.Format(time.RFC3339), staged.Format(time.RFC3339))
			continue
		case o.Bucket != rule.SourceBucket:
			problem(i, o, "bucket %q is not rule %s's source bucket %q", o.Bucket, rule.ID, rule.SourceBucket)
			continue
		case !rule.Matches(o.Bucket, o.Key):
			problem(i, o, "key is not covered by rule %s (prefix %q, suffix %q, ignore %q)", rule.ID, rule.Prefix, rule.Suffix, rule.Ignore)
			continue
		case o.Delete && !rule.Deletes:
			problem(i, o, "delete entry, but rule %s does not propagate deletes (deletes: false)", rule.ID)
			continue
		}
		routes, err := rule.Routes(o.Key)
		if err != nil {
			problem(i, o, "%v", err)
			continue
		}
		for j, d := range o.Destinations {
			if d.Region != w.Region {
				// Another region's target judges it, by its own config:
				// checked here, a change to one region's destinations
				// would make every other region refuse the rule's
				// archives while the regions' configs differ, and those
				// archives for good.
				continue
			}
			proposed := config.Route{Region: d.Region, Bucket: d.Bucket, Key: d.Key, StorageClass: d.StorageClass, KMSKeyID: d.KMSKeyID}
			if !slices.Contains(routes, proposed) {
				problem(i, o, "destinations[%d] %s is not where rule %s sends this key (%s)", j, describe(proposed), rule.ID, describeAll(routes))
			}
		}
		for _, r := range routes {
			if r.Region == w.Region {
				p.routes[i] = append(p.routes[i], r)
			}
		}
	}
	if len(reasons) > 0 {
		return nil, reject("%s", strings.Join(reasons, "; "))
	}
	return p, nil
}

// futureMargin is how far past its archive's staging a manifest's times
// may be: a source's clock, not S3's, dates what it read.
const futureMargin = 24 * time.Hour

func describe(r config.Route) string {
	s := fmt.Sprintf("s3://%s/%s in %s", r.Bucket, r.Key, r.Region)
	if r.StorageClass != "" {
		s += ", storage class " + r.StorageClass
	}
	if r.KMSKeyID != "" {
		s += ", KMS key " + r.KMSKeyID
	}
	return s
}

func describeAll(routes []config.Route) string {
	parts := make([]string, len(routes))
	for i, r := range routes {
		parts[i] = describe(r)
	}
	return strings.Join(parts, "; ")
}
