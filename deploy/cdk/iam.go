package main

import (
	"fmt"
	"maps"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"

	"github.com/xrc-dev/xrc/internal/config"
)

// policy adds statements to a role's policy. Every wildcard resource must
// come with the reason it is as narrow as it can be; the reasons become the
// role's cdk-nag suppressions, one per finding, so a wildcard added later
// without one fails synth.
type policy struct {
	s    *regionStack
	role awsiam.Role
}

func (s *regionStack) policy(role awsiam.Role) *policy { return &policy{s: s, role: role} }

// allow adds one Allow statement. why explains its wildcard resources, and
// must be empty when there are none.
func (p *policy) allow(sid string, actions, resources []string, conditions map[string]any, why string) {
	props := &awsiam.PolicyStatementProps{
		Sid:       jsii.String(sid),
		Actions:   jsii.Strings(actions...),
		Resources: jsii.Strings(resources...),
	}
	if conditions != nil {
		props.Conditions = &conditions
	}
	p.role.AddToPrincipalPolicy(awsiam.NewPolicyStatement(props))
	var wild []string
	for _, r := range resources {
		if strings.Contains(r, "*") {
			wild = append(wild, nagFinding(p.s.Stack, r))
		}
	}
	switch {
	case len(wild) > 0 && why == "":
		panic(fmt.Sprintf("statement %s grants wildcard resources %v without a reason", sid, wild))
	case len(wild) == 0 && why != "":
		panic(fmt.Sprintf("statement %s has a wildcard reason but no wildcard resource", sid))
	case len(wild) > 0:
		suppress(p.role, "AwsSolutions-IAM5", sid+": "+why, wild...)
	}
}

// grant is one Allow statement of a worker's policy, as policy.allow takes
// it.
type grant struct {
	sid                string
	actions, resources []string
	conditions         map[string]any
	why                string
}

// grants are a worker's statements. They are worked out once per worker
// and given to every role that runs it (its ECS task role, its Lambda
// function's role: grantAll), so the two ways of running a worker hold
// the very same statements.
type grants []grant

// allow adds one statement; the arguments are policy.allow's.
func (gs *grants) allow(sid string, actions, resources []string, conditions map[string]any, why string) {
	*gs = append(*gs, grant{sid: sid, actions: actions, resources: resources, conditions: conditions, why: why})
}

// grantAll adds every statement of gs to role.
func (s *regionStack) grantAll(role awsiam.Role, gs grants) {
	p := s.policy(role)
	for _, g := range gs {
		p.allow(g.sid, g.actions, g.resources, g.conditions, g.why)
	}
}

// Reasons for the wildcard resources the roles hold.
const (
	whyObjectsUnderPrefix = "object ARNs under one named prefix of one named bucket: the keys are only known at run time"
	whyKMSViaS3           = "KMS through S3 only (kms:ViaService), in this region, for this bucket's objects only (kms:EncryptionContext:aws:s3:arn): the bucket's own key is not in the config"
	whyOwnTask            = "the tasks of this cluster: a task's id is only known once it runs, and it asks for its own protection"
	whyKMSByAlias         = "KMS authorizes on key ARNs, which CloudFormation cannot know for an alias or a key in another region; narrowed to the one key carrying the alias (kms:ResourceAliases)"
)

// sourceGrants are exactly what a rule's source worker calls: read the
// watched prefix (objects, versions, tags), write archives under the rule's
// staging prefix, consume the rule's queue, read the config and use the
// statistics table.
func (s *regionStack) sourceGrants(rule *config.Rule, q *workQueue) grants {
	p := &grants{}
	region := s.plan.Region.Name
	p.allow("ReadWatchedObjects",
		[]string{"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"},
		[]string{s3ObjectsARN(rule.SourceBucket, rule.Prefix)}, nil, whyObjectsUnderPrefix)
	// Without ListBucket, S3 answers 403 instead of 404 for an object
	// deleted since its event, and the worker cannot tell it is gone; a
	// listing also gives the ETag of an SSE-C object, which HEAD refuses.
	p.allow("ListWatchedBucket", []string{"s3:ListBucket"}, []string{s3BucketARN(rule.SourceBucket)}, nil, "")
	p.allow("DecryptWatchedObjects", []string{"kms:Decrypt"}, []string{"*"},
		s3KeyConditions(region, rule.SourceBucket, rule.Prefix), whyKMSViaS3)
	p.allow("WriteArchives", []string{"s3:PutObject", "s3:AbortMultipartUpload"},
		[]string{*s.staging.Bucket.BucketArn() + "/" + stagingPrefix(rule.ID) + "*"}, nil,
		"archives under the rule's own prefix <ruleId>/ of the staging bucket")
	// The sweeper finds the uploads of tasks that died mid-archive (and
	// aborts them under the rule's prefix, WriteArchives).
	p.allow("ListStagingUploads", []string{"s3:ListBucketMultipartUploads"}, []string{*s.staging.Bucket.BucketArn()}, nil, "")
	// Multipart uploads to an SSE-KMS bucket need Decrypt as well.
	p.allow("EncryptArchives", []string{"kms:GenerateDataKey", "kms:Decrypt"},
		[]string{*s.keys.Staging.KeyArn()}, viaService("s3", region), "")
	// Only the rule's own items (package stats: statistics, choices), the
	// fleet's CPU figures, task leases and the start-up check: not the
	// targets' tombstones, whose forging would make them skip writes.
	p.allow("Statistics", []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"},
		[]string{*s.table.TableArn()}, leadingKeysLike(config.KeyStats+rule.ID, config.KeyChoice+rule.ID, config.KeyFleet, config.KeyTask+"*", config.KeyStartCheck), "")
	// Direct regions: each archive is read back from staging and copied
	// there with the region's own credentials; a copy that fails is left
	// to a relay message the worker sends its own queue (events.Relay),
	// which finds its archive expired by a 404 (without ListBucket, S3
	// answers 403 for a missing object).
	if len(s.d.Config.DirectRegions(rule)) > 0 {
		p.allow("ReadBackArchives", []string{"s3:GetObject", "s3:GetObjectVersion"},
			[]string{*s.staging.Bucket.BucketArn() + "/" + stagingPrefix(rule.ID) + "*"}, nil,
			"archives under the rule's own prefix <ruleId>/, copied to its direct regions")
		p.allow("ListStaging", []string{"s3:ListBucket"}, []string{*s.staging.Bucket.BucketArn()}, nil, "")
	}
	if arns := directCredentials(s.d.Config, rule); len(arns) > 0 {
		p.allow("DirectCredentials", []string{"ssm:GetParameter"}, arns, nil, "")
	}
	// A direct region of this partition without credentials of its own
	// is written with the task role's.
	for i, reg := range s.d.Config.DirectRegions(rule) {
		if reg.S3Credentials == "" {
			p.allow(fmt.Sprintf("CopyToDirect%d", i), []string{"s3:PutObject", "s3:AbortMultipartUpload"},
				[]string{s3ObjectsARN(reg.StagingBucket, stagingPrefix(rule.ID))}, nil,
				"archives under the rule's own prefix <ruleId>/ of a direct region's staging bucket")
			// Its staging bucket is an xrc deployment's, SSE-KMS with
			// that deployment's key (multipart uploads need Decrypt).
			p.allow(fmt.Sprintf("EncryptDirect%d", i), []string{"kms:GenerateDataKey", "kms:Decrypt"}, []string{"*"},
				s3KeyConditions(reg.Name, reg.StagingBucket, stagingPrefix(rule.ID)), whyKMSViaS3)
		}
	}
	s.commonGrants(p, q)
	return *p
}

// targetGrants are what the region's target worker calls: read and
// delete the archives of rules with a destination here, write (and, for
// rules propagating deletes, delete) under each destination prefix, list
// and abort the multipart uploads left there, keep tombstones and the
// ledger in the region's table, consume the target queue and read the
// config.
func (s *regionStack) targetGrants(q *workQueue) grants {
	p := &grants{}
	region := s.plan.Region.Name
	staging := *s.staging.Bucket.BucketArn()
	var archives []string
	for _, rule := range s.plan.TargetRules {
		archives = append(archives, staging+"/"+stagingPrefix(rule.ID)+"*")
	}
	// The archive is read by the version its event names
	// (GetObjectVersion), and that exact version is deleted once
	// extracted: staging is versioned, and a plain delete would leave it
	// as a noncurrent version, billed until lifecycle removes it.
	// Tagged instead when S3 Replication still copies it (config.DeliveredTag).
	p.allow("ReadAndDeleteArchives",
		[]string{"s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObjectVersion", "s3:PutObjectVersionTagging"}, archives, nil,
		"archives under the prefixes <ruleId>/ of the rules with a destination in this region")
	// 404 (already extracted by an earlier delivery) rather than 403.
	p.allow("ListStaging", []string{"s3:ListBucket"}, []string{staging}, nil, "")
	p.allow("DecryptArchives", []string{"kms:Decrypt"}, []string{*s.keys.Staging.KeyArn()}, viaService("s3", region), "")

	for i, d := range s.plan.Destinations {
		var objects, deletable []string
		for _, prefix := range d.Prefixes {
			objects = append(objects, s3ObjectsARN(d.Bucket, prefix))
		}
		for _, prefix := range d.DeletePrefixes {
			deletable = append(deletable, s3ObjectsARN(d.Bucket, prefix))
		}
		// GetObject is for HEAD (the conditional-write check) and for
		// conditional deletes (If-Match needs it); a write's tags ride on
		// the PutObject / CreateMultipartUpload itself, a later change of
		// them on the tagging calls (the version's, on a versioned bucket;
		// read first when a replayed write may carry one).
		p.allow(fmt.Sprintf("WriteDestination%d", i),
			[]string{"s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging",
				"s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"},
			objects, nil, whyObjectsUnderPrefix)
		if len(deletable) > 0 {
			p.allow(fmt.Sprintf("PropagateDeletes%d", i), []string{"s3:DeleteObject"}, deletable, nil,
				whyObjectsUnderPrefix+" (rules with deletes: true only)")
		}
		// HEAD of a key not written yet must be 404, not 403; the upload
		// listing finds the multipart uploads a killed worker left behind.
		p.allow(fmt.Sprintf("ListDestination%d", i), []string{"s3:ListBucket", "s3:ListBucketMultipartUploads"}, []string{s3BucketARN(d.Bucket)}, nil, "")
		// Destination buckets may encrypt by default with a key of their
		// own: allow it through S3, in this region, for this bucket only.
		p.allow(fmt.Sprintf("EncryptDestination%d", i), []string{"kms:GenerateDataKey", "kms:Decrypt"}, []string{"*"},
			s3KeyConditions(region, d.Bucket, d.Prefixes...), whyKMSViaS3)
		// The keys the config names, on the same terms: through S3, for
		// this bucket's objects (not the key's other ciphertexts). Within
		// EncryptDestination's grant already; kept so that the policy
		// names the key the config does.
		for j, key := range d.KMSKeys {
			resource, conditions, byAlias := kmsKeyResource(key, region)
			why := ""
			if byAlias {
				why = whyKMSByAlias
			}
			all := s3KeyConditions(region, d.Bucket, d.Prefixes...)
			maps.Copy(all, conditions)
			p.allow(fmt.Sprintf("DestinationKey%dK%d", i, j), []string{"kms:GenerateDataKey", "kms:Decrypt"},
				[]string{resource}, all, why)
		}
	}
	// Query and DeleteItem: the uploads of large members kept for resuming
	// (one partition per region), forgotten once completed or aborted.
	// Only the target's items (packages tombstone, ledger, uploads) and
	// the start-up check: not the sources' statistics.
	p.allow("TombstonesAndLedger", []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"},
		[]string{*s.table.TableArn()}, leadingKeysLike(config.KeyTomb+"*", config.KeyArchive+"*", config.KeyUploads+s.plan.Region.Name, config.KeyStartCheck), "")
	s.commonGrants(p, q)
	return *p
}

// commonGrants: consume the worker's queue, read the config.
func (s *regionStack) commonGrants(p *grants, q *workQueue) {
	p.allow("ConsumeQueue",
		[]string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"},
		[]string{*q.Queue.QueueArn()}, nil, "")
	p.allow("DecryptMessages", []string{"kms:Decrypt"}, []string{*s.keys.Messaging.KeyArn()}, viaService("sqs", s.plan.Region.Name), "")
	// A message on its last receive whose work an invocation's deadline or
	// a task's stop left undone is sent again as a new message rather than
	// left to reach the DLQ untried (queue.Queue.SendAgain); a source's
	// relay messages go the same way (events.Relay).
	p.allow("SendToOwnQueue", []string{"sqs:SendMessage"}, []string{*q.Queue.QueueArn()}, nil, "")
	p.allow("EncryptSent", []string{"kms:GenerateDataKey"}, []string{*s.keys.Messaging.KeyArn()}, viaService("sqs", s.plan.Region.Name), "")
	p.allow("ReadConfig", []string{"ssm:GetParameter"}, []string{*s.param.ParameterArn()}, nil, "")
}

// viaService limits a KMS statement to requests an AWS service makes in
// region on the caller's behalf.
func viaService(service, region string) map[string]any {
	return map[string]any{"StringEquals": map[string]any{"kms:ViaService": service + "." + region + ".amazonaws.com"}}
}

// s3KeyConditions limit a KMS statement to S3 in region working on bucket's
// objects under prefixes: the encryption context is the bucket's ARN with
// S3 Bucket Keys, the object's ARN without.
func s3KeyConditions(region, bucket string, prefixes ...string) map[string]any {
	arns := []string{s3BucketARN(bucket)}
	for _, p := range prefixes {
		arns = append(arns, s3ObjectsARN(bucket, p))
	}
	return map[string]any{
		"StringEquals": map[string]any{"kms:ViaService": "s3." + region + ".amazonaws.com"},
		"StringLike":   map[string]any{"kms:EncryptionContext:aws:s3:arn": arns},
	}
}

// kmsKeyResource turns a destination's kmsKeyId (key ARN, alias ARN, alias
// name or key id) into the IAM resource KMS authorizes on: the key. An alias
// names no key at synth time, so it becomes the region's keys narrowed by
// the alias.
func kmsKeyResource(id, region string) (resource string, conditions map[string]any, byAlias bool) {
	partition, account := *awscdk.Aws_PARTITION(), *awscdk.Aws_ACCOUNT_ID()
	if strings.HasPrefix(id, "arn:") {
		parts := strings.SplitN(id, ":", 6) // arn:partition:kms:region:account:resource
		if len(parts) == 6 {
			partition, region, account = parts[1], parts[3], parts[4]
			id = parts[5]
		}
	}
	if alias, ok := strings.CutPrefix(id, "alias/"); ok {
		return fmt.Sprintf("arn:%s:kms:%s:%s:key/*", partition, region, account),
			map[string]any{"ForAnyValue:StringEquals": map[string]any{"kms:ResourceAliases": "alias/" + alias}}, true
	}
	id = strings.TrimPrefix(id, "key/")
	return fmt.Sprintf("arn:%s:kms:%s:%s:key/%s", partition, region, account, id), nil, false
}

// directCredentials are the parameters holding the S3 credentials of the
// direct regions rule delivers to (config Region.S3Credentials,
// ssm:///name), in the account and region of the workers that read them.
func directCredentials(cfg *config.Config, rule *config.Rule) []string {
	var arns []string
	for _, reg := range cfg.DirectRegions(rule) {
		if name, ok := strings.CutPrefix(reg.S3Credentials, "ssm:///"); ok {
			arns = append(arns, *awscdk.Fn_Sub(jsii.String("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/"+name), nil))
		}
	}
	return arns
}
