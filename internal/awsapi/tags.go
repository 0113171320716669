package awsapi

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TagMap is an object's tag set (GetObjectTagging) as a map; nil when it
// has none.
func TagMap(set []s3types.Tag) map[string]string {
	if len(set) == 0 {
		return nil
	}
	m := make(map[string]string, len(set))
	for _, t := range set {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}
