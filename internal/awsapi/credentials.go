package awsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

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

// credentialsTTL is how long a region's credentials are used before they
// are read again: a rotated key or a renewed session token is picked up
// within it, not at the next restart.
const credentialsTTL = 15 * time.Minute

// Retrieve reads them: from a SecureString parameter (ssm:///name) or from
// the environment (env:PREFIX), again every credentialsTTL (the SDK's
// cache reads them under a context no caller can cancel: the read is
// bounded here).
func (c regionCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
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
	return aws.Credentials{AccessKeyID: v.AccessKeyID, SecretAccessKey: v.SecretAccessKey, SessionToken: v.SessionToken, Source: "xrc " + c.spec,
		CanExpire: true, Expires: time.Now().Add(credentialsTTL)}, nil
}

// staleFor is how long credentials read before are kept once reading them
// again has failed, before the next try.
const staleFor = time.Minute

var _ aws.HandleFailRefreshCredentialsCacheStrategy = regionCredentials{}

// HandleFailToRefresh keeps the credentials read before, for staleFor,
// when reading them again fails (SSM throttled, its key's KMS refusing): a
// key read 15 minutes ago most likely still works, and without them every
// call to the region failed, each reading SSM again. Credentials a store
// rejected were forgotten (forgetRejected): then there are none to keep.
func (c regionCredentials) HandleFailToRefresh(ctx context.Context, prev aws.Credentials, err error) (aws.Credentials, error) {
	if !prev.HasKeys() {
		return aws.Credentials{}, err
	}
	prev.Expires = time.Now().Add(staleFor)
	return prev, nil
}
