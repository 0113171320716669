// Package lambda runs xrc's workers on AWS Lambda (cmd/xrc-lambda): an SQS
// event source mapping hands a batch of messages to one invocation, the
// role's handler does with it what the Fargate worker does with the
// messages it receives, through the same per-batch step (source.Worker's
// Match and Pack) or per-archive step (deliver.Worker's Deliver), and
// answers with the messages that must come back (partial batch failures).
//
// Guarantees, the workers' own carried over to an invocation:
//   - A message is reported done only when every object it names is in an
//     archive durably in staging (source; or deliberately skipped, the
//     object being gone or overwritten since its event), or when its
//     archive is delivered (target). Everything else, poison (unparseable)
//     messages included, is reported in BatchItemFailures, so SQS delivers
//     it again and, after the queue's maxReceiveCount, dead-letters it.
//   - An invocation ends in time: nothing new starts later than the
//     configured margin before ctx's deadline unless the pace measured so
//     far says it fits; work still running at that point is cancelled, its
//     multipart uploads aborted, and its messages reported.
//   - A failed message is made visible again as the Fargate worker would
//     release it: at once when no retry can help or the deadline cut it,
//     after the worker's backoff otherwise, rather than after the queue's
//     long visibility timeout.
//
// Function is the whole invocable: the role's handler behind a config
// cache that rebuilds it when the document changes. Source and Target are
// the handlers, testable without lambda.Start.
package lambda
