package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// routeTable is the bucket -> queue map, persisted to path on every change
// so a restarted bridge keeps its routes.
type routeTable struct {
	path string
	mu   sync.RWMutex
	m    map[string]string
}

func loadRoutes(path string) (*routeTable, error) {
	t := &routeTable{path: path, m: map[string]string{}}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return t, nil
	case err != nil:
		return nil, fmt.Errorf("reading routes: %w", err)
	}
	if err := json.Unmarshal(data, &t.m); err != nil {
		return nil, fmt.Errorf("parsing routes %s: %w", path, err)
	}
	if t.m == nil {
		t.m = map[string]string{}
	}
	return t, nil
}

func (t *routeTable) get(bucket string) (string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	q, ok := t.m[bucket]
	return q, ok
}

func (t *routeTable) snapshot() map[string]string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[string]string, len(t.m))
	for k, v := range t.m {
		out[k] = v
	}
	return out
}

// set routes bucket to queue, or removes the route when queue is empty. The
// table is unchanged if it cannot be saved.
func (t *routeTable) set(bucket, queue string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, had := t.m[bucket]
	if queue == "" {
		delete(t.m, bucket)
	} else {
		t.m[bucket] = queue
	}
	if err := t.saveLocked(); err != nil {
		if had {
			t.m[bucket] = old
		} else {
			delete(t.m, bucket)
		}
		return err
	}
	return nil
}

// saveLocked writes the table atomically (temp file + rename).
func (t *routeTable) saveLocked() error {
	data, err := json.MarshalIndent(t.m, "", "  ") // map keys come out sorted
	if err != nil {
		return fmt.Errorf("encoding routes: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(t.path), ".routes-*.json")
	if err != nil {
		return fmt.Errorf("saving routes: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("saving routes: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving routes: %w", err)
	}
	if err := os.Rename(tmp.Name(), t.path); err != nil {
		return fmt.Errorf("saving routes: %w", err)
	}
	return nil
}
