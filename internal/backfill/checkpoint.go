package backfill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/xrc-dev/xrc/internal/config"
)

// Params identify a backfill: a checkpoint resumes only a run of the same
// rule, bucket, root prefix, inventory, depth, tag comparison and scope,
// and one whose since covers at least what this run asks for.
type Params struct {
	Rule      string    `json:"rule"`
	Bucket    string    `json:"bucket"`
	Prefix    string    `json:"prefix"`
	Inventory string    `json:"inventory,omitempty"`
	Depth     int       `json:"depth"`
	Since     time.Time `json:"since,omitzero"`
	Tags      bool      `json:"tags,omitempty"`
	// Scope fingerprints the rule's filters and destinations (Scope):
	// prefixes a run finished were compared under them only.
	Scope string `json:"scope,omitempty"`
}

// mismatch says how p (a checkpoint's) differs from q (this run's), or "".
// A later since is no mismatch: a resumed run keeps the first run's, which
// covers more (a relative -since moves on); an earlier one is, as the
// prefixes the first run finished skipped what lies between.
func (p Params) mismatch(q Params) string {
	switch {
	case p.Rule != q.Rule || p.Bucket != q.Bucket:
		return fmt.Sprintf("it is of rule %s (bucket %s)", p.Rule, p.Bucket)
	case p.Prefix != q.Prefix:
		return fmt.Sprintf("it lists prefix %q, this run %q", p.Prefix, q.Prefix)
	case p.Inventory != q.Inventory:
		return fmt.Sprintf("it reads inventory %q, this run %q", p.Inventory, q.Inventory)
	case p.Depth != q.Depth:
		return fmt.Sprintf("it fans out over %d levels, this run %d", p.Depth, q.Depth)
	case p.Tags != q.Tags:
		return fmt.Sprintf("it compares tags: %t, this run: %t", p.Tags, q.Tags)
	case q.Since.Before(p.Since):
		return fmt.Sprintf("it covers objects modified since %s, this run %s", p.Since.UTC().Format(time.RFC3339), sinceText(q.Since))
	case p.Scope != "" && p.Scope != q.Scope:
		// (A checkpoint written before Scope existed has none.)
		return "the rule's filters or destinations changed since it started"
	}
	return ""
}

func sinceText(t time.Time) string {
	if t.IsZero() {
		return "all"
	}
	return "since " + t.UTC().Format(time.RFC3339)
}

// Scope fingerprints what a backfill of rule compares, beyond its Params:
// the rule's suffix and ignore filters and its destinations (region,
// bucket, key prefix, and the rule prefix it replaces).
func Scope(rule *config.Rule) string {
	h := sha256.New()
	fmt.Fprintf(h, "%q %q\n", rule.Suffix, rule.Ignore)
	for _, d := range rule.Destinations {
		to := rule.DestinationKey(d, rule.Prefix)
		fmt.Fprintf(h, "%q %q %q\n", d.Region, d.Bucket, to)
		if to != rule.Prefix {
			// The rule's prefix is what the destination's replaces: a/b/c/k
			// goes to x/b/c/k under a/, to x/c/k under a/b/. (Otherwise
			// keys keep their names, and the line above names it.)
			fmt.Fprintf(h, "%q\n", rule.Prefix)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Progress is one task's: a listed prefix, or an inventory data file.
type Progress struct {
	// After is the last key (listing) or the number of rows (inventory)
	// whose events are sent.
	After string `json:"after,omitempty"`
	// Done: every object of the task is handled.
	Done bool `json:"done,omitempty"`
}

// State is a checkpointed run.
type State struct {
	Params  Params              `json:"params"`
	Started time.Time           `json:"started"`
	Tasks   map[string]Progress `json:"tasks"` // by prefix or inventory file key
}

// Checkpoint keeps a run's progress so that an interrupted run can resume.
// Save is called concurrently.
type Checkpoint interface {
	// Load returns the state an unfinished run left, or nil.
	Load(ctx context.Context) (*State, error)
	// Start records a new run.
	Start(ctx context.Context, st *State) error
	// Save records one task's progress; it may be durable only after
	// Flush.
	Save(ctx context.Context, task string, p Progress) error
	// Flush makes everything saved durable (an interrupted run calls it).
	Flush(ctx context.Context) error
	// Clear removes the checkpoint: the run completed.
	Clear(ctx context.Context) error
}

// saveTimeout bounds a checkpoint write from when the run was stopped.
const saveTimeout = 10 * time.Second

// save records a task's progress in the run's state and checkpoint. The
// progress is of work already done, so the write is made even when ctx
// has ended (Ctrl-C, another task's error): cut short, the next run would
// send that work again, and a write the server had already received could
// still land after this run gave up its lease.
func (r *run) save(ctx context.Context, task string, p Progress) error {
	r.mu.Lock()
	r.state.Tasks[task] = p
	r.mu.Unlock()
	if r.Checkpoint == nil {
		return nil
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(saveTimeout, cancel) })
	defer stop()
	if err := r.Checkpoint.Save(wctx, task, p); err != nil {
		return fmt.Errorf("checkpoint of %s: %w", task, err)
	}
	return nil
}

// progress returns a task's recorded progress and whether it is known.
func (r *run) progress(task string) (Progress, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.state.Tasks[task]
	return p, ok
}

// FileCheckpoint keeps the state in a local JSON file, rewritten whole (to
// a temporary file renamed over it) at most every Interval and at Flush, so
// a killed process loses at most that much progress: those pages are sent
// again, which is harmless.
type FileCheckpoint struct {
	Path     string
	Interval time.Duration // default 2 s
	// MaxBytes caps the file, written and read: a checkpoint Load would
	// refuse must not be written, leaving a run that cannot resume
	// (default maxCheckpointFile).
	MaxBytes int

	mu      sync.Mutex
	st      *State
	written time.Time
	dirty   bool
}

var _ Checkpoint = (*FileCheckpoint)(nil)

// NewFileCheckpoint returns a checkpoint in path.
func NewFileCheckpoint(path string) *FileCheckpoint {
	return &FileCheckpoint{Path: path, Interval: 2 * time.Second}
}

// maxCheckpointFile caps a checkpoint file: about two million prefixes
// (-depth over a bucket of that many), which -checkpoint ddb holds as an
// item each, not rewritten whole every Interval.
const maxCheckpointFile = 256 << 20

func (f *FileCheckpoint) maxBytes() int {
	if f.MaxBytes > 0 {
		return f.MaxBytes
	}
	return maxCheckpointFile
}

// Load implements Checkpoint.
func (f *FileCheckpoint) Load(ctx context.Context) (*State, error) {
	data, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	if len(data) > f.maxBytes() {
		return nil, fmt.Errorf("checkpoint %s: %d bytes, more than a checkpoint file holds (%d)", f.Path, len(data), f.maxBytes())
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", f.Path, err)
	}
	if st.Params.Rule == "" || st.Params.Bucket == "" {
		// Any JSON reads as a State: a config named by mistake would be
		// "another run's", and -restart would overwrite it.
		return nil, fmt.Errorf("%s is not a backfill checkpoint (no params.rule and params.bucket): name a new file for -checkpoint", f.Path)
	}
	if st.Tasks == nil {
		st.Tasks = map[string]Progress{}
	}
	f.mu.Lock()
	f.st = copyState(&st)
	f.mu.Unlock()
	return &st, nil
}

// Start implements Checkpoint.
func (f *FileCheckpoint) Start(ctx context.Context, st *State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = copyState(st)
	return f.writeLocked()
}

// Save implements Checkpoint.
func (f *FileCheckpoint) Save(ctx context.Context, task string, p Progress) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st == nil {
		return errors.New("checkpoint not started")
	}
	f.st.Tasks[task] = p
	f.dirty = true
	if time.Since(f.written) < f.Interval {
		return nil
	}
	return f.writeLocked()
}

// Flush implements Checkpoint.
func (f *FileCheckpoint) Flush(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st == nil || !f.dirty {
		return nil
	}
	return f.writeLocked()
}

// Clear implements Checkpoint.
func (f *FileCheckpoint) Clear(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st, f.dirty = nil, false
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing checkpoint: %w", err)
	}
	return nil
}

func (f *FileCheckpoint) writeLocked() error {
	data, err := json.Marshal(f.st)
	if err != nil {
		return err
	}
	if len(data) > f.maxBytes() {
		// The file stays as it was: a run resumed from it gets this
		// far again, and no further.
		return fmt.Errorf("writing checkpoint %s: %d prefixes or files take %d bytes, more than a checkpoint file holds (%d): "+
			"run with -checkpoint ddb, or a smaller -depth (with -restart)", f.Path, len(f.st.Tasks), len(data), f.maxBytes())
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.Path), "."+filepath.Base(f.Path)+".*")
	if err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.Path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing checkpoint %s: %w", f.Path, err)
	}
	f.written, f.dirty = time.Now(), false
	return nil
}

func copyState(st *State) *State {
	c := *st
	c.Tasks = make(map[string]Progress, len(st.Tasks))
	for k, v := range st.Tasks {
		c.Tasks[k] = v
	}
	return &c
}
