// Package verify compares a rule's source bucket with its destinations and
// reports, object by object, where they differ: missing, extra,
// size-different, digest-different, stale (the destination holds an older
// write than the source's current one), not written by xrc, and headers
// (what xrc restores beside the bytes differs). It is the
// engine of `xrc verify`; Run needs only S3 clients, so a Lambda function or
// an ECS task can run it as well.
//
// How it works, and what it guarantees:
//
//   - Both sides are listed with ListObjectsV2, which returns keys in UTF-8
//     binary order. A rule maps a source key to a destination key by
//     replacing a prefix (config.Rule.DestinationKey), which keeps that
//     order, so one source listing and one listing per destination are
//     merged like sorted files: memory holds a page per side and prefix
//     being walked, never the bucket. The walk descends common prefixes
//     (delimiter "/"), each prefix listed on every side at once, with at
//     most Options.ListConcurrency prefixes in flight.
//   - Only what the rule replicates is compared: source keys its prefix,
//     suffix and ignore list cover, and destination keys that map back to
//     such keys. Anything else in a destination bucket is not xrc's.
//   - A destination's content is never judged by its ETag: a multipart ETag
//     is no digest of the bytes. Digests come from the full-object checksums
//     S3 keeps (HeadObject with ChecksumMode ENABLED; a composite checksum,
//     a digest of part digests, is ignored); the SHA-256 xrc stored in
//     x-amz-meta-xrc-sha256 can show bytes differ, never prove them equal,
//     as S3 does not check metadata. xrc writes a destination with the
//     source object's own full-object checksum when it has one, so most
//     pairs compare without reading either side. Where the source has no
//     checksum of an algorithm the destination has (none, or a composite
//     one from a multipart upload), Options.HashSources reads the source
//     and hashes it; otherwise the object is counted as unchecked (same
//     size and provenance, content not compared), never as equal.
//   - Tags: HeadObject gives their number, which is compared; their values
//     only with Options.CompareTags (`xrc verify -tags`), a GetObjectTagging
//     on each side of each pair otherwise equal, whatever the counts say:
//     HEAD gives the count only to callers that may read the tags, and
//     shows none to others.
//   - A destination object without xrc's provenance (x-amz-meta-xrc-*)
//     is reported as not written by xrc: verify does not guess whether an
//     object someone else wrote is the same.
//   - Every HeadObject and GetObject answers for the object as it is then;
//     an object written while verify runs can show up as missing or stale.
//     Run again, or with a narrower prefix, to confirm.
package verify
