package target

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the target worker's Prometheus metrics.
type Metrics struct {
	Messages        *prometheus.CounterVec   // by result: acked, released, invalid, ignored, test
	Archives        *prometheus.CounterVec   // by result: done, failed, invalid
	Objects         *prometheus.CounterVec   // by rule, result: written, skipped_older, deleted, delete_skipped, failed
	Bytes           *prometheus.CounterVec   // uncompressed bytes written to destinations, by rule
	ArchiveBytes    *prometheus.CounterVec   // archive bytes read from staging, by rule
	VerifyFailures  prometheus.Counter       // objects whose size or SHA-256 did not match
	Latency         *prometheus.HistogramVec // source write to destination write, by rule
	ArchiveDuration *prometheus.HistogramVec // one archive, by rule
	Errors          *prometheus.CounterVec   // by kind
	ReceiveDuration prometheus.Histogram
	Held            prometheus.GaugeFunc
}

// NewMetrics registers the target metrics on reg.
func NewMetrics(reg prometheus.Registerer, held func() float64) *Metrics {
	m := &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_target_messages_total",
			Help: "SQS messages handled, by result."}, []string{"result"}),
		Archives: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_target_archives_total",
			Help: "Archives processed, by result."}, []string{"result"}),
		Objects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_target_objects_total",
			Help: "Destination writes, by rule and result."}, []string{"rule", "result"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_target_bytes_total",
			Help: "Object bytes written to destinations."}, []string{"rule"}),
		ArchiveBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_target_archive_bytes_total",
			Help: "Compressed archive bytes read from staging."}, []string{"rule"}),
		VerifyFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_target_verify_failures_total",
			Help: "Objects whose size or SHA-256 did not match the manifest: never written."}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xrc_target_replication_latency_seconds",
			Help: "From the source object's last-modified time to its destination write.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}, []string{"rule"}),
		ArchiveDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xrc_target_archive_duration_seconds",
			Help: "Time to verify and extract one archive.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}, []string{"rule"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_target_errors_total",
			Help: "Errors by kind."}, []string{"kind"}),
		ReceiveDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xrc_target_receive_duration_seconds",
			Help: "Latency of one SQS long-poll receive.", Buckets: prometheus.LinearBuckets(0, 2.5, 10)}),
		Held: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xrc_target_messages_held",
			Help: "Messages received and not yet acknowledged or released."}, held),
	}
	reg.MustRegister(m.Messages, m.Archives, m.Objects, m.Bytes, m.ArchiveBytes, m.VerifyFailures, m.Latency, m.ArchiveDuration, m.Errors, m.ReceiveDuration, m.Held)
	return m
}
