package manifest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// memberRoot is the directory every object member lives under, so that
// extracting an archive never writes outside objects/ (or over manifest.json).
const memberRoot = "objects/"

// MaxMemberLen caps the length of a member name in bytes. PAX headers carry
// longer names, but common file systems (PATH_MAX) do not.
const MaxMemberLen = 4096

// MemberName returns the tar member path for the object at index (>= 0) with
// the given key: objects/<index, zero-padded to 6 digits>/<key> when the key
// is a safe relative path, so that tar -x gives an operator a readable tree,
// and objects/<index> alone otherwise (keys with empty, "." or ".."
// segments, a leading '/', control characters or invalid UTF-8). The index
// keeps names unique whatever the keys are. The result always passes
// SafeMember.
func MemberName(index int, key string) string {
	dir := memberRoot + fmt.Sprintf("%06d", index)
	name := dir + "/" + key
	if key == "" || len(name) > MaxMemberLen || checkRelPath(key) != nil {
		return dir
	}
	return name
}

// SafeMember returns nil iff name is a member path the archive reader
// accepts for an object: a relative path under objects/ of at most
// MaxMemberLen bytes, valid UTF-8, without empty, "." or ".." segments and
// without NUL or other control characters. These are the names that
// extract to where they say on any POSIX system.
func SafeMember(name string) error {
	if name == "" {
		return errors.New("member name is empty")
	}
	if len(name) > MaxMemberLen {
		return fmt.Errorf("member name is %d bytes, more than %d", len(name), MaxMemberLen)
	}
	if strings.HasPrefix(name, "/") {
		return fmt.Errorf("member name %s is absolute", quote(name))
	}
	if err := checkRelPath(name); err != nil {
		return fmt.Errorf("member name %s: %w", quote(name), err)
	}
	if !strings.HasPrefix(name, memberRoot) {
		return fmt.Errorf("member name %s is not under %s", quote(name), memberRoot)
	}
	return nil
}

// checkRelPath reports why p is not a clean relative slash-separated path.
func checkRelPath(p string) error {
	if !utf8.ValidString(p) {
		return errors.New("not valid UTF-8")
	}
	if strings.HasPrefix(p, "/") {
		return errors.New("leading '/'")
	}
	if i := strings.IndexFunc(p, unicode.IsControl); i >= 0 {
		return fmt.Errorf("control character at byte %d", i)
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return errors.New("empty path segment")
		case ".", "..":
			return fmt.Errorf("%q path segment", seg)
		}
	}
	return nil
}

// TrailerName returns the name of the member that carries the SHA-256 of
// member when the manifest does not (see package archive).
func TrailerName(member string) string {
	return member + ".sha256"
}

// quote renders hostile text for an error message: escaped, and cut short so
// a megabyte-long name cannot blow up logs.
func quote(s string) string {
	const limit = 128
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("...(%d bytes)", len(s))
}
