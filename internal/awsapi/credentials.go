package awsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// regionCredentials are a region's own S3 credentials (config
// Region.S3Credentials): another partition's, or an S3-compatible
// store's, which the worker's own (its task role) cannot be.
type regionCredentials struct {
	spec string
	ssm  *ssm.Client // the worker's own account and region
}

// Retrieve reads them: from a SecureString parameter (ssm:///name) or from
// the environment (env:PREFIX). They are not refreshed: a rotated secret
// takes effect when the worker restarts.
func (c regionCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	var v struct {
		AccessKeyID     string `json:"accessKeyId"`
		SecretAccessKey string `json:"secretAccessKey"`
		SessionToken    string `json:"sessionToken"`
	}
	switch {
	case strings.HasPrefix(c.spec, "env:"):
		p := strings.TrimPrefix(c.spec, "env:")
		v.AccessKeyID, v.SecretAccessKey, v.SessionToken = os.Getenv(p+"_ACCESS_KEY_ID"), os.Getenv(p+"_SECRET_ACCESS_KEY"), os.Getenv(p+"_SESSION_TOKEN")
	case strings.HasPrefix(c.spec, "ssm:///"):
		name := "/" + strings.TrimPrefix(c.spec, "ssm:///")
		out, err := c.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: &name, WithDecryption: aws.Bool(true)})
		if err != nil {
			return aws.Credentials{}, fmt.Errorf("reading S3 credentials %s: %w", c.spec, err)
		}
		if err := json.Unmarshal([]byte(aws.ToString(out.Parameter.Value)), &v); err != nil {
			return aws.Credentials{}, fmt.Errorf("S3 credentials %s: not a JSON object of accessKeyId, secretAccessKey: %w", c.spec, err)
		}
	default:
		return aws.Credentials{}, fmt.Errorf("S3 credentials %q: want ssm:///name or env:PREFIX", c.spec)
	}
	if v.AccessKeyID == "" || v.SecretAccessKey == "" {
		return aws.Credentials{}, fmt.Errorf("S3 credentials %s: no accessKeyId or secretAccessKey", c.spec)
	}
	return aws.Credentials{AccessKeyID: v.AccessKeyID, SecretAccessKey: v.SecretAccessKey, SessionToken: v.SessionToken, Source: "xrc " + c.spec}, nil
}
