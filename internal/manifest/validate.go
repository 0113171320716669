package manifest

// This file is every invariant of the manifest format in one place, the
// reference a second implementation would be checked against.

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/xrc-dev/xrc/internal/checksum"
	"github.com/xrc-dev/xrc/internal/events"
)

// Limits S3 itself enforces; a manifest beyond them could not be written at
// the destination, so it is rejected before any byte is moved.
const (
	maxKeyLen      = 1024    // bytes of an object key
	maxTags        = 10      // tags per object
	maxTagKeyLen   = 128     // Unicode characters
	maxTagValueLen = 256     // Unicode characters
	maxMetadataLen = 2 << 10 // bytes of user metadata keys plus values
)

const (
	maxArchiveID = 255 // bytes; the ID names S3 objects and files
	maxProblems  = 100 // problems Validate lists before summarising
	sha256HexLen = 64
)

// validateChecksum checks o's source checksum: a whole checksum of its
// algorithm, of an entry with bytes, agreeing with the SHA-256 o carries.
func (o *Object) validateChecksum(p func(format string, args ...any)) {
	if o.Checksum == "" {
		return
	}
	alg := checksum.Algorithm(o.ChecksumAlgorithm)
	sum, err := checksum.Parse(alg, o.Checksum)
	switch {
	case !o.HasMember():
		p("checksum on an entry without bytes")
	case o.ChecksumAlgorithm == "":
		p("checksum %s without checksumAlgorithm", quote(o.Checksum))
	case err != nil:
		p("checksum %s is not a base64 %s", quote(o.Checksum), o.ChecksumAlgorithm)
	case alg == checksum.SHA256 && o.SHA256 != "" && hex.EncodeToString(sum) != o.SHA256:
		p("checksum %s is not the object's sha256 %s", quote(o.Checksum), o.SHA256)
	}
}

// Validate checks every invariant of the format and returns all problems
// found, joined with errors.Join and wrapped in ErrInvalid, or nil. Each
// object problem names objects[i] and the object's key. After the first
// 100 problems the rest are only counted, so a hostile manifest cannot turn
// into a gigantic error message.
func (m *Manifest) Validate() error {
	p := &problems{}
	if m.Format != Format {
		p.addf("format is %d, want %d", m.Format, Format)
	}
	if err := checkArchiveID(m.ArchiveID); err != nil {
		p.addf("archiveId: %v", err)
	}
	if err := CheckLevel(m.Level); err != nil {
		p.addf("level: %v", err)
	}
	if len(m.Objects) > MaxObjects {
		p.addf("%d objects, more than %d", len(m.Objects), MaxObjects)
	}
	entries := 0
	for i := range m.Objects {
		m.Objects[i].validate(p.object(i, m.Objects[i].Key))
		entries += m.Objects[i].entries()
	}
	if entries > MaxEntries {
		p.addf("%d metadata, tag and destination entries, more than %d", entries, MaxEntries)
	}
	checkMembers(m.Objects, p)
	return p.err()
}

// ValidateObject checks the invariants of o alone, as Validate would in a
// manifest, but for its member name, which the archive writer gives it
// later: a writer checks each object before it joins an archive, so that
// one bad object fails alone, not every archive it is put in.
func (o *Object) ValidateObject() error {
	p := &problems{}
	c := *o
	if c.HasMember() {
		c.Member = memberRoot + "0" // any valid name: the writer's is checked with the manifest
	}
	f := func(format string, args ...any) { p.addf("key %s: %s", quote(o.Key), fmt.Sprintf(format, args...)) }
	c.validate(f)
	// Checked here, where the object fails alone, and not in Validate,
	// where an archive a source of before this check staged would fail
	// whole: a source object AWS took with 2 KB of metadata has more at
	// the destinations once its keys under xrc- are renamed, and every
	// write of it would be refused.
	if n := metadataLen(o.Metadata, true); n > maxMetadataLen && metadataLen(o.Metadata, false) <= maxMetadataLen {
		f("metadata is %d bytes with its keys under %s renamed %s at the destinations, more than S3's %d", n, MetadataPrefix, MetadataRenamed, maxMetadataLen)
	}
	return p.err()
}

// ValidateForStore checks what ValidateObject leaves to the destination
// when one is an S3-compatible store, which refuses on every write, and
// the archive with every object batched with it, what AWS took: MinIO
// (and others) count each metadata header's full name, x-amz-meta-
// included, in the 2 KB, and refuse a key with a "." or ".." segment or
// an empty one inside it ("a//b": XMinioInvalidResourceName,
// XMinioInvalidObjectName, seen on the local stack's MinIO).
func (o *Object) ValidateForStore() error {
	for _, d := range o.Destinations {
		if storeRefuses(d.Key) {
			return fmt.Errorf("%w: key %s: destination key %s has a \".\", \"..\" or empty path segment, which S3-compatible stores refuse",
				ErrInvalid, quote(o.Key), quote(d.Key))
		}
	}
	n := 0
	for k, v := range o.Metadata {
		n += len("x-amz-meta-") + len(DestinationMetadataKey(k)) + len(v)
	}
	if n > maxMetadataLen {
		return fmt.Errorf("%w: key %s: metadata is %d bytes as an S3-compatible store counts it (x-amz-meta- included), more than its %d",
			ErrInvalid, quote(o.Key), n, maxMetadataLen)
	}
	return nil
}

// storeRefuses reports a key an S3-compatible store refuses as a path:
// one with a "." or ".." segment, or an empty segment other than a
// leading or trailing one.
func storeRefuses(key string) bool {
	segs := strings.Split(key, "/")
	for i, seg := range segs {
		if seg == "." || seg == ".." || seg == "" && i > 0 && i < len(segs)-1 {
			return true
		}
	}
	return false
}

// metadataLen is the size of md as S3 counts it, keys and values, with the
// keys a destination gives them if atDestination.
func metadataLen(md map[string]string, atDestination bool) int {
	n := 0
	for k, v := range md {
		if atDestination {
			k = DestinationMetadataKey(k)
		}
		n += len(k) + len(v)
	}
	return n
}

func checkArchiveID(id string) error {
	switch {
	case id == "":
		return errors.New("is empty")
	case len(id) > maxArchiveID:
		return fmt.Errorf("is %d bytes, more than %d", len(id), maxArchiveID)
	case id == "." || id == "..":
		return fmt.Errorf("%q is not a usable name", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%s has byte %q at %d; only A-Z a-z 0-9 . _ - are allowed", quote(id), c, i)
		}
	}
	return nil
}

func (o *Object) validate(p func(format string, args ...any)) {
	if o.Bucket == "" {
		p("bucket is empty")
	}
	if err := checkKey(o.Key); err != nil {
		p("key %v", err)
	}
	if o.Size < 0 {
		p("size %d is negative", o.Size)
	}
	if o.Size > MaxObjectSize {
		p("size %d is over S3's largest object (%d bytes)", o.Size, int64(MaxObjectSize))
	}
	// What the target sends in headers or compares as text: an archive
	// that is not the source's own (the source checked them from S3)
	// fails here as invalid, not at each write as a request the HTTP
	// client refuses, which read as a transient write failure.
	if !events.ValidSequencer(o.Sequencer) {
		p("sequencer %s is not hex (at most %d digits)", quote(o.Sequencer), events.MaxSequencer)
	}
	for _, h := range []struct{ name, value string }{{"versionId", o.VersionID}, {"etag", o.ETag}, {"storageClass", o.StorageClass}} {
		if !events.HeaderSafe(h.value) {
			p("%s %s is not a header-safe value (printable ASCII, at most 1,024 bytes)", h.name, quote(h.value))
		}
	}
	if o.SHA256 != "" && !isLowerHex(o.SHA256, sha256HexLen) {
		p("sha256 %s is not %d lowercase hex digits", quote(o.SHA256), sha256HexLen)
	}
	if !o.HasMember() {
		kind := "delete"
		if o.Retag {
			kind = "retag"
		}
		if o.Delete && o.Retag {
			p("entry is both a delete and a retag")
		}
		if o.Member != "" {
			p("%s entry has member %s", kind, quote(o.Member))
		}
		if o.Size != 0 {
			p("%s entry has size %d", kind, o.Size)
		}
		if o.SHA256 != "" {
			p("%s entry has a sha256", kind)
		}
	} else if err := SafeMember(o.Member); err != nil {
		p("%v", err)
	}
	if o.ChecksumAlgorithm != "" && !slices.Contains(checksum.Algorithms, checksum.Algorithm(o.ChecksumAlgorithm)) {
		p("checksumAlgorithm %s is not one of %v", quote(o.ChecksumAlgorithm), checksum.Algorithms)
	}
	o.validateChecksum(p)
	for _, h := range []struct{ name, value string }{
		{"contentType", o.ContentType},
		{"contentEncoding", o.ContentEncoding},
		{"contentDisposition", o.ContentDisposition},
		{"contentLanguage", o.ContentLanguage},
		{"cacheControl", o.CacheControl},
		{"expires", o.Expires},
		{"websiteRedirect", o.WebsiteRedirect},
	} {
		if err := checkHeaderValue(h.value); err != nil {
			p("%s %v", h.name, err)
		}
	}
	checkMetadata(o.Metadata, p)
	checkTags(o.Tags, p)
	if len(o.Destinations) == 0 {
		p("no destinations")
	}
	for j := range o.Destinations {
		d := &o.Destinations[j]
		if d.Region == "" {
			p("destinations[%d]: region is empty", j)
		}
		if d.Bucket == "" {
			p("destinations[%d]: bucket is empty", j)
		}
		if err := checkKey(d.Key); err != nil {
			p("destinations[%d]: key %v", j, err)
		}
	}
}

func checkKey(k string) error {
	switch {
	case k == "":
		return errors.New("is empty")
	case len(k) > maxKeyLen:
		return fmt.Errorf("is %d bytes, more than %d", len(k), maxKeyLen)
	case !utf8.ValidString(k):
		return errors.New("is not valid UTF-8")
	}
	return nil
}

// checkHeaderValue accepts what can travel in an HTTP header value: UTF-8
// without control characters other than tab (CR and LF would split the
// header at the destination).
func checkHeaderValue(v string) error {
	if !utf8.ValidString(v) {
		return errors.New("is not valid UTF-8")
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }); i >= 0 {
		return fmt.Errorf("has a control character at byte %d", i)
	}
	return nil
}

// isToken reports whether s is an HTTP header field name (RFC 9110 token),
// which a user metadata key becomes after the x-amz-meta- prefix.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// Source metadata keys under MetadataPrefix, which starts every key of
// xrc's own provenance at a destination, are held there renamed, under
// MetadataRenamed, so that they never pose as provenance: a source object
// claiming xrc-seq FFFF... would otherwise look newer than every later
// write.
const (
	MetadataPrefix  = "xrc-"
	MetadataRenamed = "xrc-orig-"
)

// DestinationMetadataKey is the name of source metadata key k at a
// destination.
func DestinationMetadataKey(k string) string {
	if len(k) >= len(MetadataPrefix) && strings.EqualFold(k[:len(MetadataPrefix)], MetadataPrefix) {
		return MetadataRenamed + k[len(MetadataPrefix):]
	}
	return k
}

func checkMetadata(md map[string]string, p func(string, ...any)) {
	for _, k := range sortedKeys(md) {
		v := md[k]
		if !isToken(k) {
			p("metadata key %s is not an HTTP header name", quote(k))
		}
		if err := checkHeaderValue(v); err != nil {
			p("metadata %s value %v", quote(k), err)
		}
	}
	if n := metadataLen(md, false); n > maxMetadataLen {
		p("metadata is %d bytes, more than S3's %d", n, maxMetadataLen)
	}
}

func checkTags(tags map[string]string, p func(string, ...any)) {
	if len(tags) > maxTags {
		p("%d tags, more than S3's %d", len(tags), maxTags)
	}
	for _, k := range sortedKeys(tags) {
		v := tags[k]
		switch n := utf8.RuneCountInString(k); {
		case !utf8.ValidString(k):
			p("tag key %s is not valid UTF-8", quote(k))
		case n == 0:
			p("tag key is empty")
		case n > maxTagKeyLen:
			p("tag key %s is %d characters, more than %d", quote(k), n, maxTagKeyLen)
		}
		switch n := utf8.RuneCountInString(v); {
		case !utf8.ValidString(v):
			p("tag %s value is not valid UTF-8", quote(k))
		case n > maxTagValueLen:
			p("tag %s value is %d characters, more than %d", quote(k), n, maxTagValueLen)
		}
	}
}

// checkMembers reports member names (including the trailer names of objects
// whose digest the manifest lacks) that are used twice, or that are a
// directory of another member: tar -x could not extract both.
func checkMembers(objs []Object, p *problems) {
	type entry struct {
		name  string
		index int
	}
	var names []entry
	for i := range objs {
		o := &objs[i]
		if !o.HasMember() || o.Member == "" {
			continue
		}
		names = append(names, entry{o.Member, i})
		if o.SHA256 == "" {
			names = append(names, entry{TrailerName(o.Member), i})
		}
	}
	// Order '/' before every other byte: then every name is directly
	// followed by the names inside it, and duplicates are adjacent, so one
	// pass over neighbours finds all conflicts in O(n log n).
	slices.SortFunc(names, func(a, b entry) int {
		if c := comparePaths(a.name, b.name); c != 0 {
			return c
		}
		return a.index - b.index
	})
	for j := 1; j < len(names); j++ {
		prev, cur := names[j-1], names[j]
		switch {
		case prev.name == cur.name:
			p.object(cur.index, objs[cur.index].Key)("member %s is also used by objects[%d]", quote(cur.name), prev.index)
		case strings.HasPrefix(cur.name, prev.name+"/"):
			p.object(cur.index, objs[cur.index].Key)("member %s is inside member %s of objects[%d]", quote(cur.name), quote(prev.name), prev.index)
		}
	}
}

// comparePaths compares like strings.Compare with '/' ordered first.
func comparePaths(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return -1
		}
		if cb == '/' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	return len(a) - len(b)
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// problems collects validation failures up to maxProblems.
type problems struct {
	errs    []error
	dropped int
}

func (p *problems) addf(format string, args ...any) {
	if len(p.errs) >= maxProblems {
		p.dropped++
		return
	}
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

// object returns a reporter that prefixes problems with objects[i] and the
// key, the two things an operator searches for.
func (p *problems) object(i int, key string) func(string, ...any) {
	return func(format string, args ...any) {
		if len(p.errs) >= maxProblems {
			p.dropped++
			return
		}
		p.errs = append(p.errs, fmt.Errorf("objects[%d] (key %s): %s", i, quote(key), fmt.Sprintf(format, args...)))
	}
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	errs := p.errs
	if p.dropped > 0 {
		errs = append(errs, fmt.Errorf("and %d more problems", p.dropped))
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}
