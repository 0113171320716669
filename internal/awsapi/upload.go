package awsapi

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// AbortTimeout bounds the clean-up calls of a multipart upload (its
// CreateMultipartUpload and its abort), which run even after the caller's
// context is cancelled.
const AbortTimeout = 10 * time.Second

// NewUploader returns a transfer manager whose multipart uploads never
// leave parts behind when ctx is cancelled mid-way (drain time over): it
// aborts a failed upload on a context of its own, and it lets a started
// CreateMultipartUpload finish, because a create cancelled in flight may
// still open the upload at S3 without telling us its id, and nobody could
// abort it; its parts would stay billed until a lifecycle rule, if any,
// removed them. A started CompleteMultipartUpload gets CompleteGrace past
// a cut: cut in flight, S3 may complete the object all the same, which
// the caller would take for an upload that failed (an archive staged and
// replicated, said not staged and staged again).
func NewUploader(client transfermanager.S3APIClient, optFns ...func(*transfermanager.Options)) *transfermanager.Client {
	return newUploader(completeCreates{client, CompleteGrace}, optFns)
}

// NewUploaderNoGrace is NewUploader whose complete ends with its caller:
// for a copy that a cut leaves to be made again anyway, so that its
// caller's clean-up after the cut takes less.
func NewUploaderNoGrace(client transfermanager.S3APIClient, optFns ...func(*transfermanager.Options)) *transfermanager.Client {
	return newUploader(completeCreates{client, 0}, optFns)
}

func newUploader(client completeCreates, optFns []func(*transfermanager.Options)) *transfermanager.Client {
	return transfermanager.New(client, append(optFns, func(o *transfermanager.Options) {
		o.FailTimeout = AbortTimeout
	})...)
}

type completeCreates struct {
	transfermanager.S3APIClient
	grace time.Duration // a complete's time past its caller's cut
}

func (c completeCreates) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), AbortTimeout)
	defer cancel()
	return c.S3APIClient.CreateMultipartUpload(ctx, in, optFns...)
}

// CompleteGrace is how long a CompleteMultipartUpload in flight goes on
// once its caller is cut. (Uncut, it takes as long as S3 does: minutes,
// for thousands of parts.)
const CompleteGrace = 5 * time.Second

func (c completeCreates) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	if c.grace == 0 {
		return c.S3APIClient.CompleteMultipartUpload(ctx, in, optFns...)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	graced, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.grace, cancel) })
	defer stop()
	return c.S3APIClient.CompleteMultipartUpload(graced, in, optFns...)
}
