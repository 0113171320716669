package deliver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrc-dev/xrc/internal/worker"
)

// Metrics are the target worker's Prometheus metrics, the runtime's
// included.
type Metrics struct {
	*worker.Metrics
	Archives        *prometheus.CounterVec   // by result: done, failed, invalid, rejected, missing
	Objects         *prometheus.CounterVec   // by rule, result: written, retagged, retag_wait, skipped_older, skipped_deleted, skipped_absent, skipped_stale, skipped_not_xrc, deleted, delete_skipped, delete_not_ours, delete_unordered, delete_absent, failed
	Bytes           *prometheus.CounterVec   // uncompressed bytes written to destinations, by rule
	ArchiveBytes    *prometheus.CounterVec   // archive bytes delivered from staging, by rule
	StagingRead     prometheus.Counter       // bytes read from staging by every GET, re-reads included
	ResumedBytes    prometheus.Counter       // bytes of large objects not sent again: parts an earlier delivery uploaded
	VerifyFailures  prometheus.Counter       // archives that failed verification
	PutRefused      prometheus.Counter       // writes without a read first that found the key there
	Latency         *prometheus.HistogramVec // source write to destination write, by rule
	ArchiveDuration *prometheus.HistogramVec // one archive, by rule
}

// latencyBuckets reach six days (2^19 s): after an outage, a backfill or
// a DLQ redrive, hours and days of lag show as such, not as the last
// bound (they stopped at 2.3 hours).
var latencyBuckets = prometheus.ExponentialBuckets(1, 2, 20)

// NewMetrics registers the target metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Metrics: worker.NewMetrics(reg, "target"),
		Archives: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_target_archives_total",
			Help: "Archives processed, by result: done, failed (retried), invalid (failed verification), unsupported (written by a newer xrc: upgrade this target), rejected (not allowed by this region's config), missing (gone from staging undelivered), waiting (another delivery writes its objects, or a retag waits for its write), interrupted (the worker stopped)."}, []string{"result"}),
		Objects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_target_objects_total",
			Help: "Destination writes and deletes, by rule and result."}, []string{"rule", "result"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_target_bytes_total",
			Help: "Object bytes written to destinations."}, []string{"rule"}),
		ArchiveBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_target_archive_bytes_total",
			Help: "Compressed archive bytes read from staging."}, []string{"rule"}),
		StagingRead: prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_target_staging_read_bytes_total",
			Help: "Bytes read from the staging bucket, every GET of every delivery attempt counted."}),
		ResumedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_target_resumed_bytes_total",
			Help: "Bytes of large objects an earlier, interrupted delivery had already uploaded (parts reused, not sent again)."}),
		VerifyFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_target_verify_failures_total",
			Help: "Archives that failed verification (corrupt, truncated, unsafe, or an object whose size or SHA-256 did not match): nothing unverified was written from them."}),
		PutRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_target_put_refused_total",
			Help: "Small-object PUTs made without reading the key first (If-None-Match: *) that found it there: one request more each, then read and written again. Past about 7% of writes to a bucket, the worker reads first."}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xrc_target_replication_latency_seconds",
			Help: "From the source object's last-modified time to its destination write.", Buckets: latencyBuckets}, []string{"rule"}),
		ArchiveDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xrc_target_archive_duration_seconds",
			Help: "Time to verify and deliver one archive.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}, []string{"rule"}),
	}
	reg.MustRegister(m.Archives, m.Objects, m.Bytes, m.ArchiveBytes, m.StagingRead, m.ResumedBytes, m.VerifyFailures, m.PutRefused, m.Latency, m.ArchiveDuration)
	return m
}
