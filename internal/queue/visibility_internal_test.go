package queue

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestVisibilityForStaysUnderSQSsCap: a heartbeat asks for no more than
// SQS grants from a message's receive (12 hours in all), which it would
// refuse.
func TestVisibilityForStaysUnderSQSsCap(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name string
		d    time.Duration
		age  time.Duration // since the receive; -1: unknown
		want time.Duration
	}{
		{"fresh", 5 * time.Minute, time.Second, 5 * time.Minute},
		{"unknown receive", 12 * time.Hour, -1, 12 * time.Hour},
		{"12h timeout at its first beat", 12 * time.Hour, 4 * time.Hour, 8*time.Hour - time.Minute},
		{"held 11h58m", 5 * time.Minute, 11*time.Hour + 58*time.Minute, time.Minute},
		{"past the cap", 5 * time.Minute, 13 * time.Hour, 0},
		// Under a second left is none: sent, it would be a release.
		{"700 ms left", 5 * time.Minute, MaxVisibility - time.Minute - 700*time.Millisecond, 0},
		{"1.7 s left", 5 * time.Minute, MaxVisibility - time.Minute - 1700*time.Millisecond, time.Second},
	} {
		m := Message{}
		if c.age >= 0 {
			m.ReceivedAt = now.Add(-c.age)
		}
		if got := visibilityFor(c.d, m, now); got != c.want {
			t.Errorf("%s: visibilityFor(%v) = %v, want %v", c.name, c.d, got, c.want)
		}
	}
}

// TestReceiptGone: SQS's InvalidParameterValue is a lost receipt only when
// it is about the receipt; refused for the visibility cap, the message is
// still held.
func TestReceiptGone(t *testing.T) {
	for _, c := range []struct {
		code, msg string
		want      bool
	}{
		{"ReceiptHandleIsInvalid", "", true},
		{"AWS.SimpleQueueService.MessageNotInflight", "", true},
		{"InvalidParameterValue", "Value AQEB... for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.", true},
		{"InvalidParameterValue", "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]", false},
		{"InternalError", "", false},
	} {
		f := Failure{Code: c.code, Err: errors.New("changing visibility of message m: " + c.code + ": " + c.msg)}
		if got := f.ReceiptGone(); got != c.want {
			t.Errorf("%s %q: ReceiptGone = %v, want %v", c.code, c.msg, got, c.want)
		}
	}
}

// TestFailuresOf: a batch call's failed entries are their messages'
// failures, and a message no entry names done fails too (a store that
// dropped or renamed its entry: acknowledged, hidden or sent again
// without it otherwise); a failed entry naming no message fails none
// that an entry said was done (a send said done but failed would be sent
// twice, its original also left to reach the DLQ).
func TestFailuresOf(t *testing.T) {
	chunk := []Message{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	entry := func(id string) types.BatchResultErrorEntry {
		return types.BatchResultErrorEntry{Id: aws.String(id), Code: aws.String("ReceiptHandleIsInvalid"), Message: aws.String("bad")}
	}
	ids := func(fs []Failure) (out []string) {
		for _, f := range fs {
			out = append(out, f.Message.ID+":"+f.Code)
		}
		return out
	}
	for _, c := range []struct {
		name string
		a    answer
		want []string
	}{
		{"all done", answer{ok: []string{"0", "1", "2"}}, nil},
		{"one failed", answer{ok: []string{"0", "2"}, failed: []types.BatchResultErrorEntry{entry("1")}}, []string{"b:ReceiptHandleIsInvalid"}},
		{"one unanswered", answer{ok: []string{"0", "2"}}, []string{"b:" + CodeUnmatchedEntry}},
		{"said done and failed", answer{ok: []string{"0", "1", "2"}, failed: []types.BatchResultErrorEntry{entry("1")}}, []string{"b:ReceiptHandleIsInvalid"}},
		{"a stray failure", answer{ok: []string{"0", "1", "2"}, failed: []types.BatchResultErrorEntry{entry("x")}}, nil},
		{"renamed", answer{ok: []string{"3", "-1", ""}, failed: []types.BatchResultErrorEntry{entry("0"), entry("x")}},
			[]string{"a:ReceiptHandleIsInvalid", "b:" + CodeUnmatchedEntry, "c:" + CodeUnmatchedEntry}},
	} {
		f := failuresOf("deleting", chunk, c.a)
		if got := ids(f); !slices.Equal(got, c.want) {
			t.Errorf("%s: failures %v, want %v", c.name, got, c.want)
		}
		for _, x := range f {
			if x.Code == CodeUnmatchedEntry && x.ReceiptGone() {
				t.Errorf("%s: %s taken for a lost receipt", c.name, x.Message.ID)
			}
		}
	}
}

// TestBySize: a SendMessageBatch takes at most ten messages whose bodies
// add up to at most what SQS allows; a longer body travels alone.
func TestBySize(t *testing.T) {
	msg := func(n int) Message { return Message{Body: strings.Repeat("x", n)} }
	var msgs []Message
	for _, n := range []int{100, 100, 900, 50, 1200, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10} {
		msgs = append(msgs, msg(n))
	}
	var got [][]int
	for chunk := range bySize(msgs, 1000) {
		var sizes []int
		for _, m := range chunk {
			sizes = append(sizes, len(m.Body))
		}
		got = append(got, sizes)
	}
	want := [][]int{{100, 100}, {900, 50}, {1200}, {10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, {10}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("chunks %v, want %v", got, want)
	}
}
