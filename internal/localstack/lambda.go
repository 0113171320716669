package localstack

// This file is the local stand-in for Lambda: the AWS Lambda Runtime
// Interface Emulator running a function binary (Emulator), and an SQS event
// source mapping feeding it batches from a queue (Mapping). Tests that call
// a handler in-process build its events with SQSEvent.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// RIEVersion is the AWS Lambda Runtime Interface Emulator the stack builds
// (deploy/local/stack: RIE_VERSION, TestRIEVersionMatchesStack).
const RIEVersion = "v0.0.0-20261030222936-bef5c4ba774d"

// RIE returns the path of the emulator binary: $XRC_LAMBDA_RIE, which
// `deploy/local/stack env` prints, or where `deploy/local/stack up` builds
// it in the cache. The error says how to get it.
func RIE() (string, error) {
	path := os.Getenv("XRC_LAMBDA_RIE")
	if path == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", err
			}
			cache = filepath.Join(home, ".cache")
		}
		path = filepath.Join(cache, "xrc", "bin", "aws-lambda-rie-"+RIEVersion, "aws-lambda-rie")
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("localstack: no Lambda runtime interface emulator at %s (deploy/local/stack up builds it): %w", path, err)
	}
	return path, nil
}

// SQSEvent is the event an SQS event source mapping hands a function for
// msgs, received from queueURL with every system attribute: records with
// the message id, receipt handle, body, attributes (ApproximateReceiveCount,
// SentTimestamp, ...) and the queue's ARN.
func SQSEvent(queueURL string, msgs []sqstypes.Message) events.SQSEvent {
	ev := events.SQSEvent{Records: make([]events.SQSMessage, 0, len(msgs))}
	arn := QueueARN(queueURL)
	for _, m := range msgs {
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId:     aws.ToString(m.MessageId),
			ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body:          aws.ToString(m.Body),
			Md5OfBody:     aws.ToString(m.MD5OfBody),
			Attributes:    m.Attributes,
			// As the mapping hands them over: each with its type and value.
			MessageAttributes: messageAttributes(m.MessageAttributes),
			EventSource:       "aws:sqs",
			// The ARN is not where the stack's SQS is: only its name
			// matters, as it does to the workers.
			EventSourceARN: arn,
			AWSRegion:      StackRegion,
		})
	}
	return ev
}

func messageAttributes(in map[string]sqstypes.MessageAttributeValue) map[string]events.SQSMessageAttribute {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]events.SQSMessageAttribute, len(in))
	for k, v := range in {
		out[k] = events.SQSMessageAttribute{DataType: aws.ToString(v.DataType), StringValue: v.StringValue, BinaryValue: v.BinaryValue}
	}
	return out
}

// QueueARN is an ARN of the stack's queue at queueURL, shaped as AWS's.
func QueueARN(queueURL string) string {
	return "arn:aws:sqs:" + StackRegion + ":000000000000:" + queueURL[strings.LastIndex(queueURL, "/")+1:]
}

// Receive takes up to max messages from queueURL (one or more receives of
// at most 10), with every attribute, hidden for visibility. It returns
// once max messages are in hand or a receive waiting wait came back empty.
func Receive(ctx context.Context, client *sqs.Client, queueURL string, max int, wait, visibility time.Duration) ([]sqstypes.Message, error) {
	var out []sqstypes.Message
	for len(out) < max {
		resp, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            &queueURL,
			MaxNumberOfMessages: int32(min(max-len(out), 10)),
			WaitTimeSeconds:     int32(wait / time.Second),
			VisibilityTimeout:   int32(visibility / time.Second),
			//lint:ignore SA1019 the stack's SQS only honours the legacy field.
			AttributeNames:              []sqstypes.QueueAttributeName{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		if err != nil {
			return out, fmt.Errorf("receiving from %s: %w", queueURL, err)
		}
		if len(resp.Messages) == 0 {
			return out, nil
		}
		out = append(out, resp.Messages...)
	}
	return out, nil
}

// Emulator is one function running in the AWS Lambda Runtime Interface
// Emulator: lambda.Start in the binary talks to the emulator's Runtime API
// exactly as on Lambda, deadlines included.
type Emulator struct {
	url string
	cmd *exec.Cmd
	log io.Writer

	mu      sync.Mutex // the emulator runs one invocation at a time
	done    chan struct{}
	waitErr error // set before done closes
}

// StartEmulator runs bootstrap (a Lambda function binary) in the emulator
// with env added to this process's environment, a timeout per invocation
// (AWS_LAMBDA_FUNCTION_TIMEOUT, whole seconds), and its output and the
// function's going to log. Stop it with Stop.
func StartEmulator(ctx context.Context, bootstrap string, env []string, timeout time.Duration, log io.Writer) (*Emulator, error) {
	rie, err := RIE()
	if err != nil {
		return nil, err
	}
	// Its ports are free when picked, not always when it binds them:
	// many test processes open connections meanwhile. Picked again.
	for try := 1; ; try++ {
		e, err := startEmulator(ctx, rie, bootstrap, env, timeout, log)
		if !errors.Is(err, errExitedAtStart) || try == 3 {
			return e, err
		}
		fmt.Fprintf(log, "the Lambda emulator exited at start (%v); starting it again on other ports\n", err)
	}
}

var errExitedAtStart = errors.New("the Lambda emulator exited at start")

func startEmulator(ctx context.Context, rie, bootstrap string, env []string, timeout time.Duration, log io.Writer) (*Emulator, error) {
	api, err := freePort()
	if err != nil {
		return nil, err
	}
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", listen, "--runtime-api-address", api, bootstrap)
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(int(timeout/time.Second)), "LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group: Stop ends the emulator and the function it
	// started, and nothing else.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the Lambda emulator: %w", err)
	}
	e := &Emulator{url: "http://" + listen + "/2015-03-31/functions/function/invocations", cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		e.waitErr = cmd.Wait()
		close(e.done)
	}()
	for start := time.Now(); ; {
		conn, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			conn.Close()
			// What answered may be another process that took the port
			// first; then this emulator exits, failing to bind.
			select {
			case <-e.done:
				return nil, fmt.Errorf("%w: %v", errExitedAtStart, e.waitErr)
			case <-time.After(200 * time.Millisecond):
				return e, nil
			}
		}
		select {
		case <-e.done:
			return nil, fmt.Errorf("%w: %v", errExitedAtStart, e.waitErr)
		case <-ctx.Done():
			e.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Second {
			e.Stop()
			return nil, errors.New("the Lambda emulator did not listen within 30s")
		}
	}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Invoke sends payload to the function and returns what it answered: its
// response document, or the emulator's report of a timeout or an error.
func (e *Emulator) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoking the function: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 6<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the function's response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("the function answered %s: %s", resp.Status, body)
	}
	return body, nil
}

// InvokeSQS hands ev to the function as a mapping would and decodes its
// answer, which must be exactly an SQSEventResponse (a function error or a
// timeout report is not).
func (e *Emulator) InvokeSQS(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	var resp events.SQSEventResponse
	payload, err := json.Marshal(ev)
	if err != nil {
		return resp, err
	}
	body, err := e.Invoke(ctx, payload)
	if err != nil {
		return resp, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&resp); err != nil {
		return resp, fmt.Errorf("the function's answer is no SQSEventResponse: %s", body)
	}
	return resp, nil
}

// Done is closed when the emulator has exited; Err then says how.
func (e *Emulator) Done() <-chan struct{} { return e.done }

// Err is how the emulator exited, once Done is closed.
func (e *Emulator) Err() error { return e.waitErr }

// Stop ends the emulator and the function it runs (its process group).
func (e *Emulator) Stop() {
	select {
	case <-e.done:
		return
	default:
	}
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.done
	}
}

// CPU is the CPU time the emulator and the function process used so far
// (Linux: from /proc; zero elsewhere or once they exited).
func (e *Emulator) CPU() time.Duration {
	var total time.Duration
	var walk func(pid string)
	walk = func(pid string) {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return
		}
		// Fields after the command name (which may hold spaces): utime and
		// stime are the 12th and 13th, in clock ticks of 1/100 s.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 12 {
			u, _ := strconv.ParseInt(fields[11], 10, 64)
			s, _ := strconv.ParseInt(fields[12], 10, 64)
			total += time.Duration(u+s) * 10 * time.Millisecond
		}
		// Children are listed by the thread that started them.
		tasks, _ := os.ReadDir("/proc/" + pid + "/task")
		for _, task := range tasks {
			children, _ := os.ReadFile("/proc/" + pid + "/task/" + task.Name() + "/children")
			for _, c := range strings.Fields(string(children)) {
				walk(c)
			}
		}
	}
	walk(strconv.Itoa(e.cmd.Process.Pid))
	return total
}

// Mapping plays an SQS event source mapping with ReportBatchItemFailures:
// it gathers up to BatchSize messages for at most Window, invokes the
// function with them, and deletes the ones the function did not report
// failed. Messages of an invocation that failed whole (an error, a
// timeout) are left to their visibility timeout, as on AWS.
type Mapping struct {
	SQS        *sqs.Client
	QueueURL   string
	BatchSize  int
	Window     time.Duration
	Visibility time.Duration // how long a received message stays hidden
	Invoke     func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error)
}

// Poll runs one batch: it returns how many messages it handed over and
// how many were reported failed.
func (m *Mapping) Poll(ctx context.Context) (handed, failed int, err error) {
	var msgs []sqstypes.Message
	deadline := time.Now().Add(m.Window)
	for len(msgs) < m.BatchSize {
		wait := time.Until(deadline).Truncate(time.Second)
		if wait < 0 {
			wait = 0
		}
		got, err := Receive(ctx, m.SQS, m.QueueURL, min(m.BatchSize-len(msgs), 10), min(wait, 20*time.Second), m.Visibility)
		if err != nil {
			return 0, 0, err
		}
		msgs = append(msgs, got...)
		if len(got) == 0 && time.Now().After(deadline) {
			break
		}
	}
	if len(msgs) == 0 {
		return 0, 0, nil
	}
	resp, err := m.Invoke(ctx, SQSEvent(m.QueueURL, msgs))
	if err != nil {
		return len(msgs), len(msgs), err
	}
	failedIDs := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failedIDs[f.ItemIdentifier] = true
	}
	var done []sqstypes.DeleteMessageBatchRequestEntry
	for i, msg := range msgs {
		if !failedIDs[aws.ToString(msg.MessageId)] {
			done = append(done, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: msg.ReceiptHandle})
		}
	}
	for len(done) > 0 {
		n := min(len(done), 10)
		out, err := m.SQS.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &m.QueueURL, Entries: done[:n]})
		if err != nil {
			return len(msgs), len(failedIDs), fmt.Errorf("deleting handled messages: %w", err)
		}
		if len(out.Failed) > 0 {
			return len(msgs), len(failedIDs), fmt.Errorf("deleting handled messages: %s", aws.ToString(out.Failed[0].Message))
		}
		done = done[n:]
	}
	return len(msgs), len(failedIDs), nil
}

// Run polls until ctx ends; an invocation that fails whole is logged to
// errs (if set) and polling goes on, as a mapping's does.
func (m *Mapping) Run(ctx context.Context, errs func(error)) {
	for ctx.Err() == nil {
		if _, _, err := m.Poll(ctx); err != nil && ctx.Err() == nil && errs != nil {
			errs(err)
		}
	}
}
