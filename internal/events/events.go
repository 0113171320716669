// Package events parses S3 event notification messages as SQS delivers them
// (directly, or wrapped in an SNS envelope) into object references. It treats
// the body as hostile input: sizes are capped and every record is checked.
package events

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	lambdaevents "github.com/aws/aws-lambda-go/events"
)

// MaxBody is the largest body Parse accepts (SQS's own message limit).
const MaxBody = 1 << 20

// ErrInvalid marks a body that no retry can make valid.
var ErrInvalid = errors.New("invalid event")

// ObjectRef is one object an event is about.
type ObjectRef struct {
	EventName string // e.g. ObjectCreated:Put
	EventTime time.Time
	Region    string
	Bucket    string
	Key       string // URL-decoded
	VersionID string
	ETag      string
	Size      int64
	Sequencer string
}

// Removed reports an ObjectRemoved event (a delete or a delete marker).
func (r ObjectRef) Removed() bool { return strings.HasPrefix(r.EventName, "ObjectRemoved:") }

// Retagged reports an ObjectTagging event: the object's tags were set or
// removed, its bytes and metadata unchanged. Such an event carries no
// sequencer (S3 orders only PUTs and DELETEs with one).
func (r ObjectRef) Retagged() bool { return strings.HasPrefix(r.EventName, "ObjectTagging:") }

// RemovesCurrent reports a removal that changes what the key reads as: a
// delete marker on a versioned bucket, or a delete on an unversioned one.
// Deleting one version for good (ObjectRemoved:Delete with a version id)
// does not; S3 Replication does not replicate such deletes either, so that
// removing an old version never deletes a destination's current object.
func (r ObjectRef) RemovesCurrent() bool {
	switch r.EventName {
	case "ObjectRemoved:DeleteMarkerCreated":
		return true
	case "ObjectRemoved:Delete":
		return Version(r.VersionID) == ""
	}
	return false
}

// MayKeepCurrent reports a removal that RemovesCurrent counts, although
// the key may still read as an object after it: ObjectRemoved:Delete of
// version "null" is a delete on an unversioned bucket, or the null version
// of a versioned (or suspended) one deleted for good, current or not. The
// source reads the key before it propagates such a delete.
func (r ObjectRef) MayKeepCurrent() bool {
	return r.EventName == "ObjectRemoved:Delete" && r.VersionID == "null"
}

// Version is a version id as a write's identity: "" for "null", the name S3
// gives the version of an unversioned (or versioning-suspended) write, which
// an overwrite keeps, so it pins nothing.
func Version(v string) string {
	if v == "null" {
		return ""
	}
	return v
}

// Message is a parsed body.
type Message struct {
	// Test is set for the s3:TestEvent S3 sends when notifications are
	// configured; it carries no objects.
	Test bool
	Refs []ObjectRef
	// Ignored counts records of other event types (restore, replication,
	// lifecycle, ...), which xrc does not act on.
	Ignored int
	// Relay, set alone, is a source worker's own request to copy a staged
	// archive to a direct region (EncodeRelay); only a source acts on it.
	Relay *Relay
}

// Relay asks a source worker to copy an archive it staged to the staging
// bucket of a region S3 Replication does not reach (config.Region.Direct),
// whose copy failed when the archive was staged. The source sends it to
// its own queue, so that one region's trouble is retried on its own, and
// reaches the DLQ on its own, while the objects' messages, whose archive
// reached every other region, are done.
type Relay struct {
	Region    string `json:"region"` // the direct region, by its config name
	Bucket    string `json:"bucket"` // the source region's staging bucket
	Key       string `json:"key"`    // the archive's staging key
	VersionID string `json:"versionId,omitempty"`
	// Tries counts the receives of the relay's earlier messages (as SQS
	// counts them: the one that sent it again, which tried nothing, not
	// among them): one sent again (waiting for capacity, or at a stop)
	// keeps them, so that it reaches the DLQ after maxReceiveCount
	// receives in all, not never.
	Tries int `json:"tries,omitempty"`
}

type envelope struct {
	Records []json.RawMessage `json:"Records"`
	// S3 test event.
	Event string `json:"Event"`
	// SNS envelope, for S3 -> SNS -> SQS fan-out.
	Type    string `json:"Type"`
	Message string `json:"Message"`
	// A source worker's own relay request (Relay).
	Relay *Relay `json:"xrcRelay"`
}

// minioTagging maps MinIO's names of tag changes to S3's.
var minioTagging = map[string]string{
	"ObjectCreated:PutTagging":    "ObjectTagging:Put",
	"ObjectCreated:DeleteTagging": "ObjectTagging:Delete",
}

// Parse decodes one SQS message body.
func Parse(body []byte) (Message, error) {
	return parse(body, 0)
}

func parse(body []byte, depth int) (Message, error) {
	if len(body) > MaxBody {
		return Message{}, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrInvalid, len(body), MaxBody)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Message{}, fmt.Errorf("%w: body is not an S3 event JSON object: %v", ErrInvalid, err)
	}
	switch {
	case env.Relay != nil && (depth > 0 || env.Records != nil || env.Event != "" || env.Type != "" || env.Message != ""):
		return Message{}, fmt.Errorf("%w: an xrcRelay with anything beside it", ErrInvalid)
	case env.Relay != nil:
		if err := env.Relay.check(); err != nil {
			return Message{}, err
		}
		return Message{Relay: env.Relay}, nil
	case env.Type == "Notification" && (env.Records != nil || env.Event != ""):
		// SNS wraps S3's body in Message, and nothing beside it: records
		// or a test beside the wrapped body would be dropped, one way or
		// the other.
		return Message{}, fmt.Errorf("%w: an SNS notification with Records or Event beside its Message", ErrInvalid)
	case env.Event == "s3:TestEvent" && env.Records == nil:
		return Message{Test: true}, nil
	case env.Event == "s3:TestEvent":
		// S3's test event has no records: one that has them is no
		// test, and acknowledging it would drop them.
		return Message{}, fmt.Errorf("%w: an s3:TestEvent with Records", ErrInvalid)
	case env.Type == "Notification" && env.Message != "" && depth == 0:
		return parse([]byte(env.Message), depth+1)
	case env.Records == nil:
		return Message{}, fmt.Errorf("%w: no Records array", ErrInvalid)
	}
	var m Message
	for i, raw := range env.Records {
		var rec lambdaevents.S3EventRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return Message{}, fmt.Errorf("%w: Records[%d]: %v", ErrInvalid, i, err)
		}
		if rec.EventName == "" {
			// S3 names every record's event: ignoring one without
			// (null, or not an S3 record) would drop what it meant.
			return Message{}, fmt.Errorf("%w: Records[%d] has no eventName", ErrInvalid, i)
		}
		// MinIO prefixes event names with "s3:"; AWS does not.
		rec.EventName = strings.TrimPrefix(rec.EventName, "s3:")
		o := rec.S3.Object
		if name, ok := minioTagging[rec.EventName]; ok {
			// MinIO files tag changes under ObjectCreated, with a
			// sequencer; read as S3 names and orders them.
			rec.EventName, o.Sequencer = name, ""
		}
		if !strings.HasPrefix(rec.EventName, "ObjectCreated:") && !strings.HasPrefix(rec.EventName, "ObjectRemoved:") &&
			!strings.HasPrefix(rec.EventName, "ObjectTagging:") {
			m.Ignored++
			continue
		}
		ref := ObjectRef{
			EventName: rec.EventName,
			EventTime: rec.EventTime,
			Region:    rec.AWSRegion,
			Bucket:    rec.S3.Bucket.Name,
			Key:       o.URLDecodedKey,
			VersionID: o.VersionID,
			ETag:      strings.Trim(o.ETag, `"`),
			Size:      o.Size,
			Sequencer: o.Sequencer,
		}
		if ref.Retagged() {
			// A tag change sends no bytes: its object's size would only
			// take a batch's byte budget.
			ref.Size = 0
		}
		switch {
		case ref.Bucket == "":
			return Message{}, fmt.Errorf("%w: Records[%d]: no bucket name", ErrInvalid, i)
		case o.Key == "":
			return Message{}, fmt.Errorf("%w: Records[%d]: no object key in bucket %s", ErrInvalid, i, ref.Bucket)
		case !ValidKey(ref.Key):
			// URLDecodedKey is empty when the key is not valid URL
			// encoding. S3's keys are UTF-8: one that is not is no S3
			// event's, and read as gone it would be acknowledged unseen.
			return Message{}, fmt.Errorf("%w: Records[%d]: bad object key %q in bucket %s (not URL-encoded UTF-8 of 1 to 1,024 bytes)", ErrInvalid, i, o.Key, ref.Bucket)
		case ref.Size < 0 || ref.Size > maxObjectSize:
			// Sizes are summed into a batch's bytes: one past S3's
			// largest object could wrap them.
			return Message{}, fmt.Errorf("%w: Records[%d]: size %d of %s/%s is not between 0 and S3's largest object", ErrInvalid, i, ref.Size, ref.Bucket, ref.Key)
		case !ValidSequencer(ref.Sequencer):
			// S3's are hex; one of anything else would be ordered
			// wrongly, and written as a metadata header it could fail
			// every write of its archive.
			return Message{}, fmt.Errorf("%w: Records[%d]: sequencer %q of %s/%s is not hex (at most %d digits)", ErrInvalid, i, ref.Sequencer, ref.Bucket, ref.Key, MaxSequencer)
		case !HeaderSafe(ref.VersionID) || !HeaderSafe(ref.ETag):
			return Message{}, fmt.Errorf("%w: Records[%d]: version %q or ETag %q of %s/%s is not a header-safe value", ErrInvalid, i, ref.VersionID, ref.ETag, ref.Bucket, ref.Key)
		case ref.EventTime.IsZero():
			// S3 dates every record; a delete's time orders it against a
			// copy without a sequencer (backfill's): year 1 would make
			// every such delete look older than the copy.
			return Message{}, fmt.Errorf("%w: Records[%d]: no eventTime for %s/%s", ErrInvalid, i, ref.Bucket, ref.Key)
		}
		m.Refs = append(m.Refs, ref)
	}
	return m, nil
}

// ValidKey reports whether key could name an S3 object: 1 to 1,024 bytes
// of UTF-8.
func ValidKey(key string) bool {
	return key != "" && len(key) <= 1024 && utf8.ValidString(key)
}

// maxObjectSize is S3's largest object, 10,000 parts of 5 GiB (as
// manifest.MaxObjectSize, which this package does not import).
const maxObjectSize = 10_000 * 5 << 30

// MaxSequencer bounds a sequencer's digits (S3's have 16 to 18).
const MaxSequencer = 64

// ValidSequencer reports whether seq is none or hex digits, at most
// MaxSequencer of them: S3's are, and one of anything else would be
// ordered wrongly, and written as a metadata header could fail every
// write of its archive.
func ValidSequencer(seq string) bool {
	if len(seq) > MaxSequencer {
		return false
	}
	for i := 0; i < len(seq); i++ {
		if c := seq[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// HeaderSafe reports whether v may travel as an HTTP header value (a
// version id, an ETag), at most 1,024 bytes of printable ASCII.
func HeaderSafe(v string) bool {
	if len(v) > 1024 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// CompareSequencer orders two S3 event sequencers for the same key: -1, 0 or
// 1. Sequencers are hex strings of varying length, compared as S3's user
// guide says (event message structure): the shorter right-padded with
// zeros, then as text. Compared as numbers, a shorter sequencer with a
// greater prefix, a later event, came out older. Case is ignored; an empty
// sequencer sorts first.
func CompareSequencer(a, b string) int {
	if a == "" || b == "" {
		return cmp.Compare(min(len(a), 1), min(len(b), 1))
	}
	for i := range max(len(a), len(b)) {
		if c := cmp.Compare(hexDigit(a, i), hexDigit(b, i)); c != 0 {
			return c
		}
	}
	return 0
}

// hexDigit is s's i-th digit, upper-cased, or the zero S3 pads it with.
func hexDigit(s string, i int) byte {
	if i >= len(s) {
		return '0'
	}
	c := s[i]
	if 'a' <= c && c <= 'z' {
		c -= 'a' - 'A'
	}
	return c
}
