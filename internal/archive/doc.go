// Package archive reads and writes xrc staging archives: batches of S3
// objects packed into one zstd-compressed tar stream, described by a
// manifest (package manifest) that travels as the archive's first member.
//
// # Layout
//
// An archive is a standard POSIX tar stream (PAX format) compressed with
// zstd, i.e. a .tar.zst file. Stock tools read it:
//
//	zstd -d < a.tar.zst | tar -t     # list
//	tar --zstd -xf a.tar.zst         # extract
//
// The tar stream holds these members, in this order, and nothing else:
//
//  1. manifest.json: the manifest as JSON (manifest.Manifest.Encode).
//  2. For each object of the manifest that has a member (not a delete or
//     a retag entry, manifest.Object.HasMember), in
//     manifest order: the member named Object.Member, holding exactly
//     Object.Size bytes of the object's content. Names come from
//     manifest.MemberName: objects/<index, 6 digits>/<key> when the key is a
//     safe relative path, else objects/<index>.
//  3. Directly after an object's member, only when the manifest's
//     Object.SHA256 is empty (the source streamed the object and learnt its
//     digest after writing the manifest): the trailer member
//     Object.Member + ".sha256".
//
// followed by the tar end-of-archive marker (two zero blocks). For example,
// with objects[1] a delete entry, objects[2] digested in the manifest and
// objects[3] keyed "a/../b":
//
//	manifest.json
//	objects/000000/logs/2026/11/22/app.log
//	objects/000000/logs/2026/11/22/app.log.sha256
//	objects/000002/images/cat.jpg
//	objects/000003
//	objects/000003.sha256
//
// A trailer holds one line in sha256sum format, the lowercase hex SHA-256
// of the content, two spaces, the base name of the member, a newline:
//
//	3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7  app.log\n
//
// so that after tar -x an operator can run "sha256sum -c app.log.sha256" in
// the member's directory.
//
// Every member is a regular file (typeflag '0') with mode 0644, uid and gid
// 0, empty user and group names, and a modification time equal to the
// object's LastModified (the manifest's CreatedAt for manifest.json). Names
// longer than USTAR allows, non-ASCII names and sub-second times are carried
// in PAX extended headers.
//
// The zstd stream is one or more concatenated frames, each with a content
// checksum. manifest.json (with its padding) is a frame of its own since
// the writer of this package made it so (older archives may share the
// frame), so a streaming reader has checked the manifest's frame checksum
// when it reads the first object's header. A writer starts a new frame
// when its caller changes the
// compression level between objects (Writer.SetLevel), and stores the
// content of an incompressible object (Store) in a frame of raw blocks of
// its own, between the compressed frames holding the tar headers and
// padding around it. Readers must not rely on where frames end.
//
// # Trust
//
// Reader treats an archive as hostile input: it accepts the tar layout
// above (no extended records but path, size and mtime, no more header bytes
// before a member than its name needs) and verifies every object's size and SHA-256 while the caller reads
// it, before reporting the end of the object. The stream must open with a
// frame that carries its content checksum: the manifest's, whose deletes
// and destinations nothing else checks. It does not insist on what carries
// no member data and cannot change what is written: later zstd skippable
// frames, later frames without a checksum (the digests catch their
// corruption), bytes in tar padding. Every rejection wraps
// ErrInvalid; errors of the underlying io.Reader are passed on, wrapped but
// not as ErrInvalid, so a caller can retry transient read failures.
package archive
