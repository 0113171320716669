//go:build linux

package main

// Where a run's time went, from the logs: when the bridge forwarded the
// source bucket's events to SQS, when the source worker staged archives,
// when their replicas' events reached the target queue, when the target
// worker delivered them. Seconds after the first upload.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// span is the first and last time of something, in seconds after t0.
type span struct {
	Count int     `json:"count"`
	First float64 `json:"first"`
	Last  float64 `json:"last"`
}

func (s *span) add(t, t0 time.Time) {
	x := t.Sub(t0).Seconds()
	if s.Count == 0 || x < s.First {
		s.First = x
	}
	if s.Count == 0 || x > s.Last {
		s.Last = x
	}
	s.Count++
}

func (s span) String() string {
	if s.Count == 0 {
		return "none"
	}
	return fmt.Sprintf("%.1f-%.1f (%d)", s.First, s.Last, s.Count)
}

// timeline of one run, in seconds after the first upload.
type timeline struct {
	UploadEnd float64 `json:"uploadEnd"`
	// xrc: the source bucket's events forwarded to the source queue (the
	// emulated S3 -> SQS notification path), archives staged by the source
	// worker, their replicas' events forwarded to the target queue (S3
	// Replication done), archives delivered by the target worker.
	Events    *span `json:"events,omitempty"`
	Staged    *span `json:"staged,omitempty"`
	Replicas  *span `json:"replicas,omitempty"`
	Delivered *span `json:"delivered,omitempty"`
	// rclone: when the rclone process ended.
	CopyEnd  float64 `json:"copyEnd,omitempty"`
	Verified float64 `json:"verified"` // the last object verified: the wall time
}

func (t timeline) String() string {
	if t.Events == nil {
		return fmt.Sprintf("upload ends %.1f, rclone ends %.1f, last object verified %.1f", t.UploadEnd, t.CopyEnd, t.Verified)
	}
	return fmt.Sprintf("upload ends %.1f; source events to SQS %s; archives staged %s; replicas' events %s; delivered %s; last object verified %.1f",
		t.UploadEnd, t.Events, t.Staged, t.Replicas, t.Delivered, t.Verified)
}

// xrcTimeline reads the bridge's and the workers' logs for [t0, t1].
func (b *bench) xrcTimeline(t0, t1 time.Time, uploadEnd time.Duration, srcBucket, prefix, tgtStaging string, src, tgt *proc) timeline {
	tl := timeline{UploadEnd: uploadEnd.Seconds(), Verified: t1.Sub(t0).Seconds(),
		Events: &span{}, Staged: &span{}, Replicas: &span{}, Delivered: &span{}}
	in := func(t time.Time) bool { return !t.Before(t0) && !t.After(t1) }
	scanLog(b.bridgeLog, "time", func(t time.Time, m map[string]any) {
		if m["msg"] != "forwarded" || !in(t) {
			return
		}
		key, _ := url.QueryUnescape(fmt.Sprint(m["key"]))
		switch m["bucket"] {
		case srcBucket:
			if strings.HasPrefix(key, prefix) {
				tl.Events.add(t, t0)
			}
		case tgtStaging:
			tl.Replicas.add(t, t0)
		}
	})
	scanLog(src.logPath, "ts", func(t time.Time, m map[string]any) {
		if m["msg"] == "archive staged" && in(t) {
			tl.Staged.add(t, t0)
		}
	})
	scanLog(tgt.logPath, "ts", func(t time.Time, m map[string]any) {
		if m["msg"] == "archive delivered" && in(t) {
			tl.Delivered.add(t, t0)
		}
	})
	return tl
}

// countLog counts the bridge log's lines (path) with msg, timed in [t0, t1].
func countLog(path, msg string, t0, t1 time.Time) int64 {
	var n int64
	scanLog(path, "time", func(t time.Time, m map[string]any) {
		if m["msg"] == msg && !t.Before(t0) && !t.After(t1) {
			n++
		}
	})
	return n
}

// scanLog calls fn for every JSON line of path with a time in field.
func scanLog(path, field string, fn func(time.Time, map[string]any)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		s, _ := m[field].(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			continue
		}
		fn(t, m)
	}
}
