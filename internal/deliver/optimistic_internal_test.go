package deliver

import "testing"

func TestOverwritesDecideReadFirst(t *testing.T) {
	var o overwrites
	// feed records n writes to bucket b, every k-th finding its key (k 0:
	// none).
	feed := func(n, k int) {
		for i := range n {
			o.observe("b", k > 0 && i%k == 0)
		}
	}
	for _, step := range []struct {
		n, k      int
		headFirst bool
		why       string
	}{
		{0, 0, false, "a bucket never written to"},
		{1000, 0, false, "1,000 new keys"},
		{2000, 20, false, "5% of keys present (the break-even is 7.4%)"},
		{2000, 10, true, "10% of keys present"},
		{1000, 0, false, "1,000 new keys in a row after overwrites"},
	} {
		feed(step.n, step.k)
		if got := o.headFirst("b"); got != step.headFirst {
			t.Errorf("after %s: reads first %v, want %v", step.why, got, step.headFirst)
		}
	}
	feed(2000, 2)
	if o.headFirst("other") {
		t.Error("another bucket inherited b's overwrites")
	}
}
