package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary documents to the loader: it must never panic,
// must return an error that says something or a config that, written back
// out, parses to itself.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"example.json", "local.json"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "configs", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"version":1,"settings":{"regions":[{}]},"rules":[{"batch":{"maxBytes":"1GiB"}}]}`))
	f.Add([]byte(`{"rules":[{"ignore":["[!a-"]}]}`))
	f.Add([]byte(`[1,2,{"a":null}]`))
	f.Add([]byte(`{"version":1,"version":1,"rules":[{"id":"a","batch":{"idle":"1s","idle":"2s"}},[{"x":{"y":[]},"x":0}]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		// What it parsed is what it means: written back out and parsed
		// again, the same config (a field read but not kept, or kept
		// differently than read, shows here).
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("the config written back out does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("parsed again, the config differs:\n%s", out)
		}
	})
}

func TestGlob(t *testing.T) {
	cases := []struct {
		pat, key string
		want     bool
	}{
		{"*.tmp", "a/b/c.tmp", true},
		{"*.tmp", "a/b/c.tmpx", false},
		{"logs/?.json", "logs/a.json", true},
		{"logs/?.json", "logs/ab.json", false},
		{"[!a]*", "bcd", true},
		{"[!a]*", "abc", false},
		{"[a-c]x", "bx", true},
		{`a\*b`, "a*b", true},
		{`a\*b`, "axb", false},
		{"a.b", "axb", false},
		// Letters of several bytes are one character each.
		{"*/brouillons-été/*", "x/brouillons-été/a.txt", true},
		{"*/brouillons-été/*", "x/brouillons-ete/a.txt", false},
		{"caf?", "café", true},
		{`\é*`, "été", true},
		{"[éè]x", "èx", true},
	}
	for _, tc := range cases {
		re, err := compileGlob(tc.pat)
		if err != nil {
			t.Fatalf("%q: %v", tc.pat, err)
		}
		if got := re.MatchString(tc.key); got != tc.want {
			t.Errorf("%q on %q = %v, want %v", tc.pat, tc.key, got, tc.want)
		}
	}
	for _, bad := range []string{"[abc", "[]", "[!]"} {
		if _, err := compileGlob(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}
