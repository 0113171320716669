package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
)

// MaxDocument caps the bytes Load accepts; SSM's advanced tier stops at 8 KB
// but a file may be larger.
const MaxDocument = 4 << 20

// MaxParameter is the most an SSM parameter holds (the advanced tier's 8
// KB), which the CDK app stores the document in, compacted (Compacted).
const MaxParameter = 8192

// Compacted is the document without its insignificant white space, as
// the CDK app stores it.
func Compacted(raw []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ParameterGetter is the one SSM call Load needs; *ssm.Client satisfies it.
type ParameterGetter interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// SSMScheme prefixes a source naming an SSM parameter: ssm:///xrc/prod/config.
const SSMScheme = "ssm://"

// Load reads the document from a file path or from SSM Parameter Store
// ("ssm:///name"), parses, applies defaults and validates it. ps may be nil
// when source is a file. The returned error lists every problem found.
func Load(ctx context.Context, source string, ps ParameterGetter) (*Config, error) {
	data, err := Read(ctx, source, ps)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", source, err)
	}
	return c, nil
}

// Read returns the raw document from a file or an SSM parameter.
func Read(ctx context.Context, source string, ps ParameterGetter) ([]byte, error) {
	name, isSSM := strings.CutPrefix(source, SSMScheme)
	if !isSSM {
		f, err := os.Open(source)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, MaxDocument+1))
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", source, err)
		}
		if len(data) > MaxDocument {
			return nil, fmt.Errorf("config %s: larger than %d bytes", source, MaxDocument)
		}
		return data, nil
	}
	if name == "" || name == "/" {
		return nil, fmt.Errorf("config %s: no parameter name after %s", source, SSMScheme)
	}
	if strings.Contains(name, "/") && !strings.HasPrefix(name, "/") && !strings.HasPrefix(name, "arn:") {
		// SSM refuses it with a ValidationException about an "ssm"
		// prefix, which says nothing of the slash.
		return nil, fmt.Errorf("config %s: SSM parameter name %q is a path without its leading '/': %s/%s", source, name, SSMScheme, name)
	}
	if ps == nil {
		return nil, fmt.Errorf("config %s: no SSM client", source)
	}
	out, err := ps.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(name), WithDecryption: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("config %s: reading SSM parameter %s: %w%s", source, name, err, notFoundHint(err))
	}
	if out.Parameter == nil || out.Parameter.Value == nil {
		return nil, fmt.Errorf("config %s: SSM parameter %s has no value", source, name)
	}
	return []byte(*out.Parameter.Value), nil
}

// notFoundHint says where to look when the parameter is not there: the
// usual first-day cause is another region (a path missing its leading
// slash, the other, Read refuses before asking).
func notFoundHint(err error) string {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ParameterNotFound" {
		return ""
	}
	return " (not in this region: the CDK app writes /<stackName>/config in each region it deploys; check the region it was read in: a worker's -region or XRC_REGION, else AWS_REGION; the xrc command's AWS_REGION or the AWS profile's region)"
}

// Parse decodes and validates a document. Errors name the JSON path of each
// problem; all of them are reported, joined.
func Parse(data []byte) (*Config, error) {
	var raw any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, syntaxError(data, err)
	}
	if dec.More() {
		return nil, syntaxError(data, errors.New("unexpected data after the top-level object"))
	}
	raw = wholeNumbers(raw)
	var errs Errors
	checkDuplicateKeys(&errs, data)
	checkNoLevelZero(&errs, raw)
	if checkShape(&errs, "", raw, reflect.TypeFor[Config]()) {
		raw = map[string]any{}
	}
	// Decoded without the values checkShape refused (it removes them), so
	// that one bad value leaves the rest of the document to the semantic
	// checks below, which report the remaining problems in the same run:
	// Unmarshal stops at the first value its type's UnmarshalJSON refuses
	// (a duration, a size), and the fields after it would read as missing.
	clean, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(clean, &c); err != nil && len(errs) == 0 {
		errs.add("", "%v", err)
	}
	c.applyDefaults()
	var verrs Errors
	if errors.As(c.Validate(), &verrs) {
		errs = append(errs, verrs...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &c, nil
}

// checkNoLevelZero refuses minLevel or maxLevel 0, which is no zstd level
// of xrc's: taken for "left out", as other fields' 0 is, it became the
// default (-7, 19), and a maxLevel meant to keep to the fast levels let
// the learner go up to 19.
func checkNoLevelZero(errs *Errors, raw any) {
	top, _ := raw.(map[string]any)
	settings, _ := top["settings"].(map[string]any)
	adaptive, _ := settings["adaptive"].(map[string]any)
	for _, name := range []string{"minLevel", "maxLevel"} {
		if n, ok := adaptive[name].(json.Number); ok && n.String() == "0" {
			errs.add("settings.adaptive."+name, "0 is no level (1 is zstd's fastest positive one, -1 the slowest negative); leave it out for the default")
		}
	}
}

// wholeNumbers writes every number of v that is a whole one (8.0, 1e1,
// -0) as an integer: JSON Schema's "integer" takes them, and the document
// an editor checked against the schema must load.
func wholeNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = wholeNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = wholeNumbers(e)
		}
	case json.Number:
		if _, err := v.Int64(); err == nil && v.String() != "-0" {
			return v
		}
		// Exactly: a float64 would round 1e-400 to 0 and 2^53+1 to 2^53.
		// An exponent no whole number of a config needs is left to be
		// refused (big.Rat would compute 1e-99999999 in full).
		s := v.String()
		if i := strings.IndexAny(s, "eE"); i >= 0 {
			if exp, err := strconv.Atoi(s[i+1:]); err != nil || exp < -40 || exp > 40 {
				return v
			}
		}
		if r, ok := new(big.Rat).SetString(s); ok && r.IsInt() && r.Num().IsInt64() {
			return json.Number(r.Num().String())
		}
	}
	return v
}

// syntaxError turns a decoder error into one naming line:column.
func syntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	off := int64(-1)
	if errors.As(err, &se) {
		off = se.Offset - 1 // Offset is just past the offending byte
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		off = int64(len(data))
	}
	if off < 0 {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	line, col := 1, 1
	for _, b := range data[:min(int(off), len(data))] {
		if b == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("malformed JSON at line %d, column %d: %w", line, col, err)
}

// checkDuplicateKeys reports a key given twice in one object, which
// encoding/json (and the generic decoding checkShape walks) resolves to
// the last silently: {"prefix": "prod/", "prefix": ""} would replicate a
// whole bucket that looks limited to prod/. data is one valid JSON value
// (Parse decoded it first); the walk keeps its own stack, so no document
// nests it deeper than the decoder does.
func checkDuplicateKeys(errs *Errors, data []byte) {
	// Paths are built only for a duplicate: built for every value, a long
	// key over a large array cost time and memory quadratic in the
	// document (23 s for 600 KB).
	type frame struct {
		parent  *frame
		object  bool
		name    string         // the key this value has in its parent object
		at      int            // or its index in its parent array (-1: none)
		keys    map[string]int // object: times each key was given
		wantKey bool           // object: a key (or '}') comes next
		key     string         // object: the key of the value coming next
		index   int            // array: the index of the value coming next
	}
	path := func(f *frame, last string) string {
		var chain []*frame
		for ; f != nil && f.parent != nil; f = f.parent {
			chain = append(chain, f)
		}
		p := ""
		for i := len(chain) - 1; i >= 0; i-- {
			if c := chain[i]; c.at >= 0 {
				p += "[" + strconv.Itoa(c.at) + "]"
			} else {
				p = join(p, c.name)
			}
		}
		return join(p, last)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var top *frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return // io.EOF; anything else Parse has reported already
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			top = top.parent
			continue
		}
		if top != nil && top.object && top.wantKey {
			key, _ := tok.(string)
			top.keys[key]++
			if top.keys[key] == 2 {
				errs.add(path(top, key), "given twice")
			}
			top.key, top.wantKey = key, false
			continue
		}
		// A value: of the top-level, of an object's key or an array's index.
		d, ok := tok.(json.Delim)
		if top != nil && top.object {
			top.wantKey = true
		}
		if !ok { // a scalar: nothing to name
			if top != nil && !top.object {
				top.index++
			}
			continue
		}
		f := &frame{parent: top, object: d == '{', at: -1}
		switch {
		case top != nil && top.object:
			f.name = top.key
		case top != nil:
			f.at = top.index
			top.index++
		}
		if f.object {
			f.keys, f.wantKey = map[string]int{}, true
		}
		top = f
	}
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// checkShape walks the generic decoding of the document against the Go types
// and reports unknown fields and wrong JSON types with their paths, so that an
// operator sees every mistake at once rather than json's first one.
// It reports whether v itself is refused; its parent then drops it from the
// document, to be decoded as absent.
func checkShape(errs *Errors, path string, v any, t reflect.Type) (refused bool) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		b, _ := json.Marshal(v)
		if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(b); err != nil {
			errs.add(path, "%v", err)
			return true
		}
		return false
	}
	want := ""
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			want = "an object"
			break
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				errs.add(join(path, k), "unknown field")
				// Unmarshal matches keys without case: "DrainTimeout"
				// would still be decoded, and could stop the decoding.
				delete(obj, k)
				continue
			}
			if checkShape(errs, join(path, k), obj[k], f.Type) {
				delete(obj, k) // decoded as absent
			}
		}
		return false
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			want = "an array"
			break
		}
		for i, e := range arr {
			if checkShape(errs, fmt.Sprintf("%s[%d]", path, i), e, t.Elem()) {
				arr[i] = nil // decoded as the zero value, keeping the others' indexes
			}
		}
		return false
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			want = "an object"
			break
		}
		for k, e := range obj {
			if checkShape(errs, join(path, k), e, t.Elem()) {
				delete(obj, k)
			}
		}
		return false
	case reflect.String:
		if _, ok := v.(string); !ok {
			want = "a string"
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			want = "true or false"
		}
	case reflect.Int, reflect.Int64:
		if n, ok := v.(json.Number); !ok {
			want = "an integer"
		} else if _, err := n.Int64(); err != nil {
			want = "an integer"
		}
	case reflect.Float64:
		// 1e999 is valid JSON that json.Unmarshal refuses without a
		// path, as out of float64's range.
		if n, ok := v.(json.Number); !ok {
			want = "a number"
		} else if _, err := n.Float64(); err != nil {
			want = "a finite number"
		}
	}
	if want != "" {
		errs.add(path, "want %s, got %s", want, jsonKind(v))
		return true
	}
	return false
}

func jsonFields(t reflect.Type) map[string]reflect.StructField {
	m := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f
	}
	return m
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case []any:
		return "an array"
	default:
		return "an object"
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
