package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// schemaCheck is the part of JSON Schema configs/xrc.schema.json uses
// (type, required, properties, additionalProperties, enum, const, pattern,
// minimum, maximum, minItems, items, oneOf, not, local $ref), enough to
// check documents against it without a validator library. A keyword it
// does not know fails the test (TestSchemaKeywordsKnown walks the whole
// schema, not only what the examples reach), so the schema cannot outgrow
// it unnoticed.
type schemaCheck struct {
	t    *testing.T
	root map[string]any
	errs []string
}

var schemaKeywords = []string{"$schema", "$id", "$defs", "$ref", "title", "description", "default", "format",
	"type", "required", "properties", "additionalProperties", "enum", "const", "pattern", "maxLength", "minimum", "maximum", "minItems", "items", "oneOf", "not"}

func (sc *schemaCheck) fail(path, format string, args ...any) {
	sc.errs = append(sc.errs, path+": "+fmt.Sprintf(format, args...))
}

func (sc *schemaCheck) check(path string, v any, s map[string]any) {
	for k := range s {
		if !slices.Contains(schemaKeywords, k) {
			sc.t.Fatalf("%s: schema keyword %q is not checked here", path, k)
		}
	}
	if ref, ok := s["$ref"].(string); ok {
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		def, _ := sc.root["$defs"].(map[string]any)[name].(map[string]any)
		if !ok || def == nil {
			sc.t.Fatalf("%s: $ref %q not found", path, ref)
		}
		sc.check(path, v, def)
	}
	if alts, ok := s["oneOf"].([]any); ok {
		n := 0
		for _, a := range alts {
			sub := &schemaCheck{t: sc.t, root: sc.root}
			sub.check(path, v, a.(map[string]any))
			if len(sub.errs) == 0 {
				n++
			}
		}
		if n != 1 {
			sc.fail(path, "matches %d of oneOf's %d schemas, want 1", n, len(alts))
		}
	}
	if not, ok := s["not"].(map[string]any); ok {
		sub := &schemaCheck{t: sc.t, root: sc.root}
		sub.check(path, v, not)
		if len(sub.errs) == 0 {
			sc.fail(path, "%v matches the schema it must not (%v)", v, not)
		}
	}
	if typ, ok := s["type"].(string); ok && !jsonType(v, typ) {
		sc.fail(path, "want type %s, got %T", typ, v)
		return
	}
	if c, ok := s["const"]; ok && !sameJSON(c, v) {
		sc.fail(path, "want %v, got %v", c, v)
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return sameJSON(e, v) }) {
		sc.fail(path, "%v is not one of %v", v, enum)
	}
	switch v := v.(type) {
	case string:
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(v) {
			sc.fail(path, "%q does not match %s", v, p)
		}
		if m, ok := s["maxLength"].(json.Number); ok {
			// JSON Schema counts characters (code points), not bytes.
			if n, _ := m.Int64(); int64(utf8.RuneCountInString(v)) > n {
				sc.fail(path, "%d characters, more than the maxLength %v", utf8.RuneCountInString(v), m)
			}
		}
	case json.Number:
		f, _ := v.Float64()
		if m, ok := s["minimum"].(json.Number); ok {
			if mf, _ := m.Float64(); f < mf {
				sc.fail(path, "%v is below the minimum %v", v, m)
			}
		}
		if m, ok := s["maximum"].(json.Number); ok {
			if mf, _ := m.Float64(); f > mf {
				sc.fail(path, "%v is above the maximum %v", v, m)
			}
		}
	case []any:
		if m, ok := s["minItems"].(json.Number); ok {
			if n, _ := m.Int64(); int64(len(v)) < n {
				sc.fail(path, "%d items, fewer than %v", len(v), m)
			}
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range v {
				sc.check(fmt.Sprintf("%s[%d]", path, i), e, items)
			}
		}
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for _, r := range asStrings(s["required"]) {
			if _, ok := v[r]; !ok {
				sc.fail(join(path, r), "required, missing")
			}
		}
		for k, e := range v {
			if p, ok := props[k].(map[string]any); ok {
				sc.check(join(path, k), e, p)
			} else if s["additionalProperties"] == false {
				sc.fail(join(path, k), "not a property the schema allows")
			}
		}
	}
}

func jsonType(v any, typ string) bool {
	switch typ {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		// JSON Schema's: any number without a fraction (8.0, 1e1).
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		f, err := n.Float64()
		return err == nil && f == math.Trunc(f)
	}
	return false
}

func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func asStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, e := range list {
		out = append(out, e.(string))
	}
	return out
}

func decodeNumbers(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestExamplesMatchSchema: every example document in configs/ passes the
// schema editors check it against, as well as Parse.
func TestExamplesMatchSchema(t *testing.T) {
	root := decodeNumbers(t, readExample(t, "xrc.schema.json")).(map[string]any)
	names, err := filepath.Glob(filepath.Join("..", "..", "configs", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range names {
		if filepath.Base(name) == "xrc.schema.json" {
			continue
		}
		t.Run(filepath.Base(name), func(t *testing.T) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			sc := &schemaCheck{t: t, root: root}
			sc.check("", decodeNumbers(t, data), root)
			for _, e := range sc.errs {
				t.Error(e)
			}
			if _, err := Parse(data); err != nil {
				t.Errorf("Parse: %v", err)
			}
		})
		checked++
	}
	if checked < 2 {
		t.Errorf("%d example configs found, want example.json and local.json at least", checked)
	}
}

// TestSchemaCheckRefuses: the checker above is no rubber stamp.
func TestSchemaCheckRefuses(t *testing.T) {
	root := decodeNumbers(t, readExample(t, "xrc.schema.json")).(map[string]any)
	for _, tc := range []struct {
		name string
		f    func(d map[string]any)
		want string
	}{
		{"enum", func(d map[string]any) { obj(d, "rules", 0, "destinations", 0)["storageClass"] = "SNOW" }, "rules[0].destinations[0].storageClass: SNOW is not one of"},
		{"required", func(d map[string]any) { delete(obj(d, "rules", 0), "sourceBucket") }, "rules[0].sourceBucket: required, missing"},
		{"additional", func(d map[string]any) { obj(d, "rules", 0)["prefx"] = "a/" }, "rules[0].prefx: not a property"},
		{"pattern", func(d map[string]any) { obj(d, "rules", 0, "batch")["maxAge"] = "soon" }, `rules[0].batch.maxAge: "soon" does not match`},
		{"maximum", func(d map[string]any) { obj(d, "rules", 0, "batch")["maxObjects"] = 60001 }, "rules[0].batch.maxObjects: 60001 is above the maximum 60000"},
		{"oneOf", func(d map[string]any) { obj(d, "rules", 0, "batch")["maxBytes"] = 1024 }, "rules[0].batch.maxBytes: matches 0 of oneOf's 2 schemas"},
		{"const", func(d map[string]any) { d["version"] = 2 }, "version: want 1, got 2"},
		{"leading slash", func(d map[string]any) { obj(d, "rules", 0)["prefix"] = "/data/" }, `rules[0].prefix: "/data/" does not match`},
		{"type", func(d map[string]any) { obj(d, "rules", 0)["level"] = 2.5 }, "rules[0].level: want type integer"},
		{"not", func(d map[string]any) { obj(d, "settings")["adaptive"] = map[string]any{"maxLevel": 0} }, "settings.adaptive.maxLevel: 0 matches the schema it must not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := &schemaCheck{t: t, root: root}
			sc.check("", decodeNumbers(t, mutate(t, tc.f)), root)
			if !slices.ContainsFunc(sc.errs, func(e string) bool { return strings.Contains(e, tc.want) }) {
				t.Errorf("errors %q do not say %q", sc.errs, tc.want)
			}
		})
	}
}

// TestSchemaKeywordsKnown: every keyword anywhere in the schema is one the
// check above knows, not only those the examples happen to reach.
func TestSchemaKeywordsKnown(t *testing.T) {
	root := decodeNumbers(t, readExample(t, "xrc.schema.json")).(map[string]any)
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		for k, v := range s {
			if !slices.Contains(schemaKeywords, k) {
				t.Errorf("%s: schema keyword %q is not checked by schemaCheck", path, k)
			}
			switch k {
			case "properties", "$defs":
				for name, sub := range v.(map[string]any) {
					walk(path+"."+name, sub.(map[string]any))
				}
			case "items", "not":
				walk(path+"/"+k, v.(map[string]any))
			case "additionalProperties":
				if sub, ok := v.(map[string]any); ok {
					walk(path+"/"+k, sub)
				}
			case "oneOf":
				for i, sub := range v.([]any) {
					walk(fmt.Sprintf("%s/oneOf[%d]", path, i), sub.(map[string]any))
				}
			}
		}
	}
	walk("#", root)
}
