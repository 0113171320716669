package deliver_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/config"
	"github.com/xrc-dev/xrc/internal/dataset"
	"github.com/xrc-dev/xrc/internal/deliver"
)

// TestDestinationsKeepTheSourceChecksum: a destination is written with
// the source object's own full-object checksum, a single PUT and a
// multipart upload alike, so S3 checks the bytes against it and `xrc
// verify` can compare the two; a manifest whose checksum the bytes do not
// match writes nothing and its message reaches the DLQ, saying so.
func TestDestinationsKeepTheSourceChecksum(t *testing.T) {
	t.Parallel()
	p := newPipeline(t, func(c *config.Config) { c.Settings.Worker.MaxReceiveCount = 2 })
	ctx := context.Background()
	dst := p.cfg.Rules[0].Destinations[0].Bucket
	reg, _ := p.startTarget(t)
	rng := newRand()
	objs := []dataset.Object{
		{Key: "data/sum/nvme.txt", ContentType: "text/plain", Data: dataset.Text(rng, 64<<10)},
		{Key: "data/sum/crc32.txt", ContentType: "text/plain", Data: dataset.Text(rng, 1<<10)},
		{Key: "data/sum/big.txt", ContentType: "text/plain", Data: textData(11, deliver.BufferMax+4<<20)}, // multipart
		{Key: "data/sum/plain.txt", ContentType: "text/plain", Data: []byte("no checksum at the source")},
	}
	m := manifestFor("sum-1", objs, p.cfg, nil)
	want := []struct{ alg, sum string }{
		{"CRC64NVME", checksum.CRC64NVME.Sum(objs[0].Data)},
		{"CRC32", checksum.CRC32.Sum(objs[1].Data)},
		{"CRC64NVME", checksum.CRC64NVME.Sum(objs[2].Data)},
		{"", ""},
	}
	for i, w := range want {
		m.Objects[i].ChecksumAlgorithm, m.Objects[i].Checksum = w.alg, w.sum
	}
	p.deliver(t, "r1/sum-1.tar.zst", m, objs)
	for i, o := range objs {
		h, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &o.Key, ChecksumMode: s3types.ChecksumModeEnabled})
		if err != nil {
			t.Fatalf("s3://%s/%s: %v", dst, o.Key, err)
		}
		got := map[string]string{"CRC64NVME": aws.ToString(h.ChecksumCRC64NVME), "CRC32": aws.ToString(h.ChecksumCRC32), "SHA256": aws.ToString(h.ChecksumSHA256)}
		w := want[i]
		if w.alg == "" {
			sum := sha256.Sum256(o.Data)
			w.alg, w.sum = "SHA256", base64.StdEncoding.EncodeToString(sum[:])
		}
		if got[w.alg] != w.sum || h.ChecksumType != s3types.ChecksumTypeFullObject {
			t.Errorf("%s: destination keeps %s %v, want the full-object %s %s", o.Key, h.ChecksumType, got, w.alg, w.sum)
		}
		if !bytes.Equal(p.read(t, dst, o.Key), o.Data) {
			t.Errorf("%s: bytes differ", o.Key)
		}
	}

	// The manifest's checksum is not the bytes': nothing is written.
	lie := []dataset.Object{{Key: "data/sum/lie.txt", ContentType: "text/plain", Data: []byte("the bytes")}}
	ml := manifestFor("sum-lie", lie, p.cfg, nil)
	ml.Objects[0].ChecksumAlgorithm, ml.Objects[0].Checksum = "CRC64NVME", checksum.CRC64NVME.Sum([]byte("other bytes"))
	p.stageRaw(t, "r1/sum-lie.tar.zst", ml, lie) // the writer would refuse it
	dlq := queueURL(t, p.sqs, p.cfg.TargetQueueName()+"-dlq")
	if !poll(time.Minute, 500*time.Millisecond, func() bool { return p.depth(t, dlq) == 1 }) {
		t.Fatalf("the archive whose checksum lies did not reach the DLQ within a minute")
	}
	if _, err := p.dst.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &dst, Key: &lie[0].Key}); err == nil {
		t.Errorf("%s was written though its bytes do not match the manifest's checksum", lie[0].Key)
	}
	said := false
	for _, e := range p.released() {
		said = said || strings.Contains(fmt.Sprint(e["error"]), "do not match the source object's checksum (CRC64NVME "+ml.Objects[0].Checksum+")")
	}
	if !said {
		t.Errorf("no release said the bytes do not match the source's checksum: %v", p.released())
	}
	if n := metric(t, reg, "xrc_target_errors_total", "kind", "checksum"); n < 1 {
		t.Errorf("xrc_target_errors_total{kind=checksum} = %v, want the refusals counted", n)
	}
}
