package archive_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"strings"
	"time"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// exampleManifest describes two objects and a delete marker. The source
// knows the digest of the first object up front; the second is streamed,
// so its digest goes into a trailer member.
func exampleManifest() *manifest.Manifest {
	dst := func(key string) []manifest.Destination {
		return []manifest.Destination{{Region: "us-east-1", Bucket: "replica", Key: key}}
	}
	return &manifest.Manifest{
		Format:       manifest.Format,
		ArchiveID:    "01JDEXAMPLE",
		CreatedAt:    time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
		SourceRegion: "eu-west-1",
		RuleID:       "logs",
		Level:        3,
		Objects: []manifest.Object{
			{
				Member: manifest.MemberName(0, "logs/a.txt"), Bucket: "source", Key: "logs/a.txt", Size: 13,
				SHA256:       "853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c976020", // of "hello, world\n"
				Destinations: dst("logs/a.txt"),
			},
			{Bucket: "source", Key: "logs/old.txt", Delete: true, Destinations: dst("logs/old.txt")},
			{Member: manifest.MemberName(2, "logs/b.txt"), Bucket: "source", Key: "logs/b.txt", Size: 7, Destinations: dst("logs/b.txt")},
		},
	}
}

func ExampleWriter() {
	m := exampleManifest()
	var dst bytes.Buffer // an S3 multipart upload in xrc
	w := archive.NewWriter(archive.WriterOptions{})
	if err := w.Begin(&dst, m); err != nil {
		log.Fatal(err)
	}
	sources := map[int]io.Reader{0: strings.NewReader("hello, world\n"), 2: strings.NewReader("stream\n")}
	for _, i := range []int{0, 2} { // objects[1] is a delete entry: no member
		sum, err := w.WriteObject(i, sources[i])
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.Objects[i].Member, sum)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("compressed bytes:", w.Written() == int64(dst.Len()))
	// Output:
	// objects/000000/logs/a.txt 853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c976020
	// objects/000002/logs/b.txt d9204af6f27e38526b2e595333f888641ac643f65d7e93ca4c44ab9591871701
	// compressed bytes: true
}

func ExampleReader() {
	src := exampleArchive() // an S3 GetObject body in xrc
	r, err := archive.NewReader(src, archive.ReaderOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	fmt.Println("archive", r.Manifest().ArchiveID)
	for {
		i, obj, body, err := r.Next()
		if errors.Is(err, io.EOF) {
			break // the whole archive is verified
		}
		if err != nil {
			log.Fatal(err) // errors.Is(err, archive.ErrInvalid): reject the archive
		}
		// In xrc the body streams into PutObject; a size or digest
		// mismatch surfaces as a read error before the upload completes.
		content, err := io.ReadAll(body)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("objects[%d] %s/%s -> %s: %q\n", i, obj.Bucket, obj.Key, obj.Destinations[0].Key, content)
	}
	// Output:
	// archive 01JDEXAMPLE
	// objects[0] source/logs/a.txt -> logs/a.txt: "hello, world\n"
	// objects[2] source/logs/b.txt -> logs/b.txt: "stream\n"
}

func exampleArchive() io.Reader {
	var buf bytes.Buffer
	w := archive.NewWriter(archive.WriterOptions{})
	if err := w.Begin(&buf, exampleManifest()); err != nil {
		log.Fatal(err)
	}
	if _, err := w.WriteObject(0, strings.NewReader("hello, world\n")); err != nil {
		log.Fatal(err)
	}
	if _, err := w.WriteObject(2, strings.NewReader("stream\n")); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	return &buf
}
