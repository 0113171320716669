//go:build linux

package main

// The verifier runs inside the namespace, next to the target MinIO, so
// checking the destination never crosses the link. It learns of objects as
// they are created from MinIO's event stream (listen.go), and lists the
// destination prefix every 2 s for any the stream dropped (every 300 ms
// if the stream cannot be had). An object whose size matches and whose
// ETag is the MD5 of the corpus's bytes, as its event or the listing says,
// is verified by that (or, asked for by name, by its HEAD): S3 makes an
// object's ETag the MD5 of the bytes it stored when it was PUT in one
// request, as both systems PUT the small ones. Any other object
// (multipart, or an ETag that differs) is read whole and its size and
// SHA-256 checked against the corpus. Once at most 32 objects are missing
// it asks for those by name every 100 ms, so the last object is seen
// within about 100 ms of its arrival whichever system wrote it (the
// stream holds its last few events back). It reports on stdout, one JSON
// line per change, and ends with "done" once every object is there and
// correct.
//
// Listing the whole prefix every 300 ms, as it did before the stream,
// cost the target MinIO about 0.1 cpu-s per listing of the mixed corpus's
// 5,029 objects, on the CPUs the systems under test share, and found the
// last archive's objects 0.4-0.8 s after they were written. Reading every
// object (before listings) cost it a GET per object.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/events"
)

// verifyEvent is one line of the verifier's output.
type verifyEvent struct {
	Event    string `json:"event"` // progress, done, error
	Verified int    `json:"verified"`
	Total    int    `json:"total"`
	Error    string `json:"error,omitempty"`
}

// verifyMain is `benche2e verify`, run inside the namespace by the
// benchmark. Credentials and the CA come from AWS_* in its environment.
func verifyMain(args []string) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "S3 endpoint of the destination")
	region := fs.String("region", "", "region the endpoint signs for")
	bucket := fs.String("bucket", "", "destination bucket")
	prefix := fs.String("prefix", "", "destination prefix")
	manifest := fs.String("manifest", "", "JSON list of {key,size,sha256}")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) int {
		out.Encode(verifyEvent{Event: "error", Error: err.Error()})
		return 1
	}
	data, err := os.ReadFile(*manifest)
	if err != nil {
		return fail(err)
	}
	var entries []manifestEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return fail(err)
	}
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(*region))
	if err != nil {
		return fail(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(*endpoint)
		o.UsePathStyle = true
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	created := make(chan events.ObjectRef, 1024)
	go func() {
		defer close(created)
		err := listen(ctx, cfg, *endpoint, *bucket, *prefix, created)
		fmt.Fprintf(os.Stderr, "%s event stream ended: %v\n", stamp(), err)
	}()
	if err := verifyLoop(ctx, client, *bucket, *prefix, entries, arrivals{created: created, listEvery: 2 * time.Second}, out); err != nil {
		return fail(err)
	}
	return 0
}

func stamp() string { return time.Now().UTC().Format("15:04:05.000") }

const (
	probeBelow = 32                     // missing objects asked for by name rather than listed
	probeEvery = 100 * time.Millisecond // how often they are asked for
)

// listAlone is the pace of listings without an event stream.
const listAlone = 300 * time.Millisecond

// arrivals is how the verifier learns of objects: created, objects as they
// are created, and a listing every listEvery for what the stream drops;
// without a stream (or once it ends), a listing every listAlone.
type arrivals struct {
	created   <-chan events.ObjectRef
	listEvery time.Duration
}

func verifyLoop(ctx context.Context, client *s3.Client, bucket, prefix string, entries []manifestEntry, in arrivals, out *json.Encoder) error {
	want := make(map[string]manifestEntry, len(entries))
	for _, e := range entries {
		want[e.Key] = e
	}
	var (
		mu       sync.Mutex
		verified = map[string]bool{}
		inFlight = map[string]bool{}
		failures = map[string]int{}
		fatal    error
		wg       sync.WaitGroup
	)
	changed := make(chan struct{}, 1)
	sem := make(chan struct{}, 8)
	// consider starts checking key unless it is checked or being checked.
	// A probe of a key not listed may find nothing: that is no failure.
	consider := func(key string, probe bool) error {
		e, ok := want[key]
		if !ok {
			return fmt.Errorf("unexpected object s3://%s/%s in the destination", bucket, key)
		}
		mu.Lock()
		skip := verified[key] || inFlight[key]
		if !skip {
			inFlight[key] = true
		}
		mu.Unlock()
		if skip {
			return nil
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := check(ctx, client, bucket, e, probe)
			mu.Lock()
			defer mu.Unlock()
			delete(inFlight, key)
			var mismatch *mismatchError
			var absent *s3types.NoSuchKey
			var notFound *s3types.NotFound // HEAD's
			switch {
			case err == nil:
				verified[key] = true
			case errors.As(err, &mismatch):
				fatal = err
			case probe && (errors.As(err, &absent) || errors.As(err, &notFound)):
			default:
				if failures[key]++; failures[key] >= 5 {
					fatal = fmt.Errorf("reading s3://%s/%s failed 5 times: %w", bucket, key, err)
				}
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}()
		return nil
	}
	// take checks an object S3 describes (in a listing or an event): by
	// its size and ETag when they vouch for its bytes, else by reading it.
	take := func(key string, size *int64, etag *string) error {
		if e, ok := want[key]; ok && stored(e, size, etag) {
			mu.Lock()
			verified[key] = true
			mu.Unlock()
			return nil
		}
		return consider(key, false)
	}
	list := func() error {
		start := time.Now()
		p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
		n := 0
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, o := range page.Contents {
				n++
				if err := take(aws.ToString(o.Key), o.Size, o.ETag); err != nil {
					return err
				}
			}
		}
		fmt.Fprintf(os.Stderr, "%s listed %d in %dms\n", stamp(), n, time.Since(start).Milliseconds())
		return nil
	}
	missing := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var m []string
		for k := range want {
			if !verified[k] && !inFlight[k] {
				if m = append(m, k); len(m) > probeBelow {
					return m
				}
			}
		}
		return m
	}

	// seen takes an object's event as the listing takes its entry.
	seen := func(ref events.ObjectRef) error {
		if !strings.HasPrefix(ref.Key, prefix) {
			return nil
		}
		return take(ref.Key, &ref.Size, &ref.ETag)
	}
	listEvery := in.listEvery
	if in.created == nil {
		listEvery = listAlone
	}

	reported, listErrs, nextPoll := -1, 0, time.Now()
	for {
		mu.Lock()
		n, ferr := len(verified), fatal
		mu.Unlock()
		if ferr != nil {
			wg.Wait()
			return ferr
		}
		if n != reported {
			out.Encode(verifyEvent{Event: "progress", Verified: n, Total: len(want)})
			reported = n
		}
		if n == len(want) {
			wg.Wait()
			out.Encode(verifyEvent{Event: "done", Verified: n, Total: len(want)})
			fmt.Fprintf(os.Stderr, "%s all %d verified\n", stamp(), n)
			return nil
		}
		if len(want)-n <= probeBelow && time.Until(nextPoll) > probeEvery {
			nextPoll = time.Now().Add(probeEvery) // the last few: no wait for a listing
		}
		if !time.Now().Before(nextPoll) {
			if m := missing(); len(m) <= probeBelow {
				for _, k := range m {
					if err := consider(k, true); err != nil {
						return err
					}
				}
				nextPoll = time.Now().Add(probeEvery)
			} else {
				if err := list(); err != nil {
					if listErrs++; listErrs >= 5 {
						return fmt.Errorf("listing s3://%s/%s failed 5 times in a row: %w", bucket, prefix, err)
					}
				} else {
					listErrs = 0
				}
				nextPoll = time.Now().Add(listEvery)
			}
		}
		// A check finishing or an event wakes the loop to report it;
		// polls keep their pace.
		select {
		case <-changed:
		case ref, ok := <-in.created:
			if !ok {
				in.created, listEvery = nil, listAlone
				nextPoll = time.Now()
				continue
			}
			if err := seen(ref); err != nil {
				return err
			}
		case <-time.After(time.Until(nextPoll)):
		case <-ctx.Done():
			wg.Wait()
			return fmt.Errorf("%d of %d objects verified: %w", n, len(want), ctx.Err())
		}
	}
}

type mismatchError struct{ msg string }

func (e *mismatchError) Error() string { return e.msg }

// stored reports whether an object of size and etag holds e's bytes as
// far as S3 vouches for it: the ETag of an object PUT in one request is
// the MD5 of what S3 stored.
func stored(e manifestEntry, size *int64, etag *string) bool {
	return aws.ToInt64(size) == e.Size && strings.Trim(aws.ToString(etag), `"`) == e.MD5
}

// check verifies one object: a probe (an object asked for by name) by its
// HEAD when stored says so, else by reading it and comparing its size and
// SHA-256 with e.
func check(ctx context.Context, client *s3.Client, bucket string, e manifestEntry, probe bool) error {
	if probe {
		h, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &e.Key})
		if err != nil {
			return err
		}
		if stored(e, h.ContentLength, h.ETag) {
			return nil
		}
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &e.Key})
	if err != nil {
		return err
	}
	defer out.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, out.Body)
	if err != nil {
		return err
	}
	if n != e.Size {
		return &mismatchError{fmt.Sprintf("s3://%s/%s: %d bytes, want %d", bucket, e.Key, n, e.Size)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		return &mismatchError{fmt.Sprintf("s3://%s/%s: SHA-256 %s, want %s", bucket, e.Key, got, e.SHA256)}
	}
	return nil
}

// verifier is the running `benche2e verify` as the benchmark sees it.
type verifier struct {
	cmd     *exec.Cmd
	logPath string
	events  chan verifyEvent
	quit    chan struct{} // closed by stop: nobody reads events any more
	once    sync.Once
	done    chan struct{}
	err     error
}

// startVerifier starts the verifier in the namespace on the destination
// bucket/prefix, checking against the manifest.
func (b *bench) startVerifier(bucket, prefix, manifest, name string) (*verifier, error) {
	cmd := command(true, b.selfBin, "verify", "-endpoint", b.env.S3Endpoints["eu-west-1"], "-region", "eu-west-1",
		"-bucket", bucket, "-prefix", prefix, "-manifest", manifest)
	cmd.Env = b.serverEnv("XRC_BENCH_E2E=" + b.state)
	return runVerifier(cmd, filepath.Join(b.logs, name+"-verify.log"))
}

// runVerifier starts cmd as the verifier, its stderr and stdout to
// logPath, each JSON line of its stdout also to events until stop.
func runVerifier(cmd *exec.Cmd, logPath string) (*verifier, error) {
	v := &verifier{cmd: cmd, logPath: logPath, events: make(chan verifyEvent, 64), quit: make(chan struct{}), done: make(chan struct{})}
	logf, err := os.Create(v.logPath)
	if err != nil {
		return nil, err
	}
	v.cmd.Stderr = logf
	stdout, err := v.cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := v.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting the verifier: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			var ev verifyEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				// Once stopped, nobody reads events: the line is only
				// logged, and the loop goes on to the end of stdout.
				select {
				case v.events <- ev:
				case <-v.quit:
				}
			}
		}
		v.err = v.cmd.Wait()
		logf.Close()
		close(v.done)
	}()
	return v, nil
}

// stop kills the verifier (its whole process group) unless it has
// exited, and waits for its output to end. It returns whether or not
// anybody still reads events, and may be called more than once.
func (v *verifier) stop() {
	v.once.Do(func() { close(v.quit) })
	select {
	case <-v.done:
	default:
		if err := syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			_ = v.cmd.Process.Kill()
		}
		<-v.done
	}
}

// waitVerified waits for the verifier's "done" and returns when it came.
// watch is called every second and fails the wait when it returns an error
// (a worker that exited, rclone failing); no object verified for STALL, the
// benchmark's deadline or the verifier failing end it too.
func (b *bench) waitVerified(ctx context.Context, v *verifier, total int, watch func() error) (time.Time, error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastChange, lastPrint := 0, time.Now(), time.Time{}
	for {
		select {
		case ev := <-v.events:
			switch ev.Event {
			case "done":
				fmt.Printf("    %d/%d objects verified in the destination\n", ev.Verified, total)
				return time.Now(), nil
			case "error":
				return time.Time{}, fmt.Errorf("verifier: %s", ev.Error)
			case "progress":
				if ev.Verified != last {
					last, lastChange = ev.Verified, time.Now()
				}
				if time.Since(lastPrint) >= 5*time.Second {
					fmt.Printf("    %d/%d objects verified in the destination\n", ev.Verified, total)
					lastPrint = time.Now()
				}
			}
		case <-v.done:
			// Drain what it said before it exited.
			for {
				select {
				case ev := <-v.events:
					if ev.Event == "done" {
						return time.Now(), nil
					}
					if ev.Event == "error" {
						return time.Time{}, fmt.Errorf("verifier: %s", ev.Error)
					}
				default:
					return time.Time{}, fmt.Errorf("verifier exited (%v); see %s:\n%s", v.err, v.logPath, tail(v.logPath, 10))
				}
			}
		case <-tick.C:
			if err := watch(); err != nil {
				return time.Time{}, err
			}
			if since := time.Since(lastChange); since > b.Stall.D() {
				return time.Time{}, fmt.Errorf("no object verified for %s (%d/%d); STALL=%s", since.Round(time.Second), last, total, b.Stall.D())
			}
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for the destination (%d/%d verified): %w", last, total, context.Cause(ctx))
		}
	}
}
