package events

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEncodeRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 2, 3, 456e6, time.UTC)
	refs := []ObjectRef{
		{EventName: "ObjectCreated:Put", EventTime: at, Region: "us-east-1", Bucket: "acme-logs",
			Key: "prod/a b+c/été%41?.json", VersionID: "v1", ETag: "d41d8cd98f00b204e9800998ecf8427e", Size: 1024},
		{EventName: "ObjectCreated:Put", EventTime: at, Region: "us-east-1", Bucket: "acme-logs", Key: "empty", Size: 0, Sequencer: "0055AED6DCD90281E5"},
	}
	body, err := Encode("xrc-backfill", refs...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"key":"prod/a+b%2Bc/%C3%A9t%C3%A9%2541%3F.json"`) {
		t.Errorf("key not encoded as S3 does: %s", body)
	}
	if strings.Contains(string(body), "urlDecodedKey") || strings.Contains(string(body), `"versionId":""`) {
		t.Errorf("fields S3 does not send: %s", body)
	}
	m, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Refs) != len(refs) {
		t.Fatalf("%d refs back, want %d", len(m.Refs), len(refs))
	}
	for i, got := range m.Refs {
		if want := refs[i]; got != want {
			t.Errorf("ref %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	if _, err := Encode("x", ObjectRef{Bucket: "b"}); err == nil {
		t.Error("an event without a key encoded")
	}
}

// TestRelayRoundTrip: a source's relay request reads back as sent, alone.
func TestRelayRoundTrip(t *testing.T) {
	r := Relay{Region: "store-1", Bucket: "stg", Key: "r1/2026/12/06/x y.tar.zst", VersionID: "v1", Tries: 3}
	body, err := EncodeRelay(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if m.Relay == nil || *m.Relay != r || len(m.Refs) != 0 || m.Test {
		t.Errorf("relay %s read back as %+v", body, m)
	}
	if _, err := EncodeRelay(Relay{Region: "store-1", Bucket: "stg"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a relay of no archive encoded: %v", err)
	}
	if _, err := Parse([]byte(`{"xrcRelay":{"region":"s","bucket":"b","key":"k","tries":-1}}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("a relay of -1 tries parsed: %v", err)
	}
}

// FuzzEncodeRoundTrip: whatever key Encode accepts, Parse reads back.
func FuzzEncodeRoundTrip(f *testing.F) {
	f.Add("prod/a b+c/été.json", int64(3))
	f.Add("%zz/..", int64(0))
	f.Fuzz(func(t *testing.T, key string, size int64) {
		ref := ObjectRef{EventName: "ObjectCreated:Put", Bucket: "b", Key: key, Size: size, EventTime: time.Unix(0, 0).UTC()}
		body, err := Encode("fuzz", ref)
		if err != nil {
			return
		}
		m, err := Parse(body)
		if err != nil {
			t.Fatalf("Parse(Encode(%q)): %v", key, err)
		}
		if len(m.Refs) != 1 || m.Refs[0] != ref {
			t.Fatalf("round trip of %q: %+v", key, m.Refs)
		}
	})
}

// TestFilterValues: a notification filter is written as S3 writes the key
// in its events, since that is what S3 matches it against: a raw
// "dt=2024/" matched nothing and its rule got no events. Each filter
// matches the encoded keys its rule covers.
func TestFilterValues(t *testing.T) {
	for _, c := range []struct{ prefix, suffix, wantPrefix, wantSuffix string }{
		{"prod/", ".csv", "prod/", ".csv"},
		{"dt=2024-01-01/", ".csv.gz", "dt%3D2024-01-01/", ".csv.gz"},
		{"my data/", " final.json", "my+data/", "+final.json"},
		{"données/", "été.txt", "donn%C3%A9es/", "%C3%A9t%C3%A9.txt"},
		{"a+b/", "+c", "a%2Bb/", "%2Bc"},
		{"home/~alice/x", "a~b.csv", "home/", "b.csv"}, // cut at '~' and '*'
		{"*", "*", "", ""},
	} {
		p, s := FilterPrefix(c.prefix), FilterSuffix(c.suffix)
		if p != c.wantPrefix || s != c.wantSuffix {
			t.Errorf("%q, %q: filters %q, %q, want %q, %q", c.prefix, c.suffix, p, s, c.wantPrefix, c.wantSuffix)
		}
		key := EncodeKey(c.prefix + "part 0" + c.suffix)
		if !strings.HasPrefix(key, p) || !strings.HasSuffix(key, s) {
			t.Errorf("%q: filters %q, %q do not match the key as events carry it, %q", c.prefix, p, s, key)
		}
	}
}
