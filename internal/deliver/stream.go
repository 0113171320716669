package deliver

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/xrc-dev/xrc/internal/archive"
)

// stream delivers an archive reading it once, nothing visible before it is
// verified: a small object is held in memory until its last byte, and its
// digest, have checked out; a large one streams into a multipart upload
// whose body, the archive reader, fails at its end when the digest does not
// match, so the upload is aborted, never completed. Objects before a
// corrupt member may be written: each of them checked out. Deletes and
// retags wait until the whole archive has: every zstd frame's checksum (of
// the frames that carry one, as xrc's all do) and the end of the tar stream.
func (w *Worker) stream(ctx context.Context, r *archive.Reader, wr *write) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.Config.Settings.Worker.Concurrency)
	for {
		if err := gctx.Err(); err != nil {
			// A write failed (or the work is cancelled): stop reading. The
			// archive is not delivered whatever follows.
			return errors.Join(g.Wait(), context.Cause(gctx))
		}
		i, o, data, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return errors.Join(err, g.Wait())
		}
		routes := wr.plan.routes[i]
		if len(routes) == 0 {
			continue // the reader drains and verifies it
		}
		if o.Size <= bufferMax {
			release, err := w.holdBuffer(gctx, o.Size)
			if err != nil {
				return errors.Join(err, g.Wait())
			}
			buf := make([]byte, o.Size)
			if _, err := io.ReadFull(data, buf); err != nil {
				release()
				return errors.Join(err, g.Wait())
			}
			// The verdict on an object comes with its last byte, which
			// ReadFull does not report: ask for it.
			if _, err := data.Read(nil); err != io.EOF {
				release()
				return errors.Join(err, g.Wait())
			}
			w.runtime.Progress()
			sum := r.Sum()
			var left atomic.Int32
			left.Store(int32(len(routes)))
			for _, rt := range routes {
				g.Go(func() error {
					defer func() {
						if left.Add(-1) == 0 {
							release()
						}
					}()
					return w.writeBuffered(gctx, wr, o, rt, sum, buf)
				})
			}
			continue
		}
		// A large object's SHA-256 is known up front only when the source
		// had it from S3 (a full-object checksum); otherwise it is in the
		// trailer, read after the upload started, and the destination keeps
		// a CRC (the source's, or a CRC32C) without xrc-sha256. It is
		// checked either way.
		sum, err := hex.DecodeString(o.SHA256)
		if err != nil {
			return errors.Join(err, g.Wait())
		}
		if err := w.writeStream(gctx, wr, o, routes, sum, &progressReader{r: data, progress: w.runtime.Progress}); err != nil {
			return errors.Join(err, g.Wait())
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	var rest errgroup.Group
	rest.SetLimit(w.Config.Settings.Worker.Concurrency)
	var all allErrors
	for i := range wr.m.Objects {
		o, routes := &wr.m.Objects[i], wr.plan.routes[i]
		switch {
		case o.Delete && len(routes) > 0:
			rest.Go(func() error { return all.add(w.propagateDelete(ctx, wr, o, routes)) })
		case o.Retag:
			for _, rt := range routes {
				rest.Go(func() error { return all.add(w.retag(ctx, wr, o, rt)) })
			}
		}
	}
	_ = rest.Wait() // every error is in all
	return all.join()
}

// holdBuffer takes n bytes of the upload memory for a small object's
// buffer, held until its last route is written: the objects an archive
// holds at once ((concurrency + 1) × 16 MiB at most) and those of archives
// delivered beside it share the budget multipart part buffers wait on, so a
// worker given more concurrency than memory waits instead of running out.
// A budget smaller than the buffer is taken whole, so the object still goes.
func (w *Worker) holdBuffer(ctx context.Context, n int64) (release func(), err error) {
	n = min(n, w.UploadMemory)
	if w.uploadMem == nil || n <= 0 {
		return func() {}, nil
	}
	if err := w.uploadMem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return func() { w.uploadMem.Release(n) }, nil
}

// allErrors keeps the errors of a group's goroutines: errgroup's Wait
// returns the first only, and a first that is a wait (a retag before its
// write) would hide a failure beside it (Waiting). Past keptErrors, only
// an error of a kind not kept yet (waiting or not, permanent or not, its
// failureKind) is: an archive of thousands of retags waiting for their
// writes, or of deletes all refused, made one error of megabytes, logged
// twice a receive, past what a log line may hold.
type allErrors struct {
	mu   sync.Mutex
	all  []error
	more int // errors not kept
}

// keptErrors is how many errors allErrors keeps whatever their kind.
const keptErrors = 20

// add keeps err and returns nil, so the group goes on.
func (a *allErrors) add(err error) error {
	if err == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	type kindOf struct {
		waiting, permanent bool
		kind               string // failureKind: what the DLQ line and the errors metric say
	}
	kind := func(err error) kindOf { return kindOf{Waiting(err), Permanent(err), failureKind(err)} }
	if len(a.all) < keptErrors || !slices.ContainsFunc(a.all, func(e error) bool { return kind(e) == kind(err) }) {
		a.all = append(a.all, err)
	} else {
		a.more++
	}
	return nil
}

func (a *allErrors) join() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := errors.Join(a.all...)
	if a.more > 0 {
		// One %w: Waiting and Permanent see the kept errors alone.
		err = fmt.Errorf("%w\n(and %d more errors like these)", err, a.more)
	}
	return err
}
