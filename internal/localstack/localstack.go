package localstack

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// StackRegion is the region of the stack's non-S3 services (SQS, DynamoDB).
const StackRegion = "us-east-1"

// Env is the local stack as seen from its environment variables.
type Env struct {
	AccessKey, SecretKey string
	CABundle             string // PEM file of the stack's CA (AWS_CA_BUNDLE)
	SQSEndpoint          string
	DynamoDBEndpoint     string
	BridgeURL            string
	MC                   string            // path to the mc binary
	MCConfigDir          string            // mc config dir trusting the CA
	S3Endpoints          map[string]string // region -> MinIO URL
	// ConditionalS3Endpoints: region -> URL of the bridge's proxy to that
	// region's MinIO, which honours If-Match on DeleteObject as AWS does
	// (MinIO ignores it). Only eu-west-1 has one.
	ConditionalS3Endpoints map[string]string
}

const loadHint = `start the stack and load its environment: deploy/local/stack up && eval "$(deploy/local/stack env)"`

// FromEnv reads the variables printed by `deploy/local/stack env`. The error
// names the first missing variable.
func FromEnv() (Env, error) {
	var e Env
	vars := []struct {
		name string
		dst  *string
	}{
		{"AWS_ACCESS_KEY_ID", &e.AccessKey},
		{"AWS_SECRET_ACCESS_KEY", &e.SecretKey},
		{"AWS_CA_BUNDLE", &e.CABundle},
		{"AWS_ENDPOINT_URL_SQS", &e.SQSEndpoint},
		{"AWS_ENDPOINT_URL_DYNAMODB", &e.DynamoDBEndpoint},
		{"XRC_BRIDGE_URL", &e.BridgeURL},
		{"XRC_MC", &e.MC},
		{"MC_CONFIG_DIR", &e.MCConfigDir},
	}
	for _, v := range vars {
		*v.dst = os.Getenv(v.name)
		if *v.dst == "" {
			return Env{}, fmt.Errorf("localstack: %s is not set; %s", v.name, loadHint)
		}
	}
	e.S3Endpoints = map[string]string{}
	for region, name := range map[string]string{
		"us-east-1": "XRC_S3_ENDPOINT_US_EAST_1",
		"eu-west-1": "XRC_S3_ENDPOINT_EU_WEST_1",
	} {
		u := os.Getenv(name)
		if u == "" {
			return Env{}, fmt.Errorf("localstack: %s is not set; %s", name, loadHint)
		}
		e.S3Endpoints[region] = strings.TrimRight(u, "/")
	}
	e.ConditionalS3Endpoints = map[string]string{}
	for region, name := range map[string]string{
		"eu-west-1": "XRC_S3_CONDITIONAL_ENDPOINT_EU_WEST_1",
	} {
		u := os.Getenv(name)
		if u == "" {
			return Env{}, fmt.Errorf("localstack: %s is not set; %s", name, loadHint)
		}
		e.ConditionalS3Endpoints[region] = strings.TrimRight(u, "/")
	}
	e.BridgeURL = strings.TrimRight(e.BridgeURL, "/")
	return e, nil
}

// Require returns the stack's Env after checking that every service answers.
// It fails the test with a clear message otherwise: a test that needs the
// stack must never pass by skipping.
func Require(t testing.TB) Env {
	t.Helper()
	e, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Check(ctx); err != nil {
		t.Fatalf("localstack: %v; is the stack up? run deploy/local/stack up (and deploy/local/stack status)", err)
	}
	return e
}

// Check probes each service once: MinIO's readiness endpoint over TLS with
// the stack's CA, directly and through the bridge's conditional-delete
// proxies, the bridge's /healthz, and any HTTP answer from SQS and DynamoDB.
func (e Env) Check(ctx context.Context) error {
	client, err := e.httpClient()
	if err != nil {
		return err
	}
	probes := []struct {
		name, url string
		want      int // 0: any status
	}{
		{"sqs", e.SQSEndpoint + "/", 0},
		{"dynamodb", e.DynamoDBEndpoint + "/", 0},
		{"bridge", e.BridgeURL + "/healthz", http.StatusOK},
	}
	for _, region := range sortedKeys(e.S3Endpoints) {
		probes = append(probes, struct {
			name, url string
			want      int
		}{"minio " + region, e.S3Endpoints[region] + "/minio/health/ready", http.StatusOK})
	}
	for _, region := range sortedKeys(e.ConditionalS3Endpoints) {
		probes = append(probes, struct {
			name, url string
			want      int
		}{"conditional S3 proxy " + region, e.ConditionalS3Endpoints[region] + "/minio/health/ready", http.StatusOK})
	}
	for _, p := range probes {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
		if err != nil {
			return fmt.Errorf("probing %s: %w", p.name, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%s not reachable at %s: %w", p.name, p.url, err)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if p.want != 0 && resp.StatusCode != p.want {
			return fmt.Errorf("%s at %s answered %s", p.name, p.url, resp.Status)
		}
	}
	return nil
}

func (e Env) httpClient() (*http.Client, error) {
	pool, err := e.caPool()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // everything is on loopback
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, nil
}

func (e Env) caPool() (*x509.CertPool, error) {
	pem, err := os.ReadFile(e.CABundle)
	if err != nil {
		return nil, fmt.Errorf("reading the stack CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in the stack CA file %s", e.CABundle)
	}
	return pool, nil
}

// AWSConfig returns an SDK config for region with the stack's static
// credentials and CA bundle.
func (e Env) AWSConfig(ctx context.Context, region string) (aws.Config, error) {
	pem, err := os.ReadFile(e.CABundle)
	if err != nil {
		return aws.Config{}, fmt.Errorf("reading the stack CA: %w", err)
	}
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(e.AccessKey, e.SecretKey, "")),
		config.WithCustomCABundle(bytes.NewReader(pem)),
	)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading AWS config for the local stack (%s): %w", region, err)
	}
	return cfg, nil
}

// S3 returns a path-style client for the MinIO that plays region.
func (e Env) S3(ctx context.Context, region string) (*s3.Client, error) {
	endpoint, ok := e.S3Endpoints[region]
	if !ok {
		return nil, fmt.Errorf("localstack: no S3 endpoint for region %q (have %v)", region, sortedKeys(e.S3Endpoints))
	}
	cfg, err := e.AWSConfig(ctx, region)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		// Tests and the demo read multipart objects and check them
		// themselves: the SDK's plain-text warning for each is noise.
		o.DisableLogOutputChecksumValidationSkipped = true
	}), nil
}

// S3Conditional returns a path-style client for region's MinIO through the
// bridge's proxy, which adds what MinIO lacks: DeleteObject with If-Match
// answers 412 PreconditionFailed when the current ETag differs and 404
// NoSuchKey when the key is absent, as on AWS. Everything else behaves as
// with S3.
func (e Env) S3Conditional(ctx context.Context, region string) (*s3.Client, error) {
	endpoint, ok := e.ConditionalS3Endpoints[region]
	if !ok {
		return nil, fmt.Errorf("localstack: no conditional S3 endpoint for region %q (have %v)", region, sortedKeys(e.ConditionalS3Endpoints))
	}
	cfg, err := e.AWSConfig(ctx, region)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		// Tests and the demo read multipart objects and check them
		// themselves: the SDK's plain-text warning for each is noise.
		o.DisableLogOutputChecksumValidationSkipped = true
	}), nil
}

// SQS returns a client for the stack's SQS server.
func (e Env) SQS(ctx context.Context) (*sqs.Client, error) {
	cfg, err := e.AWSConfig(ctx, StackRegion)
	if err != nil {
		return nil, err
	}
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(e.SQSEndpoint) }), nil
}

// DynamoDB returns a client for the stack's DynamoDB Local.
func (e Env) DynamoDB(ctx context.Context) (*dynamodb.Client, error) {
	cfg, err := e.AWSConfig(ctx, StackRegion)
	if err != nil {
		return nil, err
	}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(e.DynamoDBEndpoint)
		// DynamoDB Local's error bodies do not match their x-amz-crc32 header,
		// so the SDK would log a WARN on every expected failure (for example a
		// ConditionalCheckFailedException).
		o.DisableValidateResponseChecksum = true
	}), nil
}
