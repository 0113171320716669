package manifest_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/xrc-dev/xrc/internal/manifest"
)

func ExampleMemberName() {
	fmt.Println(manifest.MemberName(0, "logs/2026/11/22/app.log"))
	fmt.Println(manifest.MemberName(1, "my folder/file name+v2.txt"))
	fmt.Println(manifest.MemberName(2, "../../etc/passwd")) // not a safe path: index only
	// Output:
	// objects/000000/logs/2026/11/22/app.log
	// objects/000001/my folder/file name+v2.txt
	// objects/000002
}

func ExampleDecode() {
	doc := `{"format":1,"archiveId":"01JDEXAMPLE","level":3,"objects":[
	  {"member":"objects/000000/a.txt","bucket":"src","key":"a.txt","size":-1,
	   "destinations":[{"region":"us-east-1","bucket":"dst","key":"a.txt"}]},
	  {"bucket":"src","key":"b.txt","delete":true,"destinations":[]}]}`
	_, err := manifest.Decode(strings.NewReader(doc))
	fmt.Println(errors.Is(err, manifest.ErrInvalid))
	fmt.Println(err)
	// Output:
	// true
	// invalid manifest: objects[0] (key "a.txt"): size -1 is negative
	// objects[1] (key "b.txt"): no destinations
}
