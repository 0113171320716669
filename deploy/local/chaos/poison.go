package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/klauspost/compress/zstd"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// sourcePoison are messages put on the rule's queue that are not (valid)
// object events; dead marks those no retry can fix, which must end in the
// DLQ (the rest are acknowledged: a test event, an event for an object
// that does not exist, or for a bucket no rule covers, whose object exists
// there under the rule's prefix: a worker taking the event's key for the
// rule's would replicate it).
var sourcePoison = []struct {
	name, body string
	dead       bool
}{
	{"malformed JSON", `{"Records": [ {"eventName": "ObjectCreated:Put", `, true},
	{"no Records", `{"Service":"xrc-chaos","Message":"hello"}`, true},
	{"S3 test event", `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-02T00:00:00Z","Bucket":"b","RequestId":"r","HostId":"h"}`, false},
	{"missing object", `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"SRC"},"object":{"key":"data/chaos-missing/never-written.txt","size":5,"eTag":"0123456789abcdef0123456789abcdef","sequencer":"0055AED6DCD90281E5"}}}]}`, false},
	{"another bucket", `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-12-06T00:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"OTHER"},"object":{"key":"data/chaos-other/x.txt","size":5,"sequencer":"0055AED6DCD90281E5"}}}]}`, false},
}

func sourcePoisonDead() []string {
	var out []string
	for _, p := range sourcePoison {
		if p.dead {
			out = append(out, p.body)
		}
	}
	return out
}

// targetPoison are archives put straight into the target staging bucket,
// as if replicated there; none may write anything. Each is under a key
// naming its id, as a source stages one, but "misplaced": a valid archive
// under another archive's key.
var targetPoison = []string{"corrupt", "truncated", "wrong-digest", "dotdot-member", "zstd-bomb", "oversized-manifest", "unconfigured-bucket", "misplaced"}

func targetPoisonKeys() []string {
	var out []string
	for _, n := range targetPoison {
		out = append(out, "r1/poison/"+n+".tar.zst")
	}
	return out
}

// poison injects both kinds.
func (c *chaos) poison(ctx context.Context) error {
	url := c.dep.SourceQueues["r1"]
	if _, err := c.src.PutObject(ctx, &s3.PutObjectInput{Bucket: &c.other, Key: aws.String("data/chaos-other/x.txt"), Body: strings.NewReader("other")}); err != nil {
		return fmt.Errorf("writing the object of the event for another bucket: %w", err)
	}
	for _, p := range sourcePoison {
		body := strings.ReplaceAll(p.body, `"name":"SRC"`, fmt.Sprintf(`"name":%q`, c.cfg.Rules[0].SourceBucket))
		body = strings.ReplaceAll(body, `"name":"OTHER"`, fmt.Sprintf(`"name":%q`, c.other))
		if _, err := c.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(body)}); err != nil {
			return fmt.Errorf("poisoning the source queue (%s): %w", p.name, err)
		}
	}
	staging := c.cfg.Settings.Regions[1].StagingBucket
	for i, name := range targetPoison {
		data, err := c.hostile(name)
		if err != nil {
			return fmt.Errorf("building poison archive %s: %w", name, err)
		}
		key := targetPoisonKeys()[i]
		if _, err := c.dst.PutObject(ctx, &s3.PutObjectInput{Bucket: &staging, Key: &key, Body: bytes.NewReader(data),
			ContentLength: aws.Int64(int64(len(data)))}); err != nil {
			return fmt.Errorf("staging poison archive %s: %w", name, err)
		}
	}
	c.logf("injected %d poison messages and %d poison archives", len(sourcePoison), len(targetPoison))
	return nil
}

// poisonManifest describes two small objects of the rule under
// data/poison/, proposing the destinations the rule maps them to.
func (c *chaos) poisonManifest(id string, objs [][]byte) *manifest.Manifest {
	rule := &c.cfg.Rules[0]
	m := &manifest.Manifest{Format: manifest.Format, ArchiveID: id, CreatedAt: time.Now().UTC(), SourceRegion: rule.SourceRegion, RuleID: rule.ID, Level: 3}
	for i, data := range objs {
		key := fmt.Sprintf("data/poison/%s/%d.txt", id, i)
		routes, _ := rule.Routes(key)
		o := manifest.Object{Member: manifest.MemberName(i, key), Bucket: rule.SourceBucket, Key: key, Size: int64(len(data)),
			LastModified: time.Now().UTC(), Sequencer: "0FFFFFFFFFFFFFFFFF", SHA256: digest(data)}
		for _, r := range routes {
			o.Destinations = append(o.Destinations, manifest.Destination{Region: r.Region, Bucket: r.Bucket, Key: r.Key, StorageClass: r.StorageClass, KMSKeyID: r.KMSKeyID})
		}
		m.Objects = append(m.Objects, o)
	}
	return m
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hostile builds the poison archive called name.
func (c *chaos) hostile(name string) ([]byte, error) {
	// The poison is always in the first object: the target writes each
	// object once its own digest matched, so objects before a bad one
	// would be delivered (they are intact), and this run checks that
	// nothing at all comes out of a poison archive. The first object is
	// incompressible and most of the archive, so the corrupt byte and the
	// cut land in it.
	first := make([]byte, 64<<10)
	rand.NewChaCha8([32]byte{}).Read(first)
	objs := [][]byte{first, bytes.Repeat([]byte("venom "), 5000)}
	m := c.poisonManifest(name, objs)
	valid := func(m *manifest.Manifest) ([]byte, error) {
		var buf bytes.Buffer
		w := archive.NewWriter(archive.WriterOptions{})
		if err := w.Begin(&buf, m); err != nil {
			return nil, err
		}
		for i, o := range objs {
			if _, err := w.WriteObject(i, bytes.NewReader(o)); err != nil {
				return nil, err
			}
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	switch name {
	case "corrupt":
		b, err := valid(m)
		if err != nil {
			return nil, err
		}
		b[len(b)*3/4] ^= 0xff
		return b, nil
	case "truncated":
		b, err := valid(m)
		if err != nil {
			return nil, err
		}
		return b[:len(b)*2/3], nil
	case "wrong-digest":
		m.Objects[0].SHA256 = digest([]byte("something else"))
		return rawArchive(jsonOf(m), members(m, objs))
	case "dotdot-member":
		ms := members(m, objs)
		ms[0].name = "../../escape.txt"
		return rawArchive(jsonOf(m), ms)
	case "zstd-bomb":
		// The manifest promises 28 KB; the member decodes to 256 MiB of
		// zeros (a few hundred KiB compressed). Its header's size, which
		// disagrees, is refused before any of it is inflated: the reader
		// inflates no more than the manifest declares (and 64 KiB of
		// padding), so a bomb that agrees with its manifest is an archive
		// of that size, which the target writes.
		return bomb(jsonOf(m), m.Objects[0].Member, 256<<20)
	case "oversized-manifest":
		return oversized(manifest.MaxSize + 1)
	case "unconfigured-bucket":
		m.Objects[0].Destinations[0].Bucket = c.evil
		return rawArchive(jsonOf(m), members(m, objs))
	case "misplaced":
		m.ArchiveID = "another-archive"
		return valid(m)
	}
	return nil, fmt.Errorf("unknown poison %q", name)
}

type member struct {
	name string
	body []byte
}

func members(m *manifest.Manifest, objs [][]byte) []member {
	var out []member
	for i, o := range objs {
		out = append(out, member{m.Objects[i].Member, o})
	}
	return out
}

func jsonOf(m *manifest.Manifest) []byte {
	b, _ := json.Marshal(m)
	return b
}

// rawArchive writes manifest.json and members with archive/tar and zstd
// directly, bypassing every check of archive.Writer.
func rawArchive(mf []byte, ms []member) ([]byte, error) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, mb := range append([]member{{archive.ManifestName, mf}}, ms...) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: mb.name, Size: int64(len(mb.body)), Mode: 0o644, ModTime: time.Now(), Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(mb.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return compress(&tb)
}

// bomb is manifest.json, then member of size n, all zeros.
func bomb(mf []byte, name string, n int64) ([]byte, error) {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: archive.ManifestName, Size: int64(len(mf)), Mode: 0o644, ModTime: time.Now(), Format: tar.FormatPAX})
		if err == nil {
			_, err = tw.Write(mf)
		}
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: n, Mode: 0o644, ModTime: time.Now(), Format: tar.FormatPAX})
		}
		zeros := make([]byte, 1<<20)
		for left := n; err == nil && left > 0; left -= int64(len(zeros)) {
			_, err = tw.Write(zeros[:min(int64(len(zeros)), left)])
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return compress(pr)
}

// oversized is an archive whose manifest.json is n bytes of spaces.
func oversized(n int64) ([]byte, error) {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: archive.ManifestName, Size: n, Mode: 0o644, ModTime: time.Now(), Format: tar.FormatPAX})
		spaces := bytes.Repeat([]byte{' '}, 1<<20)
		for left := n; err == nil && left > 0; left -= int64(len(spaces)) {
			_, err = tw.Write(spaces[:min(int64(len(spaces)), left)])
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return compress(pr)
}

func compress(r io.Reader) ([]byte, error) {
	var out bytes.Buffer
	enc, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(true))
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(enc, r); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// jsonConfig writes cfg as the workers read it.
func jsonConfig(cfg *config.Config) ([]byte, error) { return json.MarshalIndent(cfg, "", "  ") }
