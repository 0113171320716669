package checksum

import "testing"

// FuzzParse feeds arbitrary values, as a manifest or a HeadObject carries
// them, to Parse: it must not panic, and what it accepts is a sum of the
// algorithm's size whose encoding is the value itself (no second form of
// one sum passes).
func FuzzParse(f *testing.F) {
	for i, a := range Algorithms {
		f.Add(uint8(i), a.Sum([]byte("123456789")))
	}
	f.Add(uint8(0), "AAAAAA==\n")
	f.Add(uint8(2), "AAAAAAAAAAB=")
	f.Add(uint8(9), "AAAAAA==")
	f.Fuzz(func(t *testing.T, i uint8, value string) {
		a := Algorithm("none")
		if int(i) < len(Algorithms) {
			a = Algorithms[i]
		}
		sum, err := Parse(a, value)
		if err != nil {
			return
		}
		if len(sum) != a.Size() || Encode(sum) != value {
			t.Fatalf("Parse(%s, %q) = %x", a, value, sum)
		}
	})
}
