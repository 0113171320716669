package source

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"go.uber.org/zap"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/manifest"
	"github.com/xrc-dev/xrc/internal/stats"
)

// Staging object metadata keys (x-amz-meta-*), so an operator listing the
// staging bucket sees what each archive holds without downloading it.
const (
	MetaArchiveID = "xrc-archive-id"
	MetaObjects   = "xrc-objects"
	MetaBytes     = "xrc-bytes"
	MetaLevel     = "xrc-level"
	MetaRule      = "xrc-rule"
)

// newArchiveID returns a time-ordered unique archive id naming this task:
// <time>-<task>-<random> (sweep.go).
func (w *Worker) newArchiveID() string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return w.Clock.Now().UTC().Format("20060102T150405Z") + "-" + w.task + "-" + hex.EncodeToString(r[:])
}

// stage writes one archive of entries and uploads it to staging, streaming:
// S3 GET -> archive writer -> zstd -> multipart upload, through a pipe.
func (w *Worker) stage(ctx context.Context, rule *config.Rule, entries []entry, closed time.Time) (id string, err error) {
	id = w.newArchiveID()
	m := &manifest.Manifest{
		Format:       manifest.Format,
		ArchiveID:    id,
		CreatedAt:    w.Clock.Now().UTC(),
		SourceRegion: w.Region,
		RuleID:       rule.ID,
		Level:        rule.Level,
		Objects:      make([]manifest.Object, len(entries)),
	}
	var total int64
	held := make([][]byte, len(entries))
	for i, e := range entries {
		m.Objects[i] = e.obj
		held[i] = e.data
		if e.obj.HasMember() {
			m.Objects[i].Member = manifest.MemberName(i, e.obj.Key)
			total += e.obj.Size
		}
	}
	key := manifest.StagingKey(m)
	log := w.Log.With(zap.String("rule", rule.ID), zap.String("archive", id))

	part := partSize(total)
	release, err := w.reserveUpload(ctx, part, "archive of "+stats.Bytes(total))
	if err != nil {
		return id, err
	}
	defer release()
	uploader := awsapi.NewUploader(w.S3, func(o *transfermanager.Options) {
		o.PartSizeBytes = part
		// The first part is read whole before the upload knows it needs
		// several: no larger than the others (uploadBuffers).
		o.MultipartUploadThreshold = part
		o.Concurrency = uploadConcurrency
	})
	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	meta := map[string]string{
		MetaArchiveID: id,
		MetaObjects:   strconv.Itoa(len(entries)),
		MetaBytes:     strconv.FormatInt(total, 10),
		MetaLevel:     strconv.Itoa(m.Level),
		MetaRule:      rule.ID,
	}
	var version *string
	go func() {
		out, err := uploader.UploadObject(ctx, &transfermanager.UploadObjectInput{
			Bucket:      &w.staging,
			Key:         &key,
			Body:        pr,
			ContentType: aws.String("application/zstd"),
			Metadata:    meta,
		})
		if err == nil {
			version = out.VersionID
		}
		// Unblock the writer if the upload failed before reading it all.
		pr.CloseWithError(err)
		uploaded <- err
	}()

	aw := w.writers.Get().(*archive.Writer)
	defer w.writers.Put(aw)
	aw.CheckAll = !w.Config.SourceChecksumsChecked(rule)
	choices := make([]choice, len(m.Objects))
	werr := w.write(ctx, aw, pw, rule, m, held, lag(entries, w.Clock.Now()), choices)
	pw.CloseWithError(werr)
	if werr != nil {
		// Back in the pool still open, the writer would refuse every
		// archive after this one. The pipe is closed first, so that no
		// encoder write waits on an upload that has stopped reading.
		aw.Abort()
	}
	uerr := <-uploaded
	var oe *objectError
	switch {
	case werr != nil && (errors.As(werr, &oe) || uerr == nil):
		return id, werr
	case uerr != nil:
		// The writer's error, if any, is only the closed pipe.
		return id, fmt.Errorf("uploading archive to s3://%s/%s: %w", w.staging, key, uerr)
	}
	st := aw.Stats()
	w.levels.observe(ctx, rule, m, choices, st, aw.Written(), w.Clock.Now())
	for i := range entries {
		if m.Objects[i].HasMember() {
			entries[i].staged = stats.Delta{Class: choices[i].class, Arm: choices[i].arm, Restaged: st[i].In}
		}
	}
	// After its statistics: an archive whose copy fails, and its relay
	// message too, is staged (and replicated to the other regions) all
	// the same, and again when its messages come back, which its items
	// hear of.
	rerr := w.relay(ctx, rule, key, version, part, meta)
	if rerr != nil {
		recordStaged(rule, entries)
	}
	dur := w.Clock.Since(closed)
	w.Metrics.Archives.WithLabelValues(rule.ID, "staged").Inc()
	w.Metrics.BytesIn.WithLabelValues(rule.ID).Add(float64(total))
	w.Metrics.BytesOut.WithLabelValues(rule.ID).Add(float64(aw.Written()))
	w.Metrics.ArchiveDuration.WithLabelValues(rule.ID).Observe(dur.Seconds())
	w.Metrics.BatchObjects.WithLabelValues(rule.ID).Observe(float64(len(entries)))
	if aw.Written() > 0 {
		w.Metrics.ArchiveRatio.WithLabelValues(rule.ID).Observe(float64(total) / float64(aw.Written()))
	}
	log.Info("archive staged", zap.String("bucket", w.staging), zap.String("key", key),
		zap.Int("objects", len(entries)), zap.Int64("bytesIn", total), zap.Int64("bytesOut", aw.Written()),
		zap.String("levels", mix(m, choices)), zap.Duration("took", dur))
	if rerr != nil {
		return id, &relayUnsentError{key: key, err: rerr}
	}
	return id, nil
}

// relayUnsentError is a staged archive's failure to reach a direct
// region: neither its copy nor its relay message was made there.
type relayUnsentError struct {
	key string
	err error
}

func (e *relayUnsentError) Error() string {
	return fmt.Sprintf("archive staged at %s, but not relayed to every direct region: %v", e.key, e.err)
}
func (e *relayUnsentError) Unwrap() error { return e.err }

// write streams the archive into dst: the manifest, then each object at
// the arm chosen for it (level.go, recorded in choices), from held[i] if
// plan read it, else prefetched if small, streamed when its turn comes if
// large, so memory stays bounded whatever the object sizes.
func (w *Worker) write(ctx context.Context, aw *archive.Writer, dst io.Writer, rule *config.Rule, m *manifest.Manifest, held [][]byte, lag time.Duration, choices []choice) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := aw.Begin(dst, m); err != nil {
		return err
	}
	futures, fetchedDone := w.prefetch(ctx, m, held)
	var prev adaptive.Class
	for i := range m.Objects {
		o := &m.Objects[i]
		if !o.HasMember() {
			continue
		}
		// setLevel sees the object's first bytes (for the probe) before any
		// of them is written. Where the class changes, what the encoder
		// holds of the objects before is written out first, so that each
		// class is charged its own bytes (archive.Writer.Flush).
		setLevel := func(sample []byte) error {
			class, arm := w.levels.choose(rule, o, sample, lag, w.Clock.Now())
			choices[i] = choice{class, arm}
			if class != prev {
				if err := aw.Flush(); err != nil {
					return err
				}
				prev = class
			}
			return aw.SetLevel(int(arm))
		}
		var err error
		if held[i] != nil {
			err = w.writeHeld(aw, i, held[i], setLevel)
		} else if f := futures[i]; f != nil {
			err = w.writeFetched(ctx, aw, i, f, fetchedDone, setLevel)
		} else {
			err = w.streamObject(ctx, aw, i, o, setLevel)
		}
		if err != nil {
			return err
		}
	}
	return aw.Close()
}

// lag is the age of the oldest message behind entries: how far behind the
// queue this archive is.
func lag(entries []entry, now time.Time) time.Duration {
	var oldest time.Time
	for _, e := range entries {
		for _, it := range e.items {
			if !it.Sent.IsZero() && (oldest.IsZero() || it.Sent.Before(oldest)) {
				oldest = it.Sent
			}
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return now.Sub(oldest)
}

// mix describes an archive's level mix for its log line: "3:120 store:4".
func mix(m *manifest.Manifest, choices []choice) string {
	counts := map[adaptive.Arm]int{}
	var arms []adaptive.Arm
	for i := range m.Objects {
		if !m.Objects[i].HasMember() {
			continue
		}
		a := choices[i].arm
		if counts[a] == 0 {
			arms = append(arms, a)
		}
		counts[a]++
	}
	slices.Sort(arms)
	parts := make([]string, len(arms))
	for i, a := range arms {
		parts[i] = a.String() + ":" + strconv.Itoa(counts[a])
	}
	return strings.Join(parts, " ")
}

// fits reports whether an archive of entries stays within the upload
// memory, and within what one staging upload holds.
func (w *Worker) fits(entries []entry) bool {
	var total int64
	for _, e := range entries {
		if e.obj.HasMember() {
			total += e.obj.Size
		}
	}
	return stagingHolds(total) && (w.uploadMem == nil || uploadBuffers(partSize(total)) <= w.UploadMemory)
}

// maxStagingPart is S3's largest part.
const maxStagingPart = 5 << 30

// stagingHolds reports whether an archive of total bytes of objects fits
// one staging upload, 10,000 parts of 5 GiB: zstd adds at most a 256th
// (its frame and block headers on incompressible bytes), and the tar and
// the manifest a little.
func stagingHolds(total int64) bool {
	return total <= (10_000*maxStagingPart-(64<<20))/257*256
}

// uploadConcurrency is how many parts of a staging upload are sent at once.
const uploadConcurrency = 2

// partSize is the part size of a staging upload of an archive of total
// bytes of objects: at least 8 MiB, and no more than 9,000 parts (S3 takes
// 10,000), sized from the uncompressed total, which bounds the archive.
func partSize(total int64) int64 {
	return min(maxStagingPart, max(8<<20, (total+total/64+(1<<20))/9000))
}

// reserveUpload holds the buffers of an upload in parts of part bytes
// within the task's upload memory until release: uploads wait for each
// other's buffers rather than run the task out of memory. One that needs
// more than all of it is ErrTooLarge (what names it).
func (w *Worker) reserveUpload(ctx context.Context, part int64, what string) (release func(), err error) {
	if w.uploadMem == nil {
		return func() {}, nil
	}
	need := uploadBuffers(part)
	if need > w.UploadMemory {
		return nil, fmt.Errorf("%w: %s needs %s of upload buffers, more than the task's %s", ErrTooLarge,
			what, stats.Bytes(need), stats.Bytes(w.UploadMemory))
	}
	if err := w.uploadMem.Acquire(ctx, need); err != nil {
		return nil, err
	}
	return func() { w.uploadMem.Release(need) }, nil
}

// uploadBuffers is what an upload of parts of part bytes holds: a buffer
// per part in flight and one filling, and the first part, read whole
// before the upload is known to need several (transfermanager, with
// MultipartUploadThreshold set to the part size).
func uploadBuffers(part int64) int64 { return (uploadConcurrency + 2) * part }
