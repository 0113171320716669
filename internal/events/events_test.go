package events

import (
	"errors"
	"strings"
	"testing"
)

// awsBody is an S3 notification as AWS delivers it to SQS: '/' kept, spaces
// as '+', '+' as %2B.
const awsBody = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
"eventTime":"2026-11-22T01:02:03.456Z","eventName":"ObjectCreated:Put",
"s3":{"s3SchemaVersion":"1.0","configurationId":"xrc","bucket":{"name":"acme-logs","arn":"arn:aws:s3:::acme-logs"},
"object":{"key":"prod/a+b%2Bc/%C3%A9t%C3%A9.json","size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","versionId":"v1","sequencer":"0055AED6DCD90281E5"}}},
{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-22T01:02:04Z","eventName":"ObjectRemoved:DeleteMarkerCreated",
"s3":{"bucket":{"name":"acme-logs"},"object":{"key":"prod/gone.json","sequencer":"0055AED6DCD90281E6"}}},
{"eventName":"ObjectRestore:Completed","s3":{"bucket":{"name":"acme-logs"},"object":{"key":"x"}}}]}`

// minioBody is what MinIO's webhook sends (via the local bridge): '/' is
// escaped too, and the event source differs.
const minioBody = `{"Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"us-east-1",
"eventTime":"2026-11-22T01:02:03.456Z","eventName":"s3:ObjectCreated:Put",
"s3":{"bucket":{"name":"src"},"object":{"key":"data%2Fa+b%2Bc.bin","size":3,"eTag":"\"abc\"","sequencer":"17A1"}}}]}`

func TestParseAWS(t *testing.T) {
	m, err := Parse([]byte(awsBody))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Refs) != 2 || m.Ignored != 1 {
		t.Fatalf("got %d refs, %d ignored", len(m.Refs), m.Ignored)
	}
	r := m.Refs[0]
	if r.Key != "prod/a b+c/été.json" || r.Bucket != "acme-logs" || r.Size != 1024 || r.VersionID != "v1" || r.Removed() {
		t.Errorf("ref = %+v", r)
	}
	if !m.Refs[1].Removed() {
		t.Error("delete marker not Removed")
	}
}

func TestParseMinIO(t *testing.T) {
	// MinIO prefixes event names with "s3:"; normalise and keep the key.
	m, err := Parse([]byte(minioBody))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Refs) != 1 || m.Refs[0].Key != "data/a b+c.bin" || m.Refs[0].ETag != "abc" || m.Refs[0].EventName != "ObjectCreated:Put" {
		t.Fatalf("refs = %+v", m.Refs)
	}
}

func TestParseTagging(t *testing.T) {
	// AWS's name, and MinIO's, which files tag changes under ObjectCreated
	// with a sequencer: both read as S3's, without one.
	body := `{"Records":[
{"eventName":"ObjectTagging:Put","eventTime":"2026-11-22T01:02:03Z","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":5000000000,"eTag":"e","versionId":"v1"}}},
{"eventName":"s3:ObjectCreated:PutTagging","eventTime":"2026-11-22T01:02:04.000Z","s3":{"bucket":{"name":"b"},"object":{"key":"k","eTag":"e","sequencer":"17A1"}}},
{"eventName":"s3:ObjectCreated:DeleteTagging","eventTime":"2026-11-22T01:02:05.000Z","s3":{"bucket":{"name":"b"},"object":{"key":"k","sequencer":"17A2"}}}]}`
	m, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ObjectTagging:Put", "ObjectTagging:Put", "ObjectTagging:Delete"}
	if len(m.Refs) != len(want) || m.Ignored != 0 {
		t.Fatalf("got %d refs, %d ignored", len(m.Refs), m.Ignored)
	}
	for i, r := range m.Refs {
		if r.EventName != want[i] || !r.Retagged() || r.Removed() || r.Sequencer != "" || r.Size != 0 {
			t.Errorf("ref %d = %+v", i, r)
		}
	}
}

func TestParseTestEventAndSNS(t *testing.T) {
	m, err := Parse([]byte(`{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-22T01:00:00Z","Bucket":"acme-logs","RequestId":"1","HostId":"h"}`))
	if err != nil || !m.Test {
		t.Fatalf("test event: %+v %v", m, err)
	}
	sns := `{"Type":"Notification","MessageId":"1","Message":` + quote(awsBody) + `}`
	m, err = Parse([]byte(sns))
	if err != nil || len(m.Refs) != 2 {
		t.Fatalf("sns: %+v %v", m, err)
	}
}

func quote(s string) string {
	out := []byte{'"'}
	for _, c := range []byte(s) {
		switch c {
		case '"', '\\':
			out = append(out, '\\', c)
		case '\n':
			out = append(out, '\\', 'n')
		default:
			out = append(out, c)
		}
	}
	return string(append(out, '"'))
}

func TestParseInvalid(t *testing.T) {
	for name, body := range map[string]string{
		"not json":   `hello`,
		"no records": `{"foo":1}`,
		"no bucket":  `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"a"}}}]}`,
		"no key":     `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}`,
		"bad escape": `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a%zz"}}}]}`,
		"bad size":   `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a","size":-1}}}]}`,
		// A sequencer, version id or ETag becomes a metadata header of
		// the write: one with CR/LF failed every write of its archive,
		// and one not hex was ordered wrongly.
		"size too large":     `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a","size":4611686018427387904}}}]}`,
		"sequencer not hex":  `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a","sequencer":"zz\r\nX-Evil: 1"}}}]}`,
		"sequencer too long": `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a","sequencer":"` + strings.Repeat("A", 65) + `"}}}]}`,
		"version with LF":    `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a","versionId":"v\n1"}}}]}`,
		"ETag with NUL":      `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a","eTag":"\u0000"}}}]}`,
		// S3's keys are UTF-8: this one would read as gone, and its
		// message be acknowledged at debug.
		"key not UTF-8": `{"Records":[{"eventName":"ObjectCreated:Put","eventTime":"2026-01-01T00:00:00.000Z","s3":{"bucket":{"name":"b"},"object":{"key":"a%FF%FE"}}}]}`,
		"records obj":   `{"Records":{}}`,
		"null record":   `{"Records":[null]}`,
		"no name":       `{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`,
		"test with records": `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a","size":1}}}],` +
			`"Event":"s3:TestEvent"}`,
		"nested sns": `{"Type":"Notification","Message":"{\"Type\":\"Notification\",\"Message\":\"{}\"}"}`,
		// S3 dates every record: a delete without a time was older than
		// any copy without a sequencer, and passed it by.
		"no time": `{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"a"}}}]}`,
		// SNS wraps the body and adds nothing S3's: beside it, a test
		// acknowledged the wrapped records, and records were ignored.
		"sns test beside records": `{"Type":"Notification","Event":"s3:TestEvent","Message":"{\"Records\":[]}"}`,
		"sns records beside":      `{"Type":"Notification","Message":"{\"Event\":\"s3:TestEvent\"}","Records":[]}`,
		// A relay is a source's own request, alone in its body.
		"relay without key":     `{"xrcRelay":{"region":"store","bucket":"stg"}}`,
		"relay with LF version": `{"xrcRelay":{"region":"store","bucket":"stg","key":"r1/a.tar.zst","versionId":"v\n"}}`,
		"relay beside records":  `{"xrcRelay":{"region":"store","bucket":"stg","key":"r1/a.tar.zst"},"Records":[]}`,
		"relay wrapped in SNS":  `{"Type":"Notification","Message":"{\"xrcRelay\":{\"region\":\"store\",\"bucket\":\"stg\",\"key\":\"k\"}}"}`,
		"relay null":            `{"xrcRelay":null}`,
	} {
		if _, err := Parse([]byte(body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestCompareSequencer(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"0055AED6DCD90281E5", "0055AED6DCD90281E6", -1},
		{"0055aed6dcd90281e6", "0055AED6DCD90281E5", 1},
		// Different lengths: the shorter is right-padded with zeros.
		{"0062E99A88DD0000", "0062E99A88DC407460", 1},
		{"0062E99A88DC4075", "0062E99A88DC407460", 1},
		{"0062E99A88DC4074", "0062E99A88DC407460", -1},
		{"0062E99A88DC4074", "0062E99A88DC407400", 0},
		{"100", "FF", -1},
		{"00FF", "FF", -1},
		{"", "01", -1},
		{"01", "", 1},
		{"", "", 0},
	}
	for _, tc := range cases {
		if got := CompareSequencer(tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%q,%q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(awsBody))
	f.Add([]byte(minioBody))
	f.Add([]byte(`{"Event":"s3:TestEvent"}`))
	f.Add([]byte(`{"Type":"Notification","Message":"{\"Records\":[]}"}`))
	f.Add([]byte(`{"xrcRelay":{"region":"store","bucket":"stg","key":"r1/a.tar.zst","versionId":"v1"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if m.Test && len(m.Refs) > 0 {
			t.Fatalf("a test event with %d records", len(m.Refs))
		}
		for _, r := range m.Refs {
			if r.Bucket == "" || !ValidKey(r.Key) || r.Size < 0 || r.Size > maxObjectSize || !ValidSequencer(r.Sequencer) ||
				!HeaderSafe(r.VersionID) || !HeaderSafe(r.ETag) || r.EventTime.IsZero() {
				t.Fatalf("accepted bad ref %+v", r)
			}
		}
		if r := m.Relay; r != nil {
			if len(m.Refs) > 0 || m.Test || r.Region == "" || r.Bucket == "" || r.Key == "" || !HeaderSafe(r.VersionID) {
				t.Fatalf("accepted bad relay %+v beside %d refs", *r, len(m.Refs))
			}
			body, err := EncodeRelay(*r)
			if err != nil {
				t.Fatalf("EncodeRelay(%+v) of a parsed relay: %v", *r, err)
			}
			if back, err := Parse(body); err != nil || back.Relay == nil || *back.Relay != *r {
				t.Fatalf("relay %+v read back as %+v, %v", *r, back.Relay, err)
			}
		}
	})
}

// FuzzCompareSequencer: an order (antisymmetric, transitive) that agrees
// with the byte order DynamoDB keeps tombstones' upper-cased sequencers in
// (tombstone.Store.Put), but where two are one delete once padded.
func FuzzCompareSequencer(f *testing.F) {
	f.Add("0055AED6DCD90281E5", "0055aed6dcd90281e6", "0062E99A88DC4074")
	f.Add("00FF", "FF", "")
	f.Add("100", "1000", "0FFF")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		if !ValidSequencer(a) || !ValidSequencer(b) || !ValidSequencer(c) {
			return
		}
		ab, ba := CompareSequencer(a, b), CompareSequencer(b, a)
		if ab != -ba {
			t.Fatalf("Compare(%q,%q) = %d but Compare(%q,%q) = %d", a, b, ab, b, a, ba)
		}
		if bc := CompareSequencer(b, c); ab == bc && ab != 0 && CompareSequencer(a, c) != ab {
			t.Fatalf("not transitive: %q, %q, %q", a, b, c)
		}
		if a != "" && b != "" && ab != 0 && strings.Compare(strings.ToUpper(a), strings.ToUpper(b)) != ab {
			t.Fatalf("Compare(%q,%q) = %d disagrees with their upper-cased byte order", a, b, ab)
		}
	})
}
