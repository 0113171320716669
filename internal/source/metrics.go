package source

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrc-dev/xrc/internal/worker"
)

// Metrics are the source worker's Prometheus metrics, the runtime's
// included. Labels hold bounded values only (rule ids, outcomes), never keys.
type Metrics struct {
	*worker.Metrics
	Objects         *prometheus.CounterVec   // by rule, result: archived, deleted, skipped, skipped_version_delete, unroutable, failed
	BytesIn         *prometheus.CounterVec   // uncompressed bytes archived, by rule
	BytesOut        *prometheus.CounterVec   // archive bytes written to staging, by rule
	Archives        *prometheus.CounterVec   // by rule, result: staged, failed
	ArchiveDuration *prometheus.HistogramVec // seconds from batch close to staged, by rule
	BatchObjects    *prometheus.HistogramVec // entries per archive, by rule
}

// NewMetrics registers the source metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Metrics: worker.NewMetrics(reg, "source"),
		Objects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_objects_total",
			Help: "Objects handled, by rule and result."}, []string{"rule", "result"}),
		BytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_bytes_in_total",
			Help: "Uncompressed object bytes archived."}, []string{"rule"}),
		BytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_bytes_out_total",
			Help: "Compressed archive bytes written to staging (what crosses regions)."}, []string{"rule"}),
		Archives: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_archives_total",
			Help: "Archives attempted, by rule and result."}, []string{"rule", "result"}),
		ArchiveDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xrc_source_archive_duration_seconds",
			Help: "Time from closing a batch to its archive being staged.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}, []string{"rule"}),
		BatchObjects: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xrc_source_batch_objects",
			Help: "Entries per archive.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}, []string{"rule"}),
	}
	reg.MustRegister(m.Objects, m.BytesIn, m.BytesOut, m.Archives, m.ArchiveDuration, m.BatchObjects)
	return m
}
