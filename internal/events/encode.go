package events

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// The S3 event notification body, as S3 writes it (the fields xrc and the
// AWS tooling read). aws-lambda-go's types would add urlDecodedKey, which S3
// never sends.
type (
	record struct {
		EventVersion string    `json:"eventVersion"`
		EventSource  string    `json:"eventSource"`
		AWSRegion    string    `json:"awsRegion"`
		EventTime    string    `json:"eventTime"`
		EventName    string    `json:"eventName"`
		UserIdentity principal `json:"userIdentity"`
		S3           s3Entity  `json:"s3"`
	}
	principal struct {
		PrincipalID string `json:"principalId"`
	}
	s3Entity struct {
		SchemaVersion   string   `json:"s3SchemaVersion"`
		ConfigurationID string   `json:"configurationId"`
		Bucket          s3Bucket `json:"bucket"`
		Object          s3Object `json:"object"`
	}
	s3Bucket struct {
		Name string `json:"name"`
		ARN  string `json:"arn"`
	}
	s3Object struct {
		Key       string `json:"key"`
		Size      int64  `json:"size"`
		ETag      string `json:"eTag,omitempty"`
		VersionID string `json:"versionId,omitempty"`
		Sequencer string `json:"sequencer,omitempty"`
	}
)

// Encode writes refs as one S3 event notification body, the inverse of
// Parse: keys URL-encoded as S3 encodes them ('/' kept, ' ' as '+'), times
// in S3's format. origin names the writer in userIdentity and
// configurationId, so that a synthetic event (xrc backfill's) can be told
// from S3's own in a queue or a log. Fields that are empty are left out, as
// S3 leaves out a versionId on an unversioned bucket.
func Encode(origin string, refs ...ObjectRef) ([]byte, error) {
	body := struct {
		Records []record `json:"Records"`
	}{Records: make([]record, 0, len(refs))}
	for _, r := range refs {
		if r.Bucket == "" || !ValidKey(r.Key) || r.Size < 0 || r.EventTime.IsZero() {
			return nil, fmt.Errorf("%w: cannot encode an event for %q/%q of size %d at %s", ErrInvalid, r.Bucket, r.Key, r.Size, r.EventTime)
		}
		body.Records = append(body.Records, record{
			EventVersion: "2.1",
			EventSource:  "aws:s3",
			AWSRegion:    r.Region,
			EventTime:    r.EventTime.UTC().Format("2006-01-02T15:04:05.000Z"),
			EventName:    r.EventName,
			UserIdentity: principal{PrincipalID: origin},
			S3: s3Entity{
				SchemaVersion:   "1.0",
				ConfigurationID: origin,
				Bucket:          s3Bucket{Name: r.Bucket, ARN: "arn:aws:s3:::" + r.Bucket},
				Object:          s3Object{Key: EncodeKey(r.Key), Size: r.Size, ETag: r.ETag, VersionID: r.VersionID, Sequencer: r.Sequencer},
			},
		})
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxBody {
		return nil, fmt.Errorf("%w: %d events encode to %d bytes, more than %d", ErrInvalid, len(refs), len(b), MaxBody)
	}
	return b, nil
}

// EncodeRelay writes r as the body Parse reads back as Message.Relay.
func EncodeRelay(r Relay) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		Relay Relay `json:"xrcRelay"`
	}{r})
}

// maxRelayTries bounds a relay's tries: SQS's maxReceiveCount is at most
// 1,000.
const maxRelayTries = 1000

// check refuses a relay that names no archive, or a version id that could
// not be sent as a header.
func (r *Relay) check() error {
	switch {
	case r.Region == "" || r.Bucket == "" || !ValidKey(r.Key):
		return fmt.Errorf("%w: xrcRelay needs a region, a bucket and a key of 1 to 1,024 bytes of UTF-8: region %q, bucket %q, key %q", ErrInvalid, r.Region, r.Bucket, r.Key)
	case r.Tries < 0 || r.Tries > maxRelayTries:
		return fmt.Errorf("%w: xrcRelay's tries %d are not between 0 and %d", ErrInvalid, r.Tries, maxRelayTries)
	case !HeaderSafe(r.VersionID) || !HeaderSafe(r.Region):
		return fmt.Errorf("%w: xrcRelay's version %q or region %q is not a header-safe value", ErrInvalid, r.VersionID, r.Region)
	}
	return nil
}

// EncodeKey URL-encodes an object key the way S3 does in event
// notifications (form encoding, with '/' left as is).
func EncodeKey(key string) string {
	return strings.ReplaceAll(url.QueryEscape(key), "%2F", "/")
}

// unsettled are the characters whose form in S3's event keys its guide
// leaves open and the two form encodings differ on (Go's keeps '~' and
// escapes '*', Java's the reverse).
const unsettled = "~*"

// FilterPrefix returns the notification filter value for keys starting
// with prefix. S3 matches a filter against the key as its events carry it,
// URL-encoded (its guide: a space as '+', other special characters
// percent-encoded), so a raw "dt=2024/" matches no key at all and the rule
// gets no events. It is cut before any unsettled character: a shorter
// filter only lets through events the worker's own match of the rule
// ignores.
func FilterPrefix(prefix string) string {
	if i := strings.IndexAny(prefix, unsettled); i >= 0 {
		prefix = prefix[:i]
	}
	return EncodeKey(prefix)
}

// FilterSuffix is FilterPrefix for a suffix, cut after its last unsettled
// character ("" : no suffix filter).
func FilterSuffix(suffix string) string {
	if i := strings.LastIndexAny(suffix, unsettled); i >= 0 {
		suffix = suffix[i+1:]
	}
	return EncodeKey(suffix)
}
