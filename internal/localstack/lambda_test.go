package localstack

import (
	"os"
	"strings"
	"testing"
)

// TestRIEVersionMatchesStack: the emulator the tests look for is the one
// deploy/local/stack builds.
func TestRIEVersionMatchesStack(t *testing.T) {
	script, err := os.ReadFile("../../deploy/local/stack")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "\nreadonly RIE_VERSION="+RIEVersion+"\n") {
		t.Errorf("deploy/local/stack does not build the emulator version %s", RIEVersion)
	}
}

func TestQueueARN(t *testing.T) {
	if got := QueueARN("http://127.0.0.1:9324/000000000000/x-src-r1"); got != "arn:aws:sqs:us-east-1:000000000000:x-src-r1" {
		t.Errorf("QueueARN = %s", got)
	}
}
