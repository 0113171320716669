package dataset

import (
	"strings"
	"testing"
)

func TestMixedDeterministic(t *testing.T) {
	a, b := Mixed("data/", 48, 1), Mixed("data/", 48, 1)
	long := 0
	for i := range a {
		if a[i].Key != b[i].Key || string(a[i].Data) != string(b[i].Data) {
			t.Fatalf("object %d differs between runs", i)
		}
		if len(a[i].Key) > 1024 {
			t.Errorf("key %d is %d bytes, over S3's 1024", i, len(a[i].Key))
		}
		if len(a[i].Key) == 1024 {
			long++
			for _, seg := range strings.Split(a[i].Key, "/") {
				if len(seg) > 255 {
					t.Errorf("segment of %d bytes", len(seg))
				}
			}
		}
	}
	if long == 0 {
		t.Error("no 1,024-byte key")
	}
}
