// Package backfill seeds a rule's destinations with the objects that were in
// its source bucket before replication was switched on (S3 event
// notifications only cover later writes), and repairs what differs since.
// It finds the source objects (a listing, or an S3 Inventory report),
// compares each with every destination of its rule, and sends a synthetic
// ObjectCreated:Put event for each one that differs to the rule's source
// queue, so the normal pipeline moves it: nothing here reads or writes an
// object's bytes.
//
// # Finding
//
// A listing fans out over common prefixes: the root (the rule's prefix,
// narrowed by Options.Prefix) is listed with the delimiter '/' down to
// Options.Depth levels, each common prefix found there becomes a task of
// its own, and tasks at the last level are listed whole; at most
// Options.Concurrency tasks run at once. An inventory report is read file
// by file instead (its CSV data files, gzip or not), at the same
// concurrency.
//
// # Comparing
//
// A listed page of source keys is merge-joined with a listing of the same
// key range at each destination (a rule's prefix rewrite keeps key order),
// so a missing or resized object costs no request of its own. An object
// present with the same size is read with HEAD, because only its xrc
// provenance (x-amz-meta-xrc-*) says which source write it holds. From an
// inventory, whose files need not be sorted, each destination key is read
// with HEAD. An object is sent when, at any destination:
//   - it is missing;
//   - its size differs;
//   - xrc wrote it (x-amz-meta-xrc-*) from an older source write:
//     xrc-mtime earlier than the source's last-modified time, compared in
//     whole seconds (HEAD and the provenance carry seconds), or, in the
//     same second, another source version id (known from an inventory).
//
// ETags are never compared: a multipart upload's ETag is not a digest of
// the bytes, and the target writes with its own part size, so equal
// content routinely has different ETags. An object of the same size that
// xrc did not write (no provenance: a copy made before xrc, S3 Batch
// Replication, a hand upload) is left alone and counted as present, not by
// xrc; xrc verify compares its content. An object written by xrc whose
// provenance lost its time (dropped for lack of metadata room) cannot be
// ordered and is left alone too.
//
// With Options.Tags, an object every destination holds as the same write
// is also compared by its tags: GetObjectTagging at the source and at each
// destination (whatever HEAD's tag count says: it shows none to a caller
// that may not read them). Not where a destination holds a copy xrc did
// not write: the target could not match the change to a write of its own,
// and would wait for one. One
// that differs is sent as a tag change (ObjectTagging:Put, with the
// listing's ETag), which the source worker stages as a retag entry and the target applies only to its copy
// of that very write, without moving the bytes again. A tag change does
// not move Last-Modified, so Since can hide one.
//
// # Sending
//
// Each event is one message in the exact body S3 writes
// (events.Encode), ten messages per SendMessageBatch, failed entries of a
// batch retried with backoff, at most Options.Rate events a second. It
// carries bucket, key, size, ETag (a listing's), and as event
// time the object's last-modified time. It carries no sequencer, on
// purpose: S3's sequencers order the writes of one key only as S3 issued
// them, and a made-up one could sort after a real later write's, which the
// target would then skip as older. Without a sequencer the target orders
// the synthetic write first by when the source read it against when a
// real write completed (its event's time), more than a second apart, and
// then by the object's last-modified time (deliver's newerOrSame), which
// both kinds of write carry: an older real event still in flight is
// skipped against it, a newer real write replaces it. The
// source worker HEADs the object anyway and skips an event whose ETag no
// longer matches, so an object overwritten since the listing travels only
// with its own, real event. An inventory report's events carry neither
// ETag nor version id: the report may predate the notifications, so a
// write since it may have no event, and the source archives what the key
// holds when it reads it.
//
// # Resuming
//
// Progress is kept in a Checkpoint: per task prefix (or inventory data
// file), the last key (or row) whose events are sent, and whether the task
// is done. A common prefix is recorded before its parent's progress passes
// it, and a page's progress only after its events were accepted by SQS, so
// an interrupted run resumes without losing an object and without listing
// a finished prefix again; at most the pages in flight at the
// interruption are sent twice, which the pipeline shrugs off (the target
// skips a write it already holds). A run that completes removes its
// checkpoint, so the next run starts afresh (in the table, its run's item
// stays, marked complete, until the next run replaces it).
package backfill
