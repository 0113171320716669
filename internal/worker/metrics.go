package worker

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the runtime's metrics, named xrc_<role>_*. Errors is shared
// with the role, which counts its own kinds there.
type Metrics struct {
	Messages        *prometheus.CounterVec // by result: acked, released, invalid, test, and the role's own
	Errors          *prometheus.CounterVec // by kind
	ReceiveDuration prometheus.Histogram   // one long-poll call
	Held            prometheus.Gauge       // messages received and not yet settled
	Protected       prometheus.Gauge       // 1 while the task is protected from scale-in
}

// NewMetrics registers the runtime metrics of role ("source", "target") on
// reg.
func NewMetrics(reg prometheus.Registerer, role string) *Metrics {
	p := "xrc_" + role + "_"
	m := &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "messages_total",
			Help: "SQS messages settled (acked, released: each message once per receive), and why or how some were (requeued, invalid, test, unmatched, ignored: counted besides)."}, []string{"result"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "errors_total",
			Help: "Errors by kind."}, []string{"kind"}),
		ReceiveDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: p + "receive_duration_seconds",
			Help: "Latency of one SQS long-poll receive.", Buckets: prometheus.LinearBuckets(0, 2.5, 10)}),
		Held: prometheus.NewGauge(prometheus.GaugeOpts{Name: p + "messages_held",
			Help: "Messages received and not yet acknowledged or released."}),
		Protected: prometheus.NewGauge(prometheus.GaugeOpts{Name: p + "task_protected",
			Help: "1 while the task is protected from ECS scale-in and deployments (it holds long work)."}),
	}
	reg.MustRegister(m.Messages, m.Errors, m.ReceiveDuration, m.Held, m.Protected)
	return m
}
