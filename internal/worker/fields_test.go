package worker_test

import (
	"testing"

	"github.com/xrc-dev/xrc/internal/events"
	"github.com/xrc-dev/xrc/internal/worker"
)

// TestMessageFields: the lines that settle a message name what it is
// about: its objects, or a relay's archive and direct region (the
// runtime's own lines, at a last receive or a stop, included).
func TestMessageFields(t *testing.T) {
	fields := func(m events.Message) map[string]any {
		got := map[string]any{}
		for _, f := range worker.MessageFields(m) {
			got[f.Key] = f.String
		}
		return got
	}
	got := fields(events.Message{Relay: &events.Relay{Region: "store", Bucket: "stg", Key: "r1/a.tar.zst"}})
	if got["bucket"] != "stg" || got["key"] != "r1/a.tar.zst" || got["region"] != "store" {
		t.Errorf("a relay's fields: %v", got)
	}
	got = fields(events.Message{Refs: []events.ObjectRef{{Bucket: "b", Key: "k"}}})
	if got["bucket"] != "b" || got["key"] != "k" || len(got) != 2 {
		t.Errorf("an object's fields: %v", got)
	}
}
