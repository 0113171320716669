// Package awsapi builds the SDK clients xrc uses and classifies their errors
// in one place, so the pipelines branch on meaning (not found, precondition
// failed, access denied) rather than on error strings; throttling is the
// SDK's retryer's business (MaxAttempts).
package awsapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/defaults"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/xrc-dev/xrc/internal/config"
)

// MaxAttempts bounds the SDK's own retries of one call; the queue's
// redelivery is the retry above that.
const MaxAttempts = 5

// Load returns the SDK configuration for region from the environment (the
// task role on ECS; keys, AWS_CA_BUNDLE and AWS_ENDPOINT_URL_* locally).
// Its connections fail after StallTimeout without a byte moving, whatever
// the service (a DynamoDB or SQS call on a silent connection would hold its
// caller as an S3 one would).
func Load(ctx context.Context, region string) (aws.Config, error) {
	return load(ctx, region, StallTimeout, CredentialsTimeout)
}

// CredentialsTimeout bounds one request to the ECS task's credentials
// endpoint, which answers in milliseconds. The SDK's client for it has no
// timeout of its own, and the credentials cache refreshes once for every
// caller under a context none of them can cancel: one request hung there
// held every AWS call of the process, each until its own deadline (a
// part upload has none), and health failed only minutes later.
const CredentialsTimeout = 5 * time.Second

func load(ctx context.Context, region string, stall, credentials time.Duration) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx,
		awsconfig.WithRegion(region),
		awsconfig.WithEndpointCredentialOptions(func(o *endpointcreds.Options) {
			o.HTTPClient = awshttp.NewBuildableClient().WithTimeout(credentials)
		}),
		// Buildable, so that the config's CA bundle (AWS_CA_BUNDLE) is
		// applied to it.
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient()),
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = MaxAttempts
				// No client-side retry quota: a task's one S3 client
				// spends its 500 tokens in a few seconds of SlowDown at
				// a worker's concurrency, and then tries every request
				// once, sending archives S3 only asked to slow down
				// towards the DLQ. The backoff still spaces retries.
				o.RateLimiter = ratelimit.None
			})
		}),
	)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading AWS config for %s: %w", region, err)
	}
	if c, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
		cfg.HTTPClient = httpClient(cfg, c, stall)
	}
	// A defaults mode other than legacy (AWS_DEFAULTS_MODE, defaults_mode)
	// would have every service client rebuild its dialer for the mode's
	// timeouts, dropping the stall timeout's wrapper: the client above
	// already has them, and the retryer is xrc's own whatever the mode.
	cfg.DefaultsMode = aws.DefaultsModeLegacy
	return cfg, nil
}

// httpClient is c, the HTTP client of cfg's SDK clients, with the connect
// and TLS handshake timeouts of cfg's defaults mode, and the stall timeout.
func httpClient(cfg aws.Config, c *awshttp.BuildableClient, stall time.Duration) *awshttp.BuildableClient {
	mode := cfg.DefaultsMode
	if mode == aws.DefaultsModeAuto {
		mode = defaults.ResolveDefaultsModeAuto(cfg.Region, cfg.RuntimeEnvironment)
	}
	if m, err := defaults.GetModeConfiguration(mode); err == nil { // legacy has none
		c = c.WithDialerOptions(func(d *net.Dialer) {
			if t, ok := m.GetConnectTimeout(); ok {
				d.Timeout = t
			}
		}).WithTransportOptions(func(t *http.Transport) {
			if d, ok := m.GetTLSNegotiationTimeout(); ok {
				t.TLSHandshakeTimeout = d
			}
		})
	}
	// Last: WithDialerOptions replaces the transport's dialer.
	return c.WithTransportOptions(func(t *http.Transport) {
		t.DialContext = stallDial(t.DialContext, stall)
	})
}

// MaxIdleConnsPerHost is how many idle connections an S3 client keeps to
// one endpoint. The SDK keeps 10, but a source worker has up to ~40
// requests in flight (two archives, each with its prefetches, HEADs and
// part uploads); every connection over 10 was closed after its request and
// the next one paid a new TLS handshake.
const MaxIdleConnsPerHost = 64

// S3 returns an S3 client for region, honouring its endpoint override for
// S3-compatible stores and the local stack.
//
// Checksums: xrc verifies what it reads itself. The source hashes every
// object it reads with SHA-256 (checked against S3's full-object checksum
// where S3 has one and it is cheap: package checksum), the target checks
// that digest and each zstd frame's checksum before it writes anything, and
// writes with the source's checksum, which S3 checks. So responses are not validated by the SDK as well
// (ResponseChecksumValidation WhenRequired: GETs no longer ask S3 for
// checksums, and the SDK no longer runs a CRC, on AWS mostly CRC64NVME in
// software, over every byte read; TLS authenticates the bytes in transit).
// Request checksums keep the SDK default, WhenSupported, on purpose: an
// upload with no checksum is signed with the SHA-256 of its whole body (a
// second pass over it), one with a checksum streams unsigned behind a CRC
// trailer, which S3 verifies. Uploads that name an algorithm get that one.
func S3(cfg aws.Config, region config.Region) *s3.Client {
	return newS3(cfg, region, StallTimeout)
}

// CheckedS3 is S3 for a region with credentials of its own
// (S3Credentials), which it reads once now: a start-up that cannot read
// them fails, where the worker would otherwise run and fail each archive.
func CheckedS3(ctx context.Context, cfg aws.Config, region config.Region) (*s3.Client, error) {
	c := S3(cfg, region)
	if region.S3Credentials != "" {
		if _, err := c.Options().Credentials.Retrieve(ctx); err != nil {
			return nil, fmt.Errorf("region %s's S3 credentials: %w", region.Name, err)
		}
	}
	return c, nil
}

func newS3(cfg aws.Config, region config.Region, stall time.Duration) *s3.Client {
	var own *aws.CredentialsCache
	if region.S3Credentials != "" {
		own = aws.NewCredentialsCache(regionCredentials{spec: region.S3Credentials, ssm: ssm.NewFromConfig(cfg)})
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.Region = region.Name
		if region.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(region.S3Endpoint)
		}
		if own != nil {
			o.Credentials = own
			o.APIOptions = append(o.APIOptions, forgetRejected(own))
		}
		o.UsePathStyle = region.S3PathStyle
		// The SDK prints a plain-text line for every multipart object read
		// (archives are multipart); it would break the JSON log stream, and
		// the archive reader verifies every byte anyway.
		o.DisableLogOutputChecksumValidationSkipped = true
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		if c, ok := o.HTTPClient.(*awshttp.BuildableClient); ok {
			// A copy: other clients of cfg keep their own pools.
			o.HTTPClient = c.WithTransportOptions(func(t *http.Transport) {
				t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
				t.MaxIdleConns = max(t.MaxIdleConns, MaxIdleConnsPerHost)
				t.DialContext = stallDial(t.DialContext, stall)
				// HTTP/1.1, as S3 speaks: over HTTP/2 (an S3-compatible
				// store may offer it) one body its reader pauses would
				// silence the shared connection past the stall timeout
				// and fail every request on it.
				t.ForceAttemptHTTP2 = false
			})
		}
	})
}

// forgetRejected drops a region's cached credentials once S3 rejects them
// (after the SDK's retries): a rotated key or a renewed token is read at
// the next call, not after the rest of credentialsTTL, in which every copy
// failed with the key the store no longer takes.
func forgetRejected(c *aws.CredentialsCache) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("xrcForgetRejectedCredentials",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				switch Code(err) {
				case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
					c.Invalidate()
				}
				return out, md, err
			}), middleware.Before)
	}
}

// S3Clients returns one S3 client per configured region.
func S3Clients(cfg aws.Config, c *config.Config) map[string]*s3.Client {
	m := make(map[string]*s3.Client, len(c.Settings.Regions))
	for _, r := range c.Settings.Regions {
		m[r.Name] = S3(cfg, r)
	}
	return m
}

// Code returns the AWS error code of err, or "".
func Code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func status(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// Unreadable reports an object S3 will not let anyone read until it is
// restored, and its class: GLACIER or DEEP_ARCHIVE with no restored copy
// (none asked for, or one still in progress), or an INTELLIGENT_TIERING
// object in one of its archive tiers.
func Unreadable(head *s3.HeadObjectOutput) (string, bool) {
	switch {
	case head.ArchiveStatus != "":
		return string(head.StorageClass) + " " + string(head.ArchiveStatus), true
	case head.StorageClass == types.StorageClassGlacier, head.StorageClass == types.StorageClassDeepArchive:
		restore := aws.ToString(head.Restore)
		return string(head.StorageClass), restore == "" || strings.Contains(restore, `ongoing-request="true"`)
	}
	return "", false
}

// IsNotFound reports a missing object, version, bucket or queue; and a
// version that is a delete marker, which S3 answers with 405 and
// x-amz-delete-marker (a versioning-suspended bucket's "null" write,
// deleted since: its version id now names the marker).
func IsNotFound(err error) bool {
	switch Code(err) {
	case "NoSuchKey", "NotFound", "NoSuchVersion", "NoSuchBucket", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "ResourceNotFoundException":
		return true
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusMethodNotAllowed && re.Response != nil && re.Response.Header.Get("x-amz-delete-marker") == "true" {
		return true
	}
	return status(err) == http.StatusNotFound
}

// IsPreconditionFailed reports a conditional request (If-Match,
// If-None-Match) that lost, or a DynamoDB condition that did not hold.
func IsPreconditionFailed(err error) bool {
	switch Code(err) {
	case "PreconditionFailed", "ConditionalRequestConflict", "ConditionalCheckFailedException":
		return true
	}
	return status(err) == http.StatusPreconditionFailed
}

// Refused reports a call the service answered with a client error (4xx):
// it was not carried out. Any other failure (no answer: a timeout, a
// connection reset; or a 5xx) leaves unknown whether it was.
func Refused(err error) bool {
	s := status(err)
	return s >= 400 && s < 500
}

// NotSent reports a call that failed before its request left: no
// connection could be made (the name did not resolve, the dial failed),
// so it was certainly not carried out. (A failure on a connection already
// open may come after the request was sent.)
func NotSent(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &op) && op.Op == "dial" || errors.As(err, &dns)
}

// Transient reports a failure that may heal by itself, a 4xx among them:
// what the SDK's retryer retries (timeouts, throttling, 5xx), and S3's
// 409 OperationAborted ("try again") and an expired token (credentials
// are refreshed). Such a failure, surviving the SDK's own retries, is for
// a later retry, not a refusal to give up on.
func Transient(err error) bool {
	switch Code(err) {
	case "OperationAborted", "ExpiredToken", "ExpiredTokenException":
		return true
	}
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary
}

// IsArchived reports a read S3 refused because the object is in an archive
// storage class (GLACIER, DEEP_ARCHIVE, an archive tier) and not restored:
// a 403, but not a permissions problem.
func IsArchived(err error) bool { return Code(err) == "InvalidObjectState" }

// IsCustomerKeyRequired reports a GET refused because the object is
// encrypted with a key its writer holds (SSE-C): S3 answers 400
// InvalidRequest saying so, to a caller without the key, however often it
// asks. (A HEAD's 400 carries no body to say it.)
func IsCustomerKeyRequired(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "InvalidRequest" && strings.Contains(ae.ErrorMessage(), "Server Side Encryption")
}

// MaxSortKey is DynamoDB's limit on a sort key, in bytes.
const MaxSortKey = 1024

// IsAccessDenied reports a permissions problem: retrying will not help until
// an operator fixes the policy.
func IsAccessDenied(err error) bool {
	switch Code(err) {
	case "AccessDenied", "AccessDeniedException", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled":
		return true
	}
	return status(err) == http.StatusForbidden
}

// URL names bucket/key as s3://bucket/key for messages a person reads,
// with the key's control characters escaped: a key is anyone's to name,
// and printed raw one could forge lines of a report ("differences: none")
// or drive the terminal it is printed on.
func URL(bucket, key string) string {
	if utf8.ValidString(key) && strings.IndexFunc(key, unicode.IsControl) < 0 {
		return "s3://" + bucket + "/" + key
	}
	var b strings.Builder
	b.WriteString("s3://" + bucket + "/")
	for _, r := range strings.ToValidUTF8(key, "\uFFFD") {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}
