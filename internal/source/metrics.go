package source

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the source worker's Prometheus metrics. Labels hold bounded
// values only (rule ids, outcomes), never keys.
type Metrics struct {
	Messages        *prometheus.CounterVec   // by result: acked, released, invalid, unmatched, test
	Objects         *prometheus.CounterVec   // by rule, result: archived, deleted, skipped, failed
	BytesIn         *prometheus.CounterVec   // uncompressed bytes archived, by rule
	BytesOut        *prometheus.CounterVec   // archive bytes written to staging, by rule
	Archives        *prometheus.CounterVec   // by rule, result: staged, failed
	ArchiveDuration *prometheus.HistogramVec // seconds from batch close to staged, by rule
	BatchObjects    *prometheus.HistogramVec // entries per archive, by rule
	Errors          *prometheus.CounterVec   // by kind
	ReceiveDuration prometheus.Histogram     // one long-poll call
	Held            prometheus.GaugeFunc
}

// NewMetrics registers the source metrics on reg; held reports the number of
// messages in flight.
func NewMetrics(reg prometheus.Registerer, held func() float64) *Metrics {
	m := &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_messages_total",
			Help: "SQS messages handled, by result."}, []string{"result"}),
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
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_errors_total",
			Help: "Errors by kind."}, []string{"kind"}),
		ReceiveDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xrc_source_receive_duration_seconds",
			Help: "Latency of one SQS long-poll receive.", Buckets: prometheus.LinearBuckets(0, 2.5, 10)}),
		Held: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xrc_source_messages_held",
			Help: "Messages received and not yet acknowledged or released."}, held),
	}
	reg.MustRegister(m.Messages, m.Objects, m.BytesIn, m.BytesOut, m.Archives, m.ArchiveDuration, m.BatchObjects, m.Errors, m.ReceiveDuration, m.Held)
	return m
}
