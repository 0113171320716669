package manifest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode. It must not panic; whatever
// it accepts must validate and survive an encode/decode round trip
// unchanged, and every rejection must be ErrInvalid.
func FuzzDecode(f *testing.F) {
	var buf bytes.Buffer
	if err := valid().Encode(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"format":1,"archiveId":"a","level":1,"objects":[]}`))
	f.Add([]byte(`{"format":1,"archiveId":"a","level":1,"objects":[{"bucket":"b","key":"k","delete":true,"destinations":[{"region":"r","bucket":"b","key":"k"}]}]}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`{"format":1,"objects":[{"size":"x"}]}`))
	f.Add([]byte("\n\n  [}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode: %v is not ErrInvalid", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("Decode accepted an invalid manifest: %v", err)
		}
		var first, second bytes.Buffer
		if err := m.Encode(&first); err != nil {
			t.Fatalf("Encode of a decoded manifest: %v", err)
		}
		m2, err := Decode(bytes.NewReader(first.Bytes()))
		if err != nil {
			t.Fatalf("Decode of an encoded manifest: %v", err)
		}
		if err := m2.Encode(&second); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Bytes(), second.Bytes()) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", first.Bytes(), second.Bytes())
		}
	})
}

// FuzzMemberName checks that MemberName always yields a name SafeMember
// accepts, whatever the key.
func FuzzMemberName(f *testing.F) {
	for _, k := range []string{"a/b.txt", "../x", "/abs", "a//b", "dir/", "é/ü", "\x00", "a/./b"} {
		f.Add(uint32(3), k)
	}
	f.Fuzz(func(t *testing.T, index uint32, key string) {
		name := MemberName(int(index), key)
		if err := SafeMember(name); err != nil {
			t.Fatalf("MemberName(%d, %q) = %q, rejected: %v", index, key, name, err)
		}
	})
}

// FuzzParseStagingKey feeds arbitrary keys, as S3 events name them, to
// ParseStagingKey: it must not panic, and what it accepts names a rule
// and a valid archive id that the key begins and ends with, and that
// StagingKey puts back to a key parsing the same.
func FuzzParseStagingKey(f *testing.F) {
	f.Add("r1/2026/12/07/01JD-archive_1.v2.tar.zst")
	f.Add("r1/x.tar.zst")
	f.Add("/2026/a.tar.zst")
	f.Add("r1/2026/../.tar.zst")
	f.Add("r1/a b.tar.zst")
	f.Fuzz(func(t *testing.T, key string) {
		rule, id, err := ParseStagingKey(key)
		if err != nil {
			if len(err.Error()) > 600 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if rule == "" || strings.Contains(rule, "/") || !strings.HasPrefix(key, rule+"/") || !strings.HasSuffix(key, "/"+id+StagingSuffix) || checkArchiveID(id) != nil {
			t.Fatalf("ParseStagingKey(%q) = %q, %q", key, rule, id)
		}
		back := StagingKey(&Manifest{RuleID: rule, ArchiveID: id, CreatedAt: testTime})
		if r2, id2, err := ParseStagingKey(back); err != nil || r2 != rule || id2 != id {
			t.Fatalf("StagingKey(%q, %q) = %q parses as %q, %q, %v", rule, id, back, r2, id2, err)
		}
	})
}
