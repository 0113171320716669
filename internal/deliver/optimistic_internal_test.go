package deliver

import "testing"

func TestOverwritesDecideReadFirst(t *testing.T) {
	var o overwrites
	if o.headFirst("b") {
		t.Fatal("a bucket never written to is read first; want the write first")
	}
	for range 1000 {
		o.observe("b", false)
	}
	if o.headFirst("b") {
		t.Fatal("read first after 1,000 new keys")
	}
	// 5% of keys present: writing first is still cheaper.
	for i := range 2000 {
		o.observe("b", i%20 == 0)
	}
	if o.headFirst("b") {
		t.Error("read first with 5% of keys present; the break-even is 7.4%")
	}
	// 10%: reading first is.
	for i := range 2000 {
		o.observe("b", i%10 == 0)
	}
	if !o.headFirst("b") {
		t.Error("still writing first with 10% of keys present")
	}
	if o.headFirst("other") {
		t.Error("another bucket inherited b's overwrites")
	}
	// The workload changes back to new keys: the worker follows it.
	for range 1000 {
		o.observe("b", false)
	}
	if o.headFirst("b") {
		t.Error("still reading first after 1,000 new keys in a row")
	}
}
