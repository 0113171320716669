package awsapi

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func apiErr(code string, status int) error {
	err := error(&smithy.GenericAPIError{Code: code, Message: "m"})
	if status != 0 {
		err = &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err}
	}
	return fmt.Errorf("op: %w", err)
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err                       error
		notFound, precond, denied bool
	}{
		{apiErr("NoSuchKey", 404), true, false, false},
		{apiErr("NotFound", 0), true, false, false},
		{apiErr("", 404), true, false, false}, // HEAD 404 has no body, so no code
		{apiErr("NoSuchBucket", 404), true, false, false},
		{apiErr("PreconditionFailed", 412), false, true, false},
		{apiErr("ConditionalCheckFailedException", 400), false, true, false},
		{apiErr("AccessDenied", 403), false, false, true},
		{apiErr("InvalidAccessKeyId", 403), false, false, true},
		{apiErr("SlowDown", 503), false, false, false},
		{errors.New("plain"), false, false, false},
	}
	for _, tc := range cases {
		if IsNotFound(tc.err) != tc.notFound || IsPreconditionFailed(tc.err) != tc.precond || IsAccessDenied(tc.err) != tc.denied {
			t.Errorf("%v: notFound=%v precond=%v denied=%v", tc.err, IsNotFound(tc.err), IsPreconditionFailed(tc.err), IsAccessDenied(tc.err))
		}
	}
}
