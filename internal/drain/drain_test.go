package drain

import (
	"context"
	"testing"
	"time"
)

func TestContext(t *testing.T) {
	stop, signal := context.WithCancel(context.Background())
	expired := make(chan struct{})
	work, cancel := Context(stop, 50*time.Millisecond, func() { close(expired) })
	defer cancel()
	signal()
	if work.Err() != nil {
		t.Fatal("work cancelled with the stop signal, before its grace period")
	}
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("work not cancelled after the grace period")
	}
	select {
	case <-expired:
	default:
		t.Error("expired not called")
	}

	// Cancelling the work itself needs no stop signal and calls nothing.
	work, cancel = Context(context.Background(), time.Hour, func() { t.Error("expired called") })
	cancel()
	<-work.Done()
}
