package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// compileGlob turns a shell wildcard into a regexp anchored on the whole key.
// Unlike path.Match, '*' also matches '/', as fnmatch does: operators write
// "*.tmp" meaning every temporary file, at any depth.
func compileGlob(pattern string) (*regexp.Regexp, error) {
	var b strings.Builder
	// (?s): keys may hold newlines, and '*' and '?' must match them too.
	b.WriteString(`(?s)^`)
	// Rune by rune: a key's non-ASCII letters are several bytes each, and
	// quoted one byte at a time they would never match.
	p := []rune(pattern)
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '[':
			end := slices.Index(p[i+1:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed '['")
			}
			class := string(p[i+1 : i+1+end])
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			if class == "" || class == "^" {
				return nil, fmt.Errorf("empty character class")
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += end + 1
		case '\\':
			if i+1 < len(p) {
				i++
				b.WriteString(regexp.QuoteMeta(string(p[i])))
			} else {
				b.WriteString(`\\`)
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("bad character class: %w", err)
	}
	return re, nil
}
