package awsapi

import (
	"maps"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestTagMap(t *testing.T) {
	if m := TagMap(nil); m != nil {
		t.Errorf("TagMap(nil) = %v, want nil", m)
	}
	got := TagMap([]s3types.Tag{{Key: aws.String("a"), Value: aws.String("1")}, {Key: aws.String("b"), Value: aws.String("")}})
	if want := map[string]string{"a": "1", "b": ""}; !maps.Equal(got, want) {
		t.Errorf("TagMap = %v, want %v", got, want)
	}
}
