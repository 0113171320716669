// Package corpus generates the data xrc is measured and demonstrated on:
// deterministic stand-ins for what it moves in production (CSV exports, JSON
// log lines, XML documents, prose, and incompressible media), so nothing
// large is ever committed and every run sees the same bytes.
package corpus

import (
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Classes are the data classes, in the order benchmarks report them.
var Classes = []string{"csv", "jsonl", "xml", "text", "random"}

// Generate returns n bytes of class (one of Classes), the same bytes for the
// same arguments on every run on one architecture. Across architectures a
// price or coordinate may differ in its last printed digit: math.Exp and
// the fused multiply-adds arm64 compiles are not bit-identical to amd64's.
func Generate(class string, n int) []byte {
	g := newGen(uint64(len(class)) * 0x9E3779B97F4A7C15)
	switch class {
	case "random":
		return Random(n, 42)
	case "csv":
		return g.fill(n, []byte("id,ts,user_id,country,product,price,qty,lat,lon,status,description\n"), g.csvRow)
	case "jsonl":
		return g.fill(n, nil, g.jsonLine)
	case "xml":
		return g.fill(n, []byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<orders>\n"), g.xmlRecord)
	case "text":
		return g.fill(n, nil, g.paragraph)
	}
	panic("unknown corpus class " + class)
}

// Random returns n ChaCha8 bytes: incompressible, like JPEG or
// already-compressed columns.
func Random(n int, seed byte) []byte {
	var s [32]byte
	s[0] = seed
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

type gen struct {
	r    *rand.Rand
	word *rand.Zipf
	user *rand.Zipf
	id   int
	ts   time.Time
}

func newGen(seed uint64) *gen {
	r := rand.New(rand.NewPCG(seed, 7))
	return &gen{
		r:    r,
		word: rand.NewZipf(r, 1.07, 1, uint64(len(words)-1)),
		user: rand.NewZipf(r, 1.2, 1, 1_000_000),
		ts:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// fill appends records until n bytes, then cuts to exactly n.
func (g *gen) fill(n int, head []byte, rec func([]byte) []byte) []byte {
	b := make([]byte, 0, n+4096)
	b = append(b, head...)
	for len(b) < n {
		g.id++
		g.ts = g.ts.Add(time.Duration(g.r.ExpFloat64() * float64(40*time.Millisecond)))
		b = rec(b)
	}
	return b[:n]
}

func (g *gen) words(b []byte, n int) []byte {
	for i := range n {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, words[g.word.Uint64()]...)
	}
	return b
}

func (g *gen) hex(b []byte, nbytes int) []byte {
	const digits = "0123456789abcdef"
	for range nbytes {
		x := g.r.Uint32()
		b = append(b, digits[x&15], digits[x>>4&15])
	}
	return b
}

func (g *gen) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g *gen) price() float64 {
	return math.Round(math.Exp(g.r.NormFloat64()*0.9+3)*100) / 100
}

func (g *gen) csvRow(b []byte) []byte {
	b = strconv.AppendInt(b, int64(g.id), 10)
	b = append(b, ',')
	b = g.ts.AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, ',')
	b = strconv.AppendUint(b, g.user.Uint64(), 10)
	b = append(b, ',')
	b = append(b, g.pick(countries)...)
	b = append(b, ',')
	b = g.words(b, 1+g.r.IntN(3))
	b = append(b, ',')
	b = strconv.AppendFloat(b, g.price(), 'f', 2, 64)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(1+g.r.IntN(9)), 10)
	b = append(b, ',')
	b = strconv.AppendFloat(b, g.r.Float64()*180-90, 'f', 6, 64)
	b = append(b, ',')
	b = strconv.AppendFloat(b, g.r.Float64()*360-180, 'f', 6, 64)
	b = append(b, ',')
	b = append(b, g.pick(statuses)...)
	b = append(b, ",\""...)
	b = g.words(b, 3+g.r.IntN(12))
	return append(b, "\"\n"...)
}

func (g *gen) jsonLine(b []byte) []byte {
	b = append(b, `{"ts":"`...)
	b = g.ts.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"`...)
	b = append(b, g.pick(levels)...)
	b = append(b, `","service":"`...)
	b = append(b, g.pick(services)...)
	b = append(b, `","host":"10.`...)
	b = strconv.AppendInt(b, int64(g.r.IntN(4)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(g.r.IntN(256)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(g.r.IntN(256)), 10)
	b = append(b, `","trace_id":"`...)
	b = g.hex(b, 16)
	b = append(b, `","span_id":"`...)
	b = g.hex(b, 8)
	b = append(b, `","http":{"method":"`...)
	b = append(b, g.pick(methods)...)
	b = append(b, `","path":"/api/v1/`...)
	b = append(b, words[g.word.Uint64()]...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(g.r.IntN(100000)), 10)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(g.pick(httpStatus)[0]-'0')*100+int64(g.r.IntN(5)), 10)
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendFloat(b, g.r.ExpFloat64()*35, 'f', 3, 64)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, int64(g.r.ExpFloat64()*8000), 10)
	b = append(b, `,"user_agent":"`...)
	b = append(b, g.pick(agents)...)
	b = append(b, `"},"user_id":`...)
	b = strconv.AppendUint(b, g.user.Uint64(), 10)
	b = append(b, `,"msg":"`...)
	b = g.words(b, 4+g.r.IntN(13))
	return append(b, "\"}\n"...)
}

func (g *gen) xmlRecord(b []byte) []byte {
	b = append(b, `  <order id="`...)
	b = strconv.AppendInt(b, int64(g.id), 10)
	b = append(b, `" date="`...)
	b = g.ts.AppendFormat(b, time.RFC3339)
	b = append(b, `" status="`...)
	b = append(b, g.pick(statuses)...)
	b = append(b, "\">\n    <customer id=\""...)
	b = strconv.AppendUint(b, g.user.Uint64(), 10)
	b = append(b, "\">\n      <name>"...)
	b = g.words(b, 2)
	b = append(b, "</name>\n      <country>"...)
	b = append(b, g.pick(countries)...)
	b = append(b, "</country>\n    </customer>\n    <items>\n"...)
	for range 1 + g.r.IntN(5) {
		b = append(b, `      <item sku="SKU-`...)
		b = strconv.AppendInt(b, int64(g.r.IntN(100000)), 10)
		b = append(b, `" qty="`...)
		b = strconv.AppendInt(b, int64(1+g.r.IntN(9)), 10)
		b = append(b, `" price="`...)
		b = strconv.AppendFloat(b, g.price(), 'f', 2, 64)
		b = append(b, "\"/>\n"...)
	}
	b = append(b, "    </items>\n    <note>"...)
	b = g.words(b, 3+g.r.IntN(15))
	return append(b, "</note>\n  </order>\n"...)
}

// paragraph writes English-ish prose: Zipf-distributed words in sentences.
func (g *gen) paragraph(b []byte) []byte {
	for range 2 + g.r.IntN(6) {
		start := len(b)
		b = g.words(b, 5+g.r.IntN(20))
		if c := b[start]; 'a' <= c && c <= 'z' {
			b[start] = c - 'a' + 'A'
		}
		b = append(b, g.pick(punct)...)
	}
	return append(b, "\n\n"...)
}

var (
	countries  = []string{"US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "AU", "NL", "SE", "ES", "IT", "MX", "KR"}
	statuses   = []string{"pending", "paid", "shipped", "delivered", "cancelled", "refunded"}
	levels     = []string{"info", "info", "info", "debug", "warn", "error"}
	services   = []string{"checkout", "auth", "search", "catalog", "payments", "gateway", "inventory"}
	methods    = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	httpStatus = []string{"2", "2", "2", "2", "3", "4", "5"}
	agents     = []string{"Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)", "curl/8.5.0", "aws-sdk-go-v2/1.30.0", "okhttp/4.12.0"}
	punct      = []string{". ", ". ", ". ", ", and ", "? ", "! ", "; "}
)

// words is a fixed list of common English words, most frequent first, so a
// Zipf draw over indexes gives a realistic heavy-tailed vocabulary.
var words = []string{
	"the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with",
	"as", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "not", "word", "but",
	"what", "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your", "how",
	"said", "an", "each", "she", "which", "do", "their", "time", "if", "will", "way", "about", "many", "then",
	"them", "write", "would", "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two",
	"has", "look", "more", "day", "could", "go", "come", "did", "number", "sound", "no", "most", "people",
	"my", "over", "know", "water", "than", "call", "first", "who", "may", "down", "side", "been", "now",
	"find", "any", "new", "work", "part", "take", "get", "place", "made", "live", "where", "after", "back",
	"little", "only", "round", "man", "year", "came", "show", "every", "good", "me", "give", "our", "under",
	"name", "very", "through", "just", "form", "sentence", "great", "think", "say", "help", "low", "line",
	"differ", "turn", "cause", "much", "mean", "before", "move", "right", "boy", "old", "too", "same",
	"tell", "does", "set", "three", "want", "air", "well", "also", "play", "small", "end", "put", "home",
	"read", "hand", "port", "large", "spell", "add", "even", "land", "here", "must", "big", "high", "such",
	"follow", "act", "why", "ask", "men", "change", "went", "light", "kind", "off", "need", "house",
	"picture", "try", "us", "again", "animal", "point", "mother", "world", "near", "build", "self", "earth",
	"father", "head", "stand", "own", "page", "should", "country", "found", "answer", "school", "grow",
	"study", "still", "learn", "plant", "cover", "food", "sun", "four", "between", "state", "keep", "eye",
	"never", "last", "let", "thought", "city", "tree", "cross", "farm", "hard", "start", "might", "story",
	"saw", "far", "sea", "draw", "left", "late", "run", "while", "press", "close", "night", "real", "life",
	"few", "north", "open", "seem", "together", "next", "white", "children", "begin", "got", "walk",
	"example", "ease", "paper", "group", "always", "music", "those", "both", "mark", "often", "letter",
	"until", "mile", "river", "car", "feet", "care", "second", "book", "carry", "took", "science", "eat",
	"room", "friend", "began", "idea", "fish", "mountain", "stop", "once", "base", "hear", "horse", "cut",
	"sure", "watch", "color", "face", "wood", "main", "enough", "plain", "girl", "usual", "young", "ready",
	"above", "ever", "red", "list", "though", "feel", "talk", "bird", "soon", "body", "dog", "family",
	"direct", "pose", "leave", "song", "measure", "door", "product", "black", "short", "numeral", "class",
	"wind", "question", "happen", "complete", "ship", "area", "half", "rock", "order", "fire", "south",
	"problem", "piece", "told", "knew", "pass", "since", "top", "whole", "king", "space", "heard", "best",
	"hour", "better", "true", "during", "hundred", "five", "remember", "step", "early", "hold", "west",
	"ground", "interest", "reach", "fast", "verb", "sing", "listen", "six", "table", "travel", "less",
	"morning", "ten", "simple", "several", "vowel", "toward", "war", "lay", "against", "pattern", "slow",
	"center", "love", "person", "money", "serve", "appear", "road", "map", "rain", "rule", "govern", "pull",
	"cold", "notice", "voice", "unit", "power", "town", "fine", "certain", "fly", "fall", "lead", "cry",
	"dark", "machine", "note", "wait", "plan", "figure", "star", "box", "noun", "field", "rest", "correct",
	"able", "pound", "done", "beauty", "drive", "stood", "contain", "front", "teach", "week", "final",
	"gave", "green", "oh", "quick", "develop", "ocean", "warm", "free", "minute", "strong", "special",
	"mind", "behind", "clear", "tail", "produce", "fact", "street", "inch", "multiply", "nothing", "course",
	"stay", "wheel", "full", "force", "blue", "object", "decide", "surface", "deep", "moon", "island",
	"foot", "system", "busy", "test", "record", "boat", "common", "gold", "possible", "plane", "stead",
	"dry", "wonder", "laugh", "thousand", "ago", "ran", "check", "game", "shape", "equate", "hot", "miss",
	"brought", "heat", "snow", "tire", "bring", "yes", "distant", "fill", "east", "paint", "language",
	"among", "replication", "bucket", "region", "archive", "compression", "latency", "throughput",
	"manifest", "checksum", "frame", "window", "encoder", "decoder", "stream", "object", "version",
}
