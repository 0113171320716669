package main

import (
	"fmt"
	"slices"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/jsii-runtime-go"
	"github.com/xrc-dev/xrc/internal/config"
)

// staging is a region's staging bucket: source workers write archives to
// it, S3 Replication copies them to the target regions' staging buckets,
// target workers read and delete them. One bucket per region serves every
// rule, each under the prefix <ruleId>/.
type staging struct {
	Bucket awss3.Bucket
	// Replication is the role S3 assumes to replicate, nil when the region
	// replicates nothing.
	Replication awsiam.Role
}

func newStaging(s *regionStack) *staging {
	days := s.d.Config.Settings.StagingExpiryDays
	bucket := awss3.NewBucket(s.Stack, jsii.String("Staging"), &awss3.BucketProps{
		BucketName:        jsii.String(s.plan.Region.StagingBucket),
		Versioned:         jsii.Bool(true), // S3 Replication needs it on both sides
		Encryption:        awss3.BucketEncryption_KMS,
		EncryptionKey:     s.keys.Staging,
		BucketKeyEnabled:  jsii.Bool(true),
		EnforceSSL:        jsii.Bool(true),
		MinimumTLSVersion: jsii.Number(1.2),
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		ObjectOwnership:   awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
		LifecycleRules:    lifecycle(s.d.Config, s.plan, days),
		// Archives are transient; tearing the deployment down empties and
		// removes the bucket.
		RemovalPolicy:     awscdk.RemovalPolicy_DESTROY,
		AutoDeleteObjects: jsii.Bool(true),
	})
	suppress(bucket, "AwsSolutions-S1",
		"staging holds transient archives that target workers delete within minutes; every write and delete is a worker action already in its logs and metrics (enable CloudTrail S3 data events for an audit trail)")
	st := &staging{Bucket: bucket}
	if len(s.plan.Replication) > 0 {
		st.replicate(s)
	}
	return st
}

// lifecycle keeps staging storage short: minutes in target regions, where
// workers delete the exact version they are done with, and about three
// days of an archive in its source region (stats.StagingDays, which xrc
// savings charges, as it charges the longer wait below); these rules are the backstop. An archive staged here for other regions is replicated within
// minutes, so it is kept a day at most; one replicated here waits up to
// days for its target workers (an outage of the target region); deleted
// and replaced versions go after a day, as do incomplete uploads. The
// archives of a rule with direct regions wait here as long, since the
// source copies them from here, and a copy left to a relay message
// (events.Relay) may be redriven from the DLQ days later. S3 Lifecycle
// expires no archive whose replication is PENDING or FAILED: a failed one
// stays, billed, until S3 Batch Replication copies it or the operator
// deletes it (the replication alarm says so). (The S3 user guide, "How S3
// Lifecycle interacts with other bucket configurations": Lifecycle blocks
// expiration and transition of objects with PENDING or FAILED replication
// status. Before late 2025 it expired FAILED ones: older pages say so.)
func lifecycle(cfg *config.Config, plan *regionPlan, days int) *[]*awss3.LifecycleRule {
	rules := []*awss3.LifecycleRule{{
		Id:                                  jsii.String("staging-leftovers"),
		NoncurrentVersionExpiration:         awscdk.Duration_Days(jsii.Number(1)),
		ExpiredObjectDeleteMarker:           jsii.Bool(true),
		AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(1)),
	}}
	// A rule with a destination in its own region is consumed here: its
	// archives wait like replicated ones.
	for _, r := range plan.SourceRules {
		if len(cfg.DirectRegions(r)) > 0 {
			if !slices.Contains(plan.TargetRules, r) {
				rules = append(rules, expire("staged-by-"+r.ID, r.ID, days))
			}
			continue
		}
		if !slices.Contains(plan.TargetRules, r) {
			rules = append(rules, expire("staged-by-"+r.ID, r.ID, 1))
			continue
		}
		// Delivered here while still replicating elsewhere: tagged by
		// the target, which may not delete it yet (deliver).
		delivered := expire("delivered-"+r.ID, r.ID, 1)
		delivered.TagFilters = &map[string]any{config.DeliveredTag: "true"}
		rules = append(rules, delivered)
	}
	for _, r := range plan.TargetRules {
		rules = append(rules, expire("waiting-for-"+r.ID, r.ID, days))
	}
	// The rules above follow today's config: the archives of a rule (or a
	// rule's region) removed since have none, and no worker reads them
	// any more. Kept no longer than any archive waits. (A rule of its
	// own: S3 refuses an expiry in days beside ExpiredObjectDeleteMarker.)
	rules = append(rules, &awss3.LifecycleRule{Id: jsii.String("staging-any"), Expiration: awscdk.Duration_Days(jsii.Number(float64(days)))})
	return &rules
}

func expire(id, rule string, days int) *awss3.LifecycleRule {
	return &awss3.LifecycleRule{Id: jsii.String(id), Prefix: jsii.String(stagingPrefix(rule)),
		Expiration: awscdk.Duration_Days(jsii.Number(float64(days)))}
}

// replicate adds one replication rule per (rule, target region): prefix
// <ruleId>/ to that region's staging bucket, encrypted there with its
// staging key. Only rules with a destination in a region replicate to it.
func (st *staging) replicate(s *regionStack) {
	stackName := s.d.Config.Settings.StackName
	region := s.plan.Region.Name
	role := awsiam.NewRole(s.Stack, jsii.String("ReplicationRole"), &awsiam.RoleProps{
		Description: jsii.String("S3 Replication of the xrc staging bucket in " + region),
		AssumedBy: awsiam.NewServicePrincipal(jsii.String("s3.amazonaws.com"), &awsiam.ServicePrincipalOpts{
			Conditions: &map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": awscdk.Aws_ACCOUNT_ID()}},
		}),
	})
	st.Replication = role
	bucketARN := *st.Bucket.BucketArn()
	p := s.policy(role)
	p.allow("ReadReplicationConfiguration", []string{"s3:GetReplicationConfiguration", "s3:ListBucket"}, []string{bucketARN}, nil, "")
	var sourceObjects []string
	destObjects := map[string][]string{} // target region -> object ARNs
	var targets []string
	var rules []*awss3.CfnBucket_ReplicationRuleProperty
	for _, r := range s.plan.Replication {
		if !slices.Contains(sourceObjects, bucketARN+"/"+r.Prefix()+"*") {
			sourceObjects = append(sourceObjects, bucketARN+"/"+r.Prefix()+"*")
		}
		if _, ok := destObjects[r.To.Name]; !ok {
			targets = append(targets, r.To.Name)
		}
		destObjects[r.To.Name] = append(destObjects[r.To.Name], s3ObjectsARN(r.To.StagingBucket, r.Prefix()))
		dest := &awss3.CfnBucket_ReplicationDestinationProperty{
			Bucket:                  jsii.String(s3BucketARN(r.To.StagingBucket)),
			EncryptionConfiguration: &awss3.CfnBucket_EncryptionConfigurationProperty{ReplicaKmsKeyId: stagingKeyAliasARN(stackName, r.To.Name)},
		}
		// Replication metrics always: S3 never retries a replication that
		// failed, and the archive's objects then never reach the target
		// region, its worker never hears of them, and no queue or DLQ
		// holds them. OperationsFailedReplication is the only trace.
		metrics := &awss3.CfnBucket_MetricsProperty{Status: jsii.String("Enabled")}
		if s.d.Options.ReplicationTimeControl {
			minutes := &awss3.CfnBucket_ReplicationTimeValueProperty{Minutes: jsii.Number(15)}
			dest.ReplicationTime = &awss3.CfnBucket_ReplicationTimeProperty{Status: jsii.String("Enabled"), Time: minutes}
			metrics.EventThreshold = minutes
		}
		dest.Metrics = metrics
		s.alarms.watchReplication(st.Bucket.BucketName(), r)
		rules = append(rules, &awss3.CfnBucket_ReplicationRuleProperty{
			Id:       jsii.String(r.ID()),
			Status:   jsii.String("Enabled"),
			Priority: jsii.Number(float64(r.Priority)),
			Filter:   &awss3.CfnBucket_ReplicationRuleFilterProperty{Prefix: jsii.String(r.Prefix())},
			// Target workers delete replicas themselves; source-side
			// deletes (lifecycle) must not reach the targets.
			DeleteMarkerReplication: &awss3.CfnBucket_DeleteMarkerReplicationProperty{Status: jsii.String("Disabled")},
			SourceSelectionCriteria: &awss3.CfnBucket_SourceSelectionCriteriaProperty{
				SseKmsEncryptedObjects: &awss3.CfnBucket_SseKmsEncryptedObjectsProperty{Status: jsii.String("Enabled")},
			},
			Destination: dest,
		})
	}
	p.allow("ReadReplicatedPrefixes", []string{"s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"},
		sourceObjects, nil, "the staging prefixes <ruleId>/ that replicate")
	p.allow("DecryptStagedArchives", []string{"kms:Decrypt"}, []string{*s.keys.Staging.KeyArn()}, viaService("s3", region), "")
	for i, t := range targets {
		p.allow(fmt.Sprintf("ReplicateTo%d", i), []string{"s3:ReplicateObject", "s3:ReplicateTags"}, destObjects[t], nil,
			"the prefixes <ruleId>/ of the rules with a destination in "+t+", in its staging bucket")
		// The target's staging key is known only by its alias: KMS
		// authorizes on the key, so the statement names the region's keys
		// and narrows them to the one carrying the alias.
		p.allow(fmt.Sprintf("EncryptReplicasIn%d", i), []string{"kms:Encrypt", "kms:GenerateDataKey"},
			[]string{fmt.Sprintf("arn:%s:kms:%s:%s:key/*", *awscdk.Aws_PARTITION(), t, *awscdk.Aws_ACCOUNT_ID())},
			map[string]any{
				"ForAnyValue:StringEquals": map[string]any{"kms:ResourceAliases": stagingKeyAlias(stackName)},
				"StringEquals":             map[string]any{"kms:ViaService": "s3." + t + ".amazonaws.com"},
			}, whyKMSByAlias)
	}
	cfn := st.Bucket.Node().DefaultChild().(awss3.CfnBucket)
	cfn.SetReplicationConfiguration(&awss3.CfnBucket_ReplicationConfigurationProperty{
		Role:  role.RoleArn(),
		Rules: &rules,
	})
}

func s3BucketARN(bucket string) string {
	return fmt.Sprintf("arn:%s:s3:::%s", *awscdk.Aws_PARTITION(), bucket)
}

func s3ObjectsARN(bucket, prefix string) string { return s3BucketARN(bucket) + "/" + prefix + "*" }
