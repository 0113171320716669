// Package manifest defines the table of contents of an xrc staging archive:
// which S3 objects the archive carries, under which tar member each one is
// stored, and where each one must be written in the destination regions.
//
// A manifest is JSON. Its "format" field is the version of this contract;
// this package reads and writes format 1 only. Decoders of format 1 ignore
// fields they do not know, so a newer writer may add optional fields without
// bumping the format; a feature a reader must understand to stay correct is
// named in the manifest's "requires", and a reader that does not know a
// name there refuses the archive (ErrUnsupported). A new format number is
// for a change no reader of format 1 could take at all.
//
// The manifest travels inside the archive (see package archive), which makes
// it input from another region: Decode caps its size, and Validate checks
// every invariant the archive reader and the target rely on, so code past
// Decode can trust member names, sizes and digests to be well formed.
package manifest
