// Package localstack connects tests and the demo to the local stack of real
// AWS-protocol servers started by deploy/local/stack (two MinIOs as the
// us-east-1 and eu-west-1 "regions", local-aws-sqs, DynamoDB Local, and the
// MinIO-webhook-to-SQS bridge), and provisions resources on it with the SDK.
//
// Endpoints and credentials come from the environment printed by
//
//	deploy/local/stack up && eval "$(deploy/local/stack env)"
//
// A test that needs the stack calls Require, which fails the test (never
// skips it) when the stack is not reachable.
//
// Differences from AWS that callers must expect (deploy/local/README.md has
// the full list):
//   - S3 event records come from MinIO: eventSource "minio:s3", eventName
//     with an "s3:" prefix ("s3:ObjectCreated:Put"; AWS sends
//     "ObjectCreated:Put"), and object keys query-escaped including '/'.
//     url.QueryUnescape the key (correct for AWS too).
//   - Events of replicas are synthesized by the bridge from the source
//     bucket's replication events (MinIO emits none at the destination);
//     a replicated metadata change also shows up as s3:ObjectCreated:Put.
//   - Bucket names share one namespace in the bridge's routing table, as
//     they do on AWS: use UniqueName.
//   - MinIO rejects SigV4 signed for another region: use one client per
//     region (S3 does that).
//   - MinIO ignores If-Match on DeleteObject (AWS answers 412
//     PreconditionFailed, or 404 NoSuchKey for a missing key). S3Conditional
//     is a client for the bridge's proxy to eu-west-1's MinIO, which adds it.
package localstack
