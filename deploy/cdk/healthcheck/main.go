// Command xrc-healthcheck is the container health probe of the xrc worker
// images, which have no shell and no curl: ECS runs
//
//	xrc-healthcheck http://127.0.0.1:9090/healthz
//
// inside the task. It exits 0 when the URL answers 200 within the timeout
// and 1 otherwise, printing why.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

const (
	defaultURL = "http://127.0.0.1:9090/healthz"
	timeout    = 4 * time.Second // below the task definition's 5 s
)

func main() {
	url := defaultURL
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	if err := probe(context.Background(), url, timeout); err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		os.Exit(1)
	}
}

// probe GETs url and reports anything but a 200 as an error.
func probe(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", url, resp.Status, body)
	}
	return nil
}
