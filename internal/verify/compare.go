package verify

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind is a kind of difference between a source and a destination.
type Kind string

// The kinds of difference, in the order summaries list them.
const (
	// Missing: in the source, not at the key the rule maps it to.
	Missing Kind = "missing"
	// Extra: at a destination key the rule writes, with no source object
	// mapping to it.
	Extra Kind = "extra"
	// Size: both there, sizes differ.
	Size Kind = "size"
	// Digest: both there, same size, a digest of the bytes differs.
	Digest Kind = "digest"
	// Stale: the destination's provenance names another write of the key
	// than the source's current one: an older one (not replicated yet, or
	// lost), or, on a versioned source, another version.
	Stale Kind = "stale"
	// NotXRC: the destination object has no xrc provenance, so xrc cannot
	// vouch for it; verify says so instead of guessing.
	NotXRC Kind = "not-xrc"
	// Headers: the same write, and no digest differs, but what xrc
	// restores beside the bytes does: Content-*, Cache-Control, Expires,
	// user metadata or the number of tags.
	Headers Kind = "headers"
	// Retained: at a destination key the rule writes, written by xrc,
	// its source gone, and the rule does not propagate deletes: kept by
	// design. Reported, but no difference (not in Kinds, nor counted in
	// Summary.Differences).
	Retained Kind = "retained"
)

// Kinds lists every kind, in report order.
var Kinds = []Kind{Missing, Extra, Size, Digest, Stale, NotXRC, Headers}

// Source is what verify knows of a source object: from the listing, then
// from HeadObject, then from reading it.
type Source struct {
	Size     int64
	Modified time.Time
	// VersionID is known after HeadObject on a versioned bucket.
	VersionID string
	// Sums are the full-object checksums S3 keeps for the object.
	Sums Sums
	// Computed are digests verify computed by reading the object.
	Computed Sums
	// Head is known after HeadObject; nil from a listing.
	Head *Head
}

// Head is what xrc restores of an object beside its bytes, as HeadObject
// reports it. Tag values need a request of their own; their number comes
// with HeadObject.
type Head struct {
	ContentType, ContentEncoding, ContentDisposition, ContentLanguage, CacheControl string
	Expires, WebsiteRedirect                                                        string
	// Metadata is the user metadata; a destination's as deliver.UserMetadata
	// reads it, without xrc's provenance.
	Metadata map[string]string
	Tags     int32
}

// Destination is what verify knows of a destination object after
// HeadObject.
type Destination struct {
	Size int64
	// Sums are the full-object checksums S3 keeps: xrc writes the source
	// object's own full-object checksum when it has one (any algorithm
	// with a single PUT, a CRC with a multipart upload), else SHA256 with
	// a single PUT and CRC32C with a multipart upload.
	Sums Sums
	// Provenance is nil for an object xrc did not write.
	Provenance *Provenance
	Head       *Head
}

// Verdict is what Compare concludes about one pair.
type Verdict struct {
	Kind Kind // "" when no difference was found
	// Equal says a digest proved the bytes equal. With Kind "" and Equal
	// false the pair is unchecked: same size and provenance, but no digest
	// in common (yet).
	Equal  bool
	Detail string
}

// Compare judges one source object and the destination object at the key
// the rule maps it to, from what is known of each so far. It is pure: the
// caller learns more (HeadObject on the source, reading it) and compares
// again while the verdict is unchecked.
//
// Precedence: without provenance, a size difference is reported as such
// (a fact whoever wrote it) and anything else as not written by xrc; with
// provenance, a stale write explains any other difference, then size,
// then digests.
func Compare(src Source, dst Destination) Verdict {
	p := dst.Provenance
	if p == nil {
		if src.Size != dst.Size {
			return Verdict{Kind: Size, Detail: sizeDetail(src, dst) + "; not written by xrc"}
		}
		return Verdict{Kind: NotXRC, Detail: "no xrc provenance (x-amz-meta-xrc-*), or another source key's (xrc-key: a copy): written by someone else"}
	}
	if v, stale := staleness(src, p); stale {
		return v
	}
	if src.Size != dst.Size {
		return Verdict{Kind: Size, Detail: sizeDetail(src, dst)}
	}
	v := digests(src, dst)
	if v.Kind == "" && src.Head != nil && dst.Head != nil {
		if why := headers(*src.Head, *dst.Head); why != "" {
			return Verdict{Kind: Headers, Equal: v.Equal, Detail: why}
		}
	}
	return v
}

// headers names the first header xrc restores that differs between the
// source and the destination ("" when none does). Expires is compared as
// a time, or as it is when it is no HTTP date. A source without
// Content-Type gets the store's default.
func headers(src, dst Head) string {
	for _, h := range []struct{ name, src, dst string }{
		{"Content-Type", src.ContentType, dst.ContentType},
		{"Content-Encoding", src.ContentEncoding, dst.ContentEncoding},
		{"Content-Disposition", src.ContentDisposition, dst.ContentDisposition},
		{"Content-Language", src.ContentLanguage, dst.ContentLanguage},
		{"Cache-Control", src.CacheControl, dst.CacheControl},
		{"x-amz-website-redirect-location", src.WebsiteRedirect, dst.WebsiteRedirect},
	} {
		if h.src != h.dst && (h.name != "Content-Type" || h.src != "") {
			return fmt.Sprintf("%s: source %q, destination %q", h.name, h.src, h.dst)
		}
	}
	if se, err := http.ParseTime(src.Expires); err == nil {
		if de, err := http.ParseTime(dst.Expires); err != nil || !se.Equal(de) {
			return fmt.Sprintf("Expires: source %q, destination %q", src.Expires, dst.Expires)
		}
	} else if src.Expires != dst.Expires {
		return fmt.Sprintf("Expires: source %q, destination %q", src.Expires, dst.Expires)
	}
	for _, k := range slices.Sorted(maps.Keys(src.Metadata)) {
		if v, ok := dst.Metadata[k]; !ok || v != src.Metadata[k] {
			return fmt.Sprintf("metadata %q: source %q, destination %s", k, src.Metadata[k], quotedOrAbsent(v, ok))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(dst.Metadata)) {
		if _, ok := src.Metadata[k]; !ok {
			return fmt.Sprintf("metadata %q: not at the source, destination %q", k, dst.Metadata[k])
		}
	}
	if src.Tags != dst.Tags {
		return fmt.Sprintf("tags: source %d, destination %d", src.Tags, dst.Tags)
	}
	return ""
}

// tagsDiffer names the first tag whose value differs between the source
// and the destination ("" when none does).
func tagsDiffer(src, dst map[string]string) string {
	for _, k := range slices.Sorted(maps.Keys(src)) {
		if v, ok := dst[k]; !ok || v != src[k] {
			return fmt.Sprintf("tag %q: source %q, destination %s", k, src[k], quotedOrAbsent(v, ok))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(dst)) {
		if _, ok := src[k]; !ok {
			return fmt.Sprintf("tag %q: not at the source, destination %q", k, dst[k])
		}
	}
	return ""
}

func quotedOrAbsent(v string, ok bool) string {
	if !ok {
		return "absent"
	}
	return strconv.Quote(v)
}

func sizeDetail(src Source, dst Destination) string {
	return fmt.Sprintf("source %d bytes, destination %d bytes", src.Size, dst.Size)
}

// staleness compares the write the destination holds with the source's
// current one. A version id, when both sides know it, names the write
// exactly; otherwise last-modified times do, in whole seconds: HeadObject
// (where xrc-mtime comes from) has second resolution, while listings can
// carry milliseconds (MinIO's do).
func staleness(src Source, p *Provenance) (Verdict, bool) {
	if p.Version != "" && src.VersionID != "" {
		if p.Version == src.VersionID {
			return Verdict{}, false
		}
		when := "an older"
		switch {
		case p.Modified.IsZero() || src.Modified.IsZero():
			when = "another"
		case p.Modified.Unix() > src.Modified.Unix():
			when = "a newer" // the source's newer version was deleted by version id, which xrc does not replicate
		case p.Modified.Unix() == src.Modified.Unix():
			when = "another"
		}
		return Verdict{Kind: Stale, Detail: fmt.Sprintf("destination holds %s version (%s) than the source's current one (%s)", when, p.Version, src.VersionID)}, true
	}
	if p.Modified.IsZero() || src.Modified.IsZero() {
		return Verdict{}, false
	}
	if p.Modified.Unix() < src.Modified.Unix() {
		return Verdict{Kind: Stale, Detail: fmt.Sprintf("destination holds the write of %s, the source was written at %s",
			p.Modified.Truncate(time.Second).Format(time.RFC3339), src.Modified.UTC().Truncate(time.Second).Format(time.RFC3339))}, true
	}
	return Verdict{}, false
}

// digests compares every digest the two sides have in common: S3's
// checksums of the source, then digests computed from its bytes, against
// the destination's S3 checksums and the xrc-sha256 it was written with.
func digests(src Source, dst Destination) Verdict {
	p := dst.Provenance
	if s := dst.Sums[SHA256]; s != nil && p.SHA256 != nil && !bytes.Equal(s, p.SHA256) {
		// S3 computed its checksum over the bytes it stores; xrc checked the
		// bytes it wrote against xrc-sha256. They were not these bytes.
		return Verdict{Kind: Digest, Detail: fmt.Sprintf("destination bytes (S3 SHA256 %x) are not those xrc wrote (xrc-sha256 %x)", s, p.SHA256)}
	}
	have := destinationSums(dst)
	var matched []string
	recorded := false
	for _, side := range []struct {
		what string
		sums Sums
	}{{"S3 checksum of the source", src.Sums}, {"computed from the source", src.Computed}} {
		for _, alg := range sortedAlgorithms(side.sums) {
			d, ok := have[alg]
			if !ok {
				continue
			}
			if !bytes.Equal(side.sums[alg], d.sum) {
				return Verdict{Kind: Digest, Detail: fmt.Sprintf("%s %s (%s) != %s (%s)",
					alg, hex.EncodeToString(side.sums[alg]), side.what, hex.EncodeToString(d.sum), d.what)}
			}
			if d.s3 {
				matched = append(matched, string(alg))
			} else {
				recorded = true
			}
		}
	}
	switch {
	case len(matched) > 0:
		return Verdict{Equal: true, Detail: strings.Join(slices.Compact(matched), ", ") + " equal"}
	case recorded:
		return Verdict{Detail: "the source's SHA256 is the xrc-sha256 the destination was written with; no checksum S3 keeps of the destination in common"}
	}
	return Verdict{}
}

type destinationSum struct {
	sum  []byte
	what string
	// s3: S3 computed it over the bytes it stores. xrc-sha256 is xrc's
	// record of the bytes it wrote, metadata S3 never checks (a tool
	// that rewrites the object and keeps its metadata keeps it too): it
	// can show the bytes differ, never prove them equal.
	s3 bool
}

// destinationSums are the digests a destination object offers: S3's
// checksums, and xrc-sha256 where S3 keeps no SHA256 (a multipart write,
// whose S3 checksum is a CRC, or one with the source's own checksum).
func destinationSums(dst Destination) map[Algorithm]destinationSum {
	m := make(map[Algorithm]destinationSum, len(dst.Sums)+1)
	for alg, s := range dst.Sums {
		m[alg] = destinationSum{s, "S3 checksum of the destination", true}
	}
	if p := dst.Provenance; p != nil && p.SHA256 != nil {
		if _, ok := m[SHA256]; !ok {
			m[SHA256] = destinationSum{p.SHA256, "xrc-sha256 of the destination", false}
		}
	}
	return m
}

// hashable returns the algorithms of dst's digests verify can compute
// from the source's bytes, and that the source's own checksums do not
// already cover.
func hashable(src Source, dst Destination) []Algorithm {
	var algs []Algorithm
	for alg := range destinationSums(dst) {
		if _, have := src.Sums[alg]; !have && alg.New() != nil {
			algs = append(algs, alg)
		}
	}
	slices.Sort(algs)
	return algs
}

func sortedAlgorithms(s Sums) []Algorithm {
	algs := make([]Algorithm, 0, len(s))
	for alg := range s {
		algs = append(algs, alg)
	}
	slices.Sort(algs)
	return algs
}
