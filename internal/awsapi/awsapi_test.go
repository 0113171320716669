package awsapi

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/xrc-dev/xrc/internal/config"
)

func apiErr(code string, status int) error {
	err := error(&smithy.GenericAPIError{Code: code, Message: "m"})
	if status != 0 {
		err = &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err}
	}
	return fmt.Errorf("op: %w", err)
}

// deleteMarker is S3's answer to a read of a version that is a delete
// marker.
func deleteMarker() error {
	h := http.Header{}
	h.Set("x-amz-delete-marker", "true")
	return fmt.Errorf("op: %w", &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 405, Header: h}},
		Err: &smithy.GenericAPIError{Code: "MethodNotAllowed", Message: "m"}})
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
		// A version that is a delete marker; not any 405.
		{deleteMarker(), true, false, false},
		{apiErr("MethodNotAllowed", 405), false, false, false},
	}
	for _, tc := range cases {
		if IsNotFound(tc.err) != tc.notFound || IsPreconditionFailed(tc.err) != tc.precond || IsAccessDenied(tc.err) != tc.denied {
			t.Errorf("%v: notFound=%v precond=%v denied=%v", tc.err, IsNotFound(tc.err), IsPreconditionFailed(tc.err), IsAccessDenied(tc.err))
		}
	}
	if archived := apiErr("InvalidObjectState", 403); !IsArchived(archived) || IsArchived(apiErr("AccessDenied", 403)) {
		t.Error("an archived object's 403 is told from a permissions one by its code")
	}
}

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{apiErr("SlowDown", 503), true},
		{apiErr("InternalError", 500), true},
		{apiErr("RequestTimeout", 400), true},
		{apiErr("OperationAborted", 409), true},
		{apiErr("ExpiredToken", 400), true},
		{apiErr("TooManyRequestsException", 429), true},
		{apiErr("AccessDenied", 403), false},
		{apiErr("InvalidTag", 400), false},
		{apiErr("NoSuchKey", 404), false},
		{errors.New("plain"), false},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestS3Client: the S3 client keeps enough idle connections for a worker's
// requests in flight, leaves response checksums to xrc, and keeps the SDK's
// request checksums (without them it would hash every upload body with
// SHA-256 to sign it).
func TestS3Client(t *testing.T) {
	shared := awshttp.NewBuildableClient()
	for _, cfg := range []aws.Config{{Region: "us-east-1"}, {Region: "us-east-1", HTTPClient: shared}} {
		o := S3(cfg, config.Region{Name: "eu-west-1", S3Endpoint: "https://s3.example", S3PathStyle: true}).Options()
		bc, ok := o.HTTPClient.(*awshttp.BuildableClient)
		if !ok {
			t.Fatalf("HTTP client %T", o.HTTPClient)
		}
		if tr := bc.GetTransport(); tr.MaxIdleConnsPerHost != MaxIdleConnsPerHost || tr.MaxIdleConns < MaxIdleConnsPerHost {
			t.Errorf("idle connections: %d per host, %d in all", tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
		}
		if tr := bc.GetTransport(); tr.ForceAttemptHTTP2 {
			t.Error("HTTP/2 attempted: a paused body would fail the shared connection")
		}
		if o.ResponseChecksumValidation != aws.ResponseChecksumValidationWhenRequired {
			t.Errorf("response checksum validation %v", o.ResponseChecksumValidation)
		}
		if o.RequestChecksumCalculation == aws.RequestChecksumCalculationWhenRequired {
			t.Error("request checksums only when required: uploads would be hashed with SHA-256 to be signed")
		}
		if o.Region != "eu-west-1" || aws.ToString(o.BaseEndpoint) != "https://s3.example" || !o.UsePathStyle {
			t.Errorf("region %s endpoint %s path style %v", o.Region, aws.ToString(o.BaseEndpoint), o.UsePathStyle)
		}
	}
	if shared.GetTransport().MaxIdleConnsPerHost == MaxIdleConnsPerHost {
		t.Error("the HTTP client of the config, shared with other clients, was changed")
	}
}

// TestURLEscapesKeys: a key's control characters are escaped where it is
// named for a person: printed raw, one forged a report's
// "differences: none" line, or drove the terminal.
func TestURLEscapesKeys(t *testing.T) {
	for key, want := range map[string]string{
		"logs/a b.txt":            "s3://b/logs/a b.txt",
		"x\ndifferences: none\ny": `s3://b/x\ndifferences: none\ny`,
		"t\x1b[2Jclear":           `s3://b/t\x1b[2Jclear`,
		"caf\xe9":                 "s3://b/caf\uFFFD",
		"ünïcode/ok":              "s3://b/ünïcode/ok",
	} {
		if got := URL("b", key); got != want {
			t.Errorf("URL(%q) = %q, want %q", key, got, want)
		}
	}
}
