// Package stats keeps the fleet's compression statistics in the
// deployment's DynamoDB table, so that every source task learns from what
// every other one measured, and `xrc savings` can say what xrc saved.
//
// Items (table config.TableName, keys pk and sk, TTL attribute expiresAt):
//
//	pk "stats#<rule>", sk "h#<yyyy-mm-ddThh>#<class>#<arm>"
//	    in, out (bytes), cpuNs (normalised compression CPU), objects,
//	    archives: sums over one UTC hour, added with UpdateItem ADD, so
//	    concurrent tasks never lose an update; kept 35 days. ADD is not
//	    idempotent: a write whose outcome is unknown is not repeated
//	    (Store.Add), so the sums may miss an archive, never count one
//	    twice.
//	pk "fleet", sk "cpu#<encoder>#<yyyy-mm-dd>"
//	    count, sumMBps, sumDecodeNsPerMB: the CPU benchmark of every task
//	    of an encoder (libzstd, or the pure-Go one) that started that day
//	    (ADD); the mean over the last week of a task's encoder makes
//	    CPU-seconds of different tasks comparable. Kept 90 days; a week
//	    without a start falls back on the last day with one.
//	pk "choice#<rule>", sk "<class>"
//	    arm, since, changes, benefit, version: the arm a task last chose
//	    for a class; a read-modify-write guarded by version (optimistic
//	    concurrency, retried on ConditionalCheckFailedException).
package stats

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/xrc-dev/xrc/internal/adaptive"
	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
)

// ErrUncertain marks statistics whose write may or may not have been
// applied: they are not written again.
var ErrUncertain = errors.New("may have been counted")

// ErrNoTime marks statistics not sent because the caller's deadline was
// too near for another call: certainly not applied, and no failure of
// the table (a backlog after an outage takes several writes).
var ErrNoTime = errors.New("not sent: too little time left before the deadline")

// callReserve is the least time before the caller's deadline at which
// Add starts a call: one cut in flight may have been applied, so is lost
// (ErrUncertain), while a healthy table answers in milliseconds. Under
// half a second: a Lambda environment's retirement leaves about 500 ms
// for its last write, which a whole second's reserve refused outright.
const callReserve = 250 * time.Millisecond

// TTL is how long hourly statistics are kept: what `xrc savings -since`
// can look back on.
const TTL = 35 * 24 * time.Hour

// API is the part of the DynamoDB client a Store uses; *dynamodb.Client
// satisfies it.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Store reads and writes statistics in table.
type Store struct {
	api   API
	table string
	now   func() time.Time
}

// New returns a Store on table.
func New(api API, table string, now func() time.Time) *Store {
	return &Store{api: api, table: table, now: now}
}

// Delta is what one archive added for one class and arm of a rule.
type Delta struct {
	Class    adaptive.Class
	Arm      adaptive.Arm
	In, Out  int64
	CPU      time.Duration // normalised (adaptive.Factor)
	Objects  int
	Archives int
	// Frame is its share, by input, of its archives' bytes no object
	// holds (the manifest's frame, the tar's end): they cross the
	// regions, so xrc savings counts them, but they are no level's
	// doing, so the learner does not (Store would pay them too).
	Frame int64
	// Restaged is input counted in In that is staged again: objects
	// staged whose message came back unacknowledged (another of its
	// objects failed, a stop cut it). Both archives cross the regions,
	// S3 Replication would have copied the objects once: xrc savings
	// counts them once without xrc. The learner ignores it.
	Restaged int64
	// Deletes and Retags are the archive entries that carry no bytes: a
	// delete, a change of tags. They cost requests (xrc savings) and
	// teach the learner nothing; they are recorded in class Changes.
	Deletes, Retags int
}

// Changes is the class of a rule's statistics that records its deletes
// and tag changes (Delta.Deletes, Retags): no content, so no learning.
// Every archive adds one to its Archives, changes or not: the hour's
// archives, which the content classes' rows, one per class and arm an
// archive holds, cannot sum (xrc savings charges requests per archive).
const Changes adaptive.Class = "changes"

const hourFormat = "2006-01-02T15"

func statsPK(rule string) string { return config.KeyStats + rule }

func hourSK(hour time.Time, c adaptive.Class, a adaptive.Arm) string {
	return "h#" + hour.UTC().Format(hourFormat) + "#" + string(c) + "#" + a.String()
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

// Add adds ds to rule's statistics of the hour of at, one atomic ADD per
// class and arm. It stops at the first failure and returns the deltas not
// written, for the caller to retry later. ADD is not idempotent: a delta
// whose call failed without a refusal (a timeout, a reset, a 5xx) may
// have been applied, and is not returned (ErrUncertain), so none is
// started within callReserve of ctx's deadline (ErrNoTime): statistics may
// miss an archive after a failure, never count one twice, which would
// overstate what xrc saved. For the same reason the SDK does not retry.
// Its Restaged alone is returned: counted twice, it understates the
// saving; lost, it would overstate it.
func (st *Store) Add(ctx context.Context, rule string, at time.Time, ds []Delta) ([]Delta, error) {
	for i, d := range ds {
		if err := ctx.Err(); err != nil {
			// Out of time before this one was sent: it certainly
			// was not applied.
			return ds[i:], fmt.Errorf("adding statistics of rule %s: %w", rule, err)
		}
		if end, ok := ctx.Deadline(); ok && time.Until(end) < callReserve {
			return ds[i:], fmt.Errorf("adding statistics of rule %s: %d of %d deltas left: %w", rule, len(ds)-i, len(ds), ErrNoTime)
		}
		_, err := st.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: &st.table,
			Key:       map[string]types.AttributeValue{"pk": s(statsPK(rule)), "sk": s(hourSK(at, d.Class, d.Arm))},
			UpdateExpression: aws.String("ADD #in :in, #out :out, #frame :frame, #cpu :cpu, #obj :obj, #arc :arc, #rs :rs, #del :del, #rt :rt " +
				"SET #exp = if_not_exists(#exp, :exp), #rule = :rule, #hour = :hour, #class = :class, #arm = :arm"),
			ExpressionAttributeNames: map[string]string{"#in": "in", "#out": "out", "#frame": "frame", "#cpu": "cpuNs", "#obj": "objects", "#arc": "archives", "#rs": "restaged",
				"#del": "deletes", "#rt": "retags",
				"#exp": "expiresAt", "#rule": "rule", "#hour": "hour", "#class": "class", "#arm": "arm"},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":in": n(d.In), ":out": n(d.Out), ":frame": n(d.Frame), ":cpu": n(int64(d.CPU)), ":obj": n(int64(d.Objects)), ":arc": n(int64(d.Archives)), ":rs": n(d.Restaged),
				":del": n(int64(d.Deletes)), ":rt": n(int64(d.Retags)),
				":exp": n(st.now().Add(TTL).Unix()), ":rule": s(rule), ":hour": s(at.UTC().Format(hourFormat)),
				":class": s(string(d.Class)), ":arm": s(d.Arm.String()),
			},
		}, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
		switch {
		case err == nil:
		case awsapi.Refused(err), awsapi.NotSent(err):
			return ds[i:], fmt.Errorf("adding statistics of rule %s: %w", rule, err)
		default:
			left := ds[i+1:]
			if d.Restaged > 0 {
				left = append([]Delta{{Class: d.Class, Arm: d.Arm, Restaged: d.Restaged}}, left...)
			}
			return left, fmt.Errorf("adding statistics of rule %s (%s of class %s, arm %s, left out: %w): %w",
				rule, Bytes(d.In), d.Class, d.Arm, ErrUncertain, err)
		}
	}
	return nil, nil
}

// Hourly is one hour of one class and arm of a rule.
type Hourly struct {
	Rule string
	Hour time.Time // start of the UTC hour
	Delta
}

type hourlyItem struct {
	Rule     string `dynamodbav:"rule"`
	Hour     string `dynamodbav:"hour"`
	Class    string `dynamodbav:"class"`
	Arm      string `dynamodbav:"arm"`
	In       int64  `dynamodbav:"in"`
	Out      int64  `dynamodbav:"out"`
	Frame    int64  `dynamodbav:"frame"`
	CPUNs    int64  `dynamodbav:"cpuNs"`
	Objects  int    `dynamodbav:"objects"`
	Archives int    `dynamodbav:"archives"`
	Restaged int64  `dynamodbav:"restaged"`
	Deletes  int    `dynamodbav:"deletes"`
	Retags   int    `dynamodbav:"retags"`
}

// Since returns rule's hourly statistics from the hour of since on.
func (st *Store) Since(ctx context.Context, rule string, since time.Time) ([]Hourly, error) {
	p := dynamodb.NewQueryPaginator(st.api, &dynamodb.QueryInput{
		TableName:              &st.table,
		KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :from AND :to"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": s(statsPK(rule)), ":from": s("h#" + since.UTC().Format(hourFormat)), ":to": s("h#~"),
		},
	})
	var out []Hourly
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading statistics of rule %s: %w", rule, err)
		}
		for _, av := range page.Items {
			var it hourlyItem
			if err := attributevalue.UnmarshalMap(av, &it); err != nil {
				return nil, fmt.Errorf("decoding statistics of rule %s: %w", rule, err)
			}
			arm, ok := adaptive.ParseArm(it.Arm)
			hour, err := time.Parse(hourFormat, it.Hour)
			if !ok || err != nil {
				continue // written by a later version: not ours to judge
			}
			out = append(out, Hourly{Rule: it.Rule, Hour: hour, Delta: Delta{Class: adaptive.Class(it.Class), Arm: arm,
				In: it.In, Out: it.Out, Frame: it.Frame, CPU: time.Duration(it.CPUNs), Objects: it.Objects, Archives: it.Archives, Restaged: it.Restaged,
				Deletes: it.Deletes, Retags: it.Retags}})
		}
	}
	return out, nil
}

// Observations returns rule's statistics since `since` as observations for
// the learner, each dated at the middle of what its hour has covered: the
// current hour's at the middle of its part gone by, never in the future,
// where the learner would take it as newer than what this task just saw.
func (st *Store) Observations(ctx context.Context, rule string, since time.Time) ([]adaptive.Observation, error) {
	hs, err := st.Since(ctx, rule, since)
	if err != nil {
		return nil, err
	}
	now := st.now()
	obs := make([]adaptive.Observation, 0, len(hs))
	for _, h := range hs {
		obs = append(obs, adaptive.Observation{Key: adaptive.Key{Rule: rule, Class: h.Class}, Arm: h.Arm,
			Sample: adaptive.Sample{In: h.In, Out: h.Out, CPU: h.CPU, Objects: h.Objects}, At: middle(h.Hour, now)})
	}
	return obs, nil
}

// middle is the middle of the hour from start, or of its part before now;
// now for an hour still to come (written by a task whose clock runs
// ahead): dated in the future, its figures would outweigh every real one
// until that time came, decay weighing the others down against it.
func middle(start, now time.Time) time.Time {
	if start.After(now) {
		return now
	}
	covered := min(now.Sub(start), time.Hour)
	return start.Add(covered / 2)
}

// Fleet is the mean CPU benchmark of the tasks that started.
type Fleet struct {
	Tasks         int     `dynamodbav:"count"`
	CompressMBps  float64 `dynamodbav:"-"` // mean MB per CPU-second at the reference level
	DecodeSeconds float64 `dynamodbav:"-"` // mean CPU-seconds to decode a byte
	SumMBps       float64 `dynamodbav:"sumMBps"`
	SumDecodeNs   float64 `dynamodbav:"sumDecodeNsPerMB"`
}

func (f *Fleet) add(o Fleet) {
	f.Tasks += o.Tasks
	f.SumMBps += o.SumMBps
	f.SumDecodeNs += o.SumDecodeNs
}

func (f *Fleet) means() {
	if f.Tasks > 0 {
		f.CompressMBps = f.SumMBps / float64(f.Tasks)
		f.DecodeSeconds = f.SumDecodeNs / float64(f.Tasks) / 1e9 / 1e6
	}
}

// FleetWindow is how far back the fleet's mean CPU benchmark looks: the
// tasks running now, not every task that ever started (Graviton
// generations come and go). In whole UTC days: today's item and the
// seven before it.
const FleetWindow = 7 * 24 * time.Hour

const dayFormat = "2006-01-02"

// fleetKept is how long a day item of the fleet's benchmarks is kept:
// past FleetWindow, it is what a fleet that started no task since falls
// back on. Long enough for a stable service; short enough that an
// abandoned deployment's items go.
const fleetKept = 90 * 24 * time.Hour

// benchSK is the day's item of an encoder's benchmarks: tasks compare
// with tasks of their own encoder, as the pure-Go one spends more CPU on
// the same bytes, which a mean over both would hide.
func benchSK(encoder string, day time.Time) string {
	return benchPrefix(encoder) + day.UTC().Format(dayFormat)
}

// benchPrefix is what the sort keys of an encoder's day items start with.
func benchPrefix(encoder string) string {
	family, _, _ := strings.Cut(encoder, " ")
	return "cpu#" + family + "#"
}

// AddBenchmark adds one task's CPU benchmark to the fleet's and returns the
// means of the tasks of its encoder over FleetWindow, this task included.
func (st *Store) AddBenchmark(ctx context.Context, r adaptive.BenchResult) (Fleet, error) {
	now := st.now()
	_, err := st.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:        &st.table,
		Key:              map[string]types.AttributeValue{"pk": s(config.KeyFleet), "sk": s(benchSK(r.Encoder, now))},
		UpdateExpression: aws.String("ADD #count :one, #sum :mbps, #dec :dec SET #exp = if_not_exists(#exp, :exp)"),
		ExpressionAttributeNames: map[string]string{"#count": "count", "#sum": "sumMBps", "#dec": "sumDecodeNsPerMB",
			"#exp": "expiresAt"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": n(1),
			":mbps": &types.AttributeValueMemberN{Value: strconv.FormatFloat(r.CompressMBps, 'f', 3, 64)},
			":dec":  &types.AttributeValueMemberN{Value: strconv.FormatFloat(r.DecodeSeconds*1e9*1e6, 'f', 3, 64)},
			":exp":  n(now.Add(fleetKept).Unix())},
	}, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 }) // as Add: an ADD sent twice counts twice
	if err != nil {
		return Fleet{}, fmt.Errorf("adding the CPU benchmark: %w", err)
	}
	f, err := st.fleet(ctx, benchPrefix(r.Encoder))
	if err == nil && f.Tasks == 0 {
		err = errors.New("not found after adding it")
	}
	if err != nil {
		return Fleet{}, fmt.Errorf("reading the fleet's CPU benchmark: %w", err)
	}
	return f, nil
}

// Fleet returns the mean CPU benchmark of the fleet's tasks, of every
// encoder, over FleetWindow (zero Tasks: none).
func (st *Store) Fleet(ctx context.Context) (Fleet, error) {
	f, err := st.fleet(ctx, "cpu#")
	if err != nil {
		return Fleet{}, fmt.Errorf("reading the fleet's CPU benchmark: %w", err)
	}
	return f, nil
}

// fleet sums the day items under prefix of the last FleetWindow; if there
// are none (a fleet that started no task all week), those of the last day
// any task started.
func (st *Store) fleet(ctx context.Context, prefix string) (Fleet, error) {
	from := st.now().Add(-FleetWindow).UTC().Format(dayFormat)
	p := dynamodb.NewQueryPaginator(st.api, &dynamodb.QueryInput{
		TableName:                 &st.table,
		KeyConditionExpression:    aws.String("pk = :pk AND begins_with(sk, :prefix)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s(config.KeyFleet), ":prefix": s(prefix)},
		ConsistentRead:            aws.Bool(true),
	})
	var f, last Fleet
	lastDay := ""
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return Fleet{}, err
		}
		for _, item := range page.Items {
			var day struct {
				SK string `dynamodbav:"sk"`
				Fleet
			}
			if err := attributevalue.UnmarshalMap(item, &day); err != nil {
				return Fleet{}, fmt.Errorf("decoding %v: %w", item["sk"], err)
			}
			i := strings.LastIndexByte(day.SK, '#')
			if i < 0 {
				continue
			}
			switch d := day.SK[i+1:]; {
			case d > lastDay:
				lastDay, last = d, day.Fleet
			case d == lastDay: // another encoder's
				last.add(day.Fleet)
			}
			if day.SK[i+1:] >= from {
				f.add(day.Fleet)
			}
		}
	}
	if f.Tasks == 0 {
		f = last
	}
	f.means()
	return f, nil
}

// Choice is the arm tasks last chose for a class of a rule.
type Choice struct {
	Arm     string    `dynamodbav:"arm"`
	Since   time.Time `dynamodbav:"since"`   // when this arm became the choice
	Changes int       `dynamodbav:"changes"` // how often the choice changed
	Benefit float64   `dynamodbav:"benefit"` // $ per GiB, as estimated
	At      time.Time `dynamodbav:"at"`      // last published
	Version int       `dynamodbav:"version"`
}

// maxConflicts bounds the retries of a read-modify-write that keeps losing.
const maxConflicts = 10

// PublishChoice records that arm is the choice for class of rule: a
// read-modify-write (since and changes depend on what was there) made safe
// by a condition on the version read; a concurrent publisher's write makes
// it read again and retry.
func (st *Store) PublishChoice(ctx context.Context, rule string, class adaptive.Class, arm adaptive.Arm, benefit float64) error {
	key := map[string]types.AttributeValue{"pk": s(config.KeyChoice + rule), "sk": s(string(class))}
	for attempt := range maxConflicts {
		if attempt > 0 {
			// Someone published in between: back off a little, with
			// jitter, so concurrent publishers stop colliding.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt)*10*time.Millisecond + time.Duration(rand.IntN(10))*time.Millisecond):
			}
		}
		got, err := st.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: &st.table, Key: key, ConsistentRead: aws.Bool(true)})
		if err != nil {
			return fmt.Errorf("reading the choice of %s/%s: %w", rule, class, err)
		}
		var cur Choice
		exists := len(got.Item) > 0
		if exists {
			if err := attributevalue.UnmarshalMap(got.Item, &cur); err != nil {
				return fmt.Errorf("decoding the choice of %s/%s: %w", rule, class, err)
			}
		}
		now := st.now().UTC()
		next := Choice{Arm: arm.String(), Since: cur.Since, Changes: cur.Changes, Benefit: benefit, At: now, Version: cur.Version + 1}
		if !exists || cur.Arm != next.Arm {
			next.Since = now
			if exists {
				next.Changes++
			}
		}
		item, err := attributevalue.MarshalMap(next)
		if err != nil {
			return err
		}
		item["pk"], item["sk"] = key["pk"], key["sk"]
		in := &dynamodb.PutItemInput{TableName: &st.table, Item: item}
		if exists {
			in.ConditionExpression = aws.String("#v = :v")
			in.ExpressionAttributeNames = map[string]string{"#v": "version"}
			in.ExpressionAttributeValues = map[string]types.AttributeValue{":v": n(int64(cur.Version))}
		} else {
			in.ConditionExpression = aws.String("attribute_not_exists(pk)")
		}
		_, err = st.api.PutItem(ctx, in)
		var ccf *types.ConditionalCheckFailedException
		if errors.As(err, &ccf) {
			continue // someone published in between: read again
		}
		if err != nil {
			return fmt.Errorf("publishing the choice of %s/%s: %w", rule, class, err)
		}
		return nil
	}
	return fmt.Errorf("publishing the choice of %s/%s: %d conflicting writes in a row", rule, class, maxConflicts)
}

// Choices returns the published choice of every class of rule.
func (st *Store) Choices(ctx context.Context, rule string) (map[adaptive.Class]Choice, error) {
	p := dynamodb.NewQueryPaginator(st.api, &dynamodb.QueryInput{
		TableName:                 &st.table,
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s(config.KeyChoice + rule)},
	})
	m := map[adaptive.Class]Choice{}
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the choices of rule %s: %w", rule, err)
		}
		for _, av := range page.Items {
			var c Choice
			if err := attributevalue.UnmarshalMap(av, &c); err != nil {
				return nil, fmt.Errorf("decoding the choices of rule %s: %w", rule, err)
			}
			sk, _ := av["sk"].(*types.AttributeValueMemberS)
			if sk != nil {
				m[adaptive.Class(strings.TrimSpace(sk.Value))] = c
			}
		}
	}
	return m, nil
}

// Renew records that task is alive until now + ttl (pk "task#<id>", sk
// "lease", expiresAt): a task's staging uploads are its own while it
// lives, and anyone may abort them once its lease has run out.
func (st *Store) Renew(ctx context.Context, task string, ttl time.Duration) error {
	_, err := st.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: &st.table, Item: map[string]types.AttributeValue{
		"pk": s(config.KeyTask + task), "sk": s("lease"), "expiresAt": n(st.now().Add(ttl).Unix()),
	}})
	if err != nil {
		return fmt.Errorf("renewing the lease of task %s: %w", task, err)
	}
	return nil
}

// Alive reports whether task holds an unexpired lease.
func (st *Store) Alive(ctx context.Context, task string) (bool, error) {
	out, err := st.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: &st.table, ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"pk": s(config.KeyTask + task), "sk": s("lease")}})
	if err != nil {
		return false, fmt.Errorf("reading the lease of task %s: %w", task, err)
	}
	exp, ok := out.Item["expiresAt"].(*types.AttributeValueMemberN)
	if !ok {
		return false, nil
	}
	t, err := strconv.ParseInt(exp.Value, 10, 64)
	return err == nil && st.now().Unix() < t, nil
}
