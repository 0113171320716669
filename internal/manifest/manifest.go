package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// Format is the manifest format version this package reads and writes.
const Format = 1

// MaxSize caps the encoded manifest bytes Decode accepts. At a few hundred
// bytes per object it leaves room for well over 100,000 objects, far more
// than one archive should batch, while bounding what a hostile archive can
// make a reader allocate.
const MaxSize = 64 << 20

// MaxObjectSize is S3's largest object, 10,000 parts of 5 GiB: a manifest
// claiming more is not describing an S3 object.
const MaxObjectSize = 10_000 * 5 << 30

// SinglePutMax is the largest object a target writes with one PUT, where
// S3 checks the source's own checksum (any algorithm) as the bytes
// arrive; a larger one goes in parts under a CRC, and a SHA the source
// gave is then checked by the source or nobody.
const SinglePutMax = 16 << 20

// MaxEntries caps the user metadata, tag and destination entries of all
// objects of a manifest together, and MaxObjects its objects. Decoded, a
// map entry costs about 190 bytes of heap against as little as 7 bytes of
// JSON, an object 320 bytes against the 3 of "{},": without them a 64 MiB
// manifest would take gigabytes to decode; with them decoding stays within
// about 300 MiB. Decode counts both before it decodes anything, and
// writers split batches to stay under them (Object.Cost; a rule's batches
// hold at most MaxObjects).
const (
	MaxEntries = 1 << 20
	MaxObjects = 100_000
)

// ErrInvalid is wrapped by every error that reports a malformed or invalid
// manifest, so callers can tell bad input from I/O failures with errors.Is.
var ErrInvalid = errors.New("invalid manifest")

// ErrUnsupported marks a manifest a newer xrc wrote that this release
// cannot honour: a later format, or a feature it Requires that this
// reader does not know. It wraps ErrInvalid (no retry mends it; the
// archive waits in a DLQ for an upgraded reader), and tells a reader
// that needs upgrading from an archive that is corrupt.
var ErrUnsupported = fmt.Errorf("%w: written by a newer xrc", ErrInvalid)

// features are the names a manifest's Requires may hold that this
// release honours. None yet: a feature a reader may not ignore gets a
// name here, in the release that first writes it, and its writers list
// it in Requires only in archives that use it.
var features = map[string]bool{}

// Manifest is the table of contents of one archive.
type Manifest struct {
	Format       int       `json:"format"` // must be 1
	ArchiveID    string    `json:"archiveId"`
	CreatedAt    time.Time `json:"createdAt"`
	SourceRegion string    `json:"sourceRegion"`
	RuleID       string    `json:"ruleId"`
	Level        int       `json:"level"` // zstd level used for the archive
	// Requires names the features (package var features) a reader must
	// understand to deliver the archive correctly. A reader ignores fields it does not
	// know, which suits a field whose absence it can survive; one it
	// would misread (an entry kind, a field that changes what another
	// means) is listed here, and a reader that does not know it refuses
	// the archive, whole, rather than deliver it wrong. A new format
	// number would refuse every archive; this refuses only those using
	// the feature.
	Requires []string `json:"requires,omitempty"`
	Objects  []Object `json:"objects"`
}

// Object is one S3 object version (or delete marker) carried by an archive.
type Object struct {
	Member       string    `json:"member,omitempty"` // tar member path; empty iff !HasMember
	Bucket       string    `json:"bucket"`
	Key          string    `json:"key"`
	VersionID    string    `json:"versionId,omitempty"`
	Sequencer    string    `json:"sequencer,omitempty"`
	Size         int64     `json:"size"`
	ETag         string    `json:"etag,omitempty"`
	LastModified time.Time `json:"lastModified"`
	// Seen, for an object no sequencer orders (a backfill's event), is
	// when the source found it the key's current object: the Date of the
	// response that described it, in whole seconds. A delete before then
	// cannot have removed it.
	Seen time.Time `json:"seen,omitzero"`
	// EventTime, for a write its S3 event orders, is that event's time:
	// when the write completed (a multipart upload's Last-Modified is
	// when it began). It orders the write against a copy no sequencer
	// orders, by when that copy was read (Seen).
	EventTime          time.Time `json:"eventTime,omitzero"`
	StorageClass       string    `json:"storageClass,omitempty"`
	ContentType        string    `json:"contentType,omitempty"`
	ContentEncoding    string    `json:"contentEncoding,omitempty"`
	ContentDisposition string    `json:"contentDisposition,omitempty"`
	ContentLanguage    string    `json:"contentLanguage,omitempty"`
	CacheControl       string    `json:"cacheControl,omitempty"`
	Expires            string    `json:"expires,omitempty"` // raw, as S3 returned it: an HTTP date, or any string a PUT gave
	// WebsiteRedirect is x-amz-website-redirect-location: where a
	// website endpoint sends a request for the object.
	WebsiteRedirect string            `json:"websiteRedirect,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"` // user metadata, without x-amz-meta-
	Tags            map[string]string `json:"tags,omitempty"`
	// SHA256 is the hex digest of the uncompressed bytes when the source
	// knew it before writing the member; otherwise the archive carries it in
	// a trailer member (see package archive).
	SHA256 string `json:"sha256,omitempty"`
	// Checksum, when set, is the source object's own full-object checksum
	// of ChecksumAlgorithm, base64 as S3 gives it: a target writes the
	// destinations with it where the store takes it (with one PUT; in
	// parts if it is a CRC), so S3 checks the bytes it stores against the
	// checksum the source object has, and keeps the same one for `xrc
	// verify` to compare. Otherwise a destination gets a SHA-256 (one PUT)
	// or a CRC32C (in parts) of the target's own; ChecksumAlgorithm is then
	// "SHA256", as older sources always wrote it.
	ChecksumAlgorithm string `json:"checksumAlgorithm,omitempty"`
	Checksum          string `json:"checksum,omitempty"`
	Delete            bool   `json:"delete,omitempty"` // delete marker entry: no member
	// Retag carries a change of the tags of the write that VersionID, or
	// LastModified and ETag, identify: Tags are its tags as read after the
	// change (none: all removed). No member; the bytes went with the write.
	Retag bool `json:"retag,omitempty"`
	// TagsChanged marks a write read after a change of its tags: its Tags
	// carry the change, and a destination already holding the write (the
	// event came again) gets them.
	TagsChanged  bool          `json:"tagsChanged,omitempty"`
	Destinations []Destination `json:"destinations"`
}

// HasMember reports whether the archive holds o's bytes: every entry but a
// delete or a retag does.
func (o *Object) HasMember() bool { return !o.Delete && !o.Retag }

// Destination is one place an object is written to.
type Destination struct {
	Region       string `json:"region"`
	Bucket       string `json:"bucket"`
	Key          string `json:"key"`                    // after prefix rewrite
	StorageClass string `json:"storageClass,omitempty"` // override; empty = keep the object's
	KMSKeyID     string `json:"kmsKeyId,omitempty"`
}

// Encode validates m and writes it to w as one line of JSON. Nothing is
// written when validation fails, so a bad manifest never reaches an archive.
func (m *Manifest) Encode(w io.Writer) error {
	if err := m.Validate(); err != nil {
		return err
	}
	// Shallow copy so that a nil slice encodes as [] rather than null without
	// touching the caller's value.
	c := *m
	if c.Objects == nil {
		c.Objects = []Object{}
	}
	enc := json.NewEncoder(w)
	// Keys are shown to operators (jq, less); keep '<', '>' and '&' literal.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return fmt.Errorf("encoding manifest %s: %w", m.ArchiveID, err)
	}
	return nil
}

// Decode reads one JSON manifest from r, up to MaxSize bytes, and validates
// it. Unknown fields are ignored (forward compatibility within format 1);
// a format other than 1 is rejected. Every error caused by the bytes read
// wraps ErrInvalid; errors from r itself are returned wrapped but are not
// ErrInvalid.
func Decode(r io.Reader) (*Manifest, error) { return DecodeWithin(r, nil) }

// DecodeWithin is Decode telling before, if set, what decoding will take
// (DecodedCost) once the bytes are read and their objects and entries
// counted, before anything is decoded: a caller bounding its memory waits
// there. before's error ends it, as it is.
func DecodeWithin(r io.Reader, before func(cost int64) error) (*Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, MaxSize)
	}
	c, err := checkEntries(data)
	if err != nil {
		return nil, err
	}
	if before != nil {
		if err := before(DecodedCost(len(data), c.objects, c.entries)); err != nil {
			return nil, err
		}
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		// A newer format may change field types; say so rather than report
		// the type error it causes.
		// So may a feature it requires.
		if err := probeNewer(data); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s", ErrInvalid, describeJSONError(data, err))
	}
	if m.Format != Format {
		return nil, formatError(m.Format)
	}
	if err := unknownFeature(m.Requires); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// checkEntries counts data's objects and their metadata, tag and
// destination entries before anything is decoded into structs or maps, and
// rejects a manifest holding more than MaxObjects or MaxEntries. The counts
// add up every time a key comes ("objects" or "metadata" twice, or in
// another case), as the full decode merges them all, and they stand when
// the document has a type error, past which the full decode goes on too.
// (A syntax error stops both before anything is built.) The names in
// Requires count as entries too.
func checkEntries(data []byte) (counts, error) {
	var shadow struct {
		Objects  counts       `json:"objects"`
		Requires elementCount `json:"requires"`
	}
	_ = json.Unmarshal(data, &shadow)
	shadow.Objects.entries += int(shadow.Requires)
	switch c := shadow.Objects; {
	case c.objects > MaxObjects:
		return c, fmt.Errorf("%w: more than %d objects", ErrInvalid, MaxObjects)
	case c.entries > MaxEntries:
		return c, fmt.Errorf("%w: more than %d metadata, tag and destination entries in all", ErrInvalid, MaxEntries)
	}
	return shadow.Objects, nil
}

// DecodedCost is the heap decoding a manifest of size bytes, with objects
// objects and entries metadata, tag and destination entries, takes: its
// bytes, twice (held through the decode, and the decoder's work on
// them), then about 450 bytes an object and 140 an entry decoded. A dense
// manifest takes many times its bytes: measured live, 100,000 objects of
// "{}" (293 KiB) 45 MB, with ten "{}" destinations each (4.7 MiB) 186 MB;
// 100,000 ordinary objects (53 MiB) 156 MB.
func DecodedCost(size, objects, entries int) int64 {
	return 2*int64(size) + 500*int64(objects) + 150*int64(entries)
}

// counts are checkEntries' counts of a manifest's objects array.
type counts struct{ objects, entries int }

func (c *counts) UnmarshalJSON(raw []byte) error {
	c.objects += elements(raw)
	if c.objects > MaxObjects {
		return nil // too many to count their entries
	}
	var objs []struct {
		Metadata     memberCount  `json:"metadata"`
		Tags         memberCount  `json:"tags"`
		Destinations elementCount `json:"destinations"`
	}
	_ = json.Unmarshal(raw, &objs) // a type error: what decoded is counted
	for _, o := range objs {
		c.entries += int(o.Metadata) + int(o.Tags) + int(o.Destinations)
	}
	return nil
}

// memberCount adds up the members of every JSON object decoded into it.
type memberCount int

func (n *memberCount) UnmarshalJSON(raw []byte) error {
	*n += memberCount(members(raw))
	return nil
}

// elementCount adds up the elements of every JSON array decoded into it.
type elementCount int

func (n *elementCount) UnmarshalJSON(raw []byte) error {
	*n += elementCount(elements(raw))
	return nil
}

// members counts the members of a JSON object (its colons at the top
// level); anything else has none.
func members(raw []byte) int { return separators(raw, ':') }

// elements counts the elements of a JSON array (its commas at the top
// level, plus one); anything but a non-empty array has none.
func elements(raw []byte) int {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '[' || len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0 {
		return 0
	}
	return separators(raw, ',') + 1
}

// separators counts sep in the JSON value raw at its top level: outside
// strings and nested values.
func separators(raw []byte, sep byte) int {
	n, depth, inString, escaped := 0, 0, false, false
	for _, c := range raw {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
		case c == sep && depth == 1:
			n++
		}
	}
	return n
}

// Cost is what o adds to an encoded manifest: about its bytes, and its
// metadata, tag and destination entries (see MaxSize, MaxEntries).
func (o *Object) Cost() (bytes, entries int) {
	b, err := json.Marshal(o)
	if err != nil {
		return MaxSize, MaxEntries // cannot be encoded: it goes alone
	}
	return len(b) + 1, o.entries()
}

// entries is what o counts towards MaxEntries.
func (o *Object) entries() int { return len(o.Metadata) + len(o.Tags) + len(o.Destinations) }

func formatError(f int) error {
	switch {
	case f == 0:
		return fmt.Errorf("%w: format is missing (want %d)", ErrInvalid, Format)
	case f > Format:
		return fmt.Errorf("%w: unsupported format %d (want %d)", ErrUnsupported, f, Format)
	}
	return fmt.Errorf("%w: unsupported format %d (want %d)", ErrInvalid, f, Format)
}

// unknownFeature refuses the first of required this release does not
// know.
func unknownFeature(required []string) error {
	for _, f := range required {
		if !features[f] {
			return fmt.Errorf("%w: it requires %s, which this release does not know", ErrUnsupported, quoteShort(f))
		}
	}
	return nil
}

// quoteShort is s quoted in ASCII (cut anywhere, it stays valid UTF-8),
// cut to 80 bytes, for an error naming what a hostile manifest may make
// long.
func quoteShort(s string) string {
	q := strconv.QuoteToASCII(s)
	if len(q) > 80 {
		return q[:80] + "..."
	}
	return q
}

// probeNewer reads the top-level "format" and "requires" of a document
// that failed to decode as a whole, and returns their refusal if a newer
// xrc wrote it.
func probeNewer(data []byte) error {
	var p struct {
		Format   *int     `json:"format"`
		Requires []string `json:"requires"`
	}
	if json.Unmarshal(data, &p) != nil {
		return nil
	}
	if p.Format != nil && *p.Format != Format {
		return formatError(*p.Format)
	}
	return unknownFeature(p.Requires)
}

// describeJSONError turns an encoding/json error into a message that points
// at the offending place in data.
func describeJSONError(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		// Offset counts the offending byte as read; point at it.
		line, col := lineCol(data, syn.Offset-1)
		return fmt.Sprintf("line %d, column %d: %v", line, col, syn)
	case errors.As(err, &typ):
		line, col := lineCol(data, typ.Offset)
		field := typ.Field
		if field == "" {
			field = "document"
		}
		return fmt.Sprintf("line %d, column %d: %s: cannot use JSON %s as %s", line, col, field, typ.Value, typ.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of JSON input"
	default:
		return err.Error()
	}
}

// lineCol converts a byte offset into 1-based line and column numbers.
func lineCol(data []byte, off int64) (line, col int) {
	if off < 0 {
		off = 0
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = 1 + len(before) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, col
}

// TotalSize returns the sum of the sizes of the objects the archive carries
// (delete and retag entries have none). It saturates at math.MaxInt64 rather than wrap
// on a hostile manifest.
func (m *Manifest) TotalSize() int64 {
	var total int64
	for i := range m.Objects {
		s := m.Objects[i].Size
		if !m.Objects[i].HasMember() || s <= 0 {
			continue
		}
		if total > math.MaxInt64-s {
			return math.MaxInt64
		}
		total += s
	}
	return total
}
