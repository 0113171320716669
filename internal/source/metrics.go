package source

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xrc-dev/xrc/internal/worker"
)

// Metrics are the source worker's Prometheus metrics, the runtime's
// included. Labels hold bounded values only (rule ids, outcomes), never keys.
type Metrics struct {
	*worker.Metrics
	Objects         *prometheus.CounterVec   // by rule, result: archived, deleted, retagged, skipped, skipped_delete, skipped_version_delete, failed
	BytesIn         *prometheus.CounterVec   // uncompressed bytes archived, by rule
	BytesOut        *prometheus.CounterVec   // archive bytes written to staging, by rule
	Archives        *prometheus.CounterVec   // by rule, result: staged, failed, relayed (Relay)
	ArchiveDuration *prometheus.HistogramVec // seconds from batch close to staged, by rule
	BatchObjects    *prometheus.HistogramVec // entries per archive, by rule
	Batches         *prometheus.CounterVec   // batches closed, by rule and what closed them
	Unmatched       prometheus.Counter       // events of keys no rule covers
	LevelObjects    *prometheus.CounterVec   // the level mix: objects by rule, class and arm
	BytesSaved      *prometheus.CounterVec   // bytes in minus bytes out (never negative), by rule
	Transfer        *prometheus.CounterVec   // dollars of inter-region transfer, by rule and kind: without (xrc), with
	Compute         *prometheus.CounterVec   // dollars of CPU: compression here, decompression in the targets, by rule
	ArchiveRatio    *prometheus.HistogramVec // bytes in / bytes out of each archive, by rule
	CompressionCPU  *prometheus.CounterVec   // normalised CPU-seconds spent encoding, by rule
	Decisions       *prometheus.CounterVec   // level choices by reason: start, exploit, explore, throughput, size
	CPUBenchmark    prometheus.Gauge         // this task's MB per CPU-second at the reference level
	CPUFactor       prometheus.Gauge         // this task's CPU against the fleet's mean
	Behind          *prometheus.GaugeVec     // arms below the best, chosen to catch up (throughput mode), by rule
	// EncryptionNotCarried: objects under a KMS key whose copy at a
	// destination will not be, by rule and to: bucket_default (no
	// kmsKeyId), single_layer (DSSE-KMS at the source).
	EncryptionNotCarried *prometheus.CounterVec
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
		Batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_batches_total",
			Help: "Batches closed, by rule and what closed them: objects, bytes (maxObjects, maxBytes or the slow start's smaller limit), age (maxAge), idle, alone (an object over maxBytes), drain (the task stopping)."}, []string{"rule", "closed_by"}),
		LevelObjects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_level_objects_total",
			Help: "Objects archived, by rule, content class and arm (zstd level or store): the level mix."}, []string{"rule", "class", "arm"}),
		BytesSaved: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_bytes_saved_total",
			Help: "Object bytes in minus archive bytes out (stored objects save none), by rule."}, []string{"rule"}),
		Transfer: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_transfer_dollars_total",
			Help: "Inter-region transfer to every target region, in dollars, by rule and kind: without (what the objects would cost), with (what the archives cost). Net benefit = without - with - compute, each staging counted (objects staged again count again; xrc savings counts them once)."}, []string{"rule", "kind"}),
		Compute: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_compute_dollars_total",
			Help: "CPU spent compressing (here) and decompressing (in every target region), in dollars, by rule."}, []string{"rule"}),
		ArchiveRatio: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xrc_source_archive_ratio",
			Help: "Compression ratio (bytes in / bytes out) of each archive.", Buckets: []float64{1, 1.1, 1.5, 2, 3, 4, 6, 10, 20}}, []string{"rule"}),
		CompressionCPU: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_compression_cpu_seconds_total",
			Help: "CPU-seconds spent encoding objects (normalised to the fleet's CPU), by rule."}, []string{"rule"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_level_decisions_total",
			Help: "Level choices by reason: start, exploit, explore, throughput, size (an object too large for the level chosen), local (a rule whose bytes cross no region stores)."}, []string{"why"}),
		CPUBenchmark: prometheus.NewGauge(prometheus.GaugeOpts{Name: "xrc_source_cpu_benchmark_mb_per_second",
			Help: "This task's start-up CPU benchmark: MB compressed per CPU-second at level 3."}),
		CPUFactor: prometheus.NewGauge(prometheus.GaugeOpts{Name: "xrc_source_cpu_factor_ratio",
			Help: "This task's CPU benchmark divided by the fleet's mean."}),
		Unmatched: prometheus.NewCounter(prometheus.CounterOpts{Name: "xrc_source_unmatched_events_total",
			Help: "S3 events of keys no rule covers (its prefix, suffix and ignore patterns), acknowledged: steady on keys meant to be copied, a config that does not match the bucket's notifications."}),
		Behind: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xrc_source_throughput_steps",
			Help: "How many levels faster than the best the learner chooses to catch up with the rule's queue (0: not behind), by rule."}, []string{"rule"}),
		EncryptionNotCarried: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xrc_source_encryption_not_carried_total",
			Help: "Objects encrypted under a KMS key whose copy at a destination will not be, counted at each such destination each time one is archived, by rule and to: bucket_default (the destination has no kmsKeyId: its bucket's default encryption), single_layer (DSSE-KMS at the source, SSE-KMS with kmsKeyId)."}, []string{"rule", "to"}),
	}
	reg.MustRegister(m.Objects, m.BytesIn, m.BytesOut, m.Archives, m.ArchiveDuration, m.BatchObjects, m.Batches,
		m.LevelObjects, m.BytesSaved, m.Transfer, m.Compute, m.ArchiveRatio, m.CompressionCPU, m.Decisions, m.CPUBenchmark, m.CPUFactor, m.Behind, m.Unmatched, m.EncryptionNotCarried)
	return m
}
