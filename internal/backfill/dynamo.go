package backfill

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/xrc-dev/xrc/internal/awsapi"
	"github.com/xrc-dev/xrc/internal/config"
)

// DynamoAPI is the part of the DynamoDB client a DynamoCheckpoint uses;
// *dynamodb.Client satisfies it.
type DynamoAPI interface {
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Checkpoint items in the deployment's table (config.TableName): one
// partition per rule, pk "backfill#<rule>", holding the run (sk "run":
// parameters, start, and the lease of the process working on it) and one
// item per task (sk "task#<prefix or file>": after, done). Every item
// expires (expiresAt) CheckpointTTL after its last write, so an abandoned
// checkpoint does not stay for ever; but sk "last", when the last run that
// completed started, which stays.
const (
	CheckpointTTL = 30 * 24 * time.Hour
	// LeaseTTL is how long a run's lease outlives its last renewal: a
	// second run of the rule (an hourly schedule overlapping a long run)
	// refuses to start while it holds. Renewals are stamped with the
	// holder's clock and read with the next run's, hence the skew: a host
	// minutes ahead would otherwise take a live run's checkpoint over.
	LeaseTTL = 2*time.Minute + awsapi.ClockSkew
	// staleMargin: a run started longer than CheckpointTTL less this
	// ago is not resumed.
	staleMargin = 24 * time.Hour
	leaseRenew  = 30 * time.Second
	skRun       = "run"
	skTask      = "task#"
	skLast      = "last"
)

// ErrBusy is returned by Load while another live run holds the rule's
// checkpoint.
var ErrBusy = errors.New("another backfill of the rule is running")

// ErrLeaseLost is returned once another run took the checkpoint over, or
// the lease could not be renewed for so long that one may.
var ErrLeaseLost = errors.New("the checkpoint's lease is lost: another backfill may take it over")

// DynamoCheckpoint keeps the state in DynamoDB, one item per task written
// as it is saved. A run holds a lease on the checkpoint while it works, so
// two runs of one rule never work at once.
type DynamoCheckpoint struct {
	api   DynamoAPI
	table string
	pk    string
	owner string
	// run names the run whose checkpoint this is (its first process's
	// owner, recorded by Start): task items are stamped with it, and Load
	// takes only its own, so a run paused past its lease (a laptop
	// asleep) that saves after another took over marks nothing done in
	// that run's checkpoint. "" for a run an older xrc started.
	run string
	now func() time.Time

	last time.Time // start of the last run that completed over the whole rule, as Load found it
	// lastRuns is that run's Counts.LateMultipartRuns, as Load found it.
	lastRuns int64

	// RenewEvery is how often the lease is renewed (leaseRenew; tests).
	RenewEvery time.Duration

	mu        sync.Mutex
	stamped   time.Time // the last heartbeat written (stamp), on c.now's clock
	stopRenew context.CancelFunc
	renewErr  error
	renewDone chan struct{}
}

var _ Checkpoint = (*DynamoCheckpoint)(nil)

// NewDynamoCheckpoint returns the checkpoint of rule in table.
func NewDynamoCheckpoint(api DynamoAPI, table, rule string, now func() time.Time) *DynamoCheckpoint {
	var b [8]byte
	rand.Read(b[:])
	return &DynamoCheckpoint{api: api, table: table, pk: config.KeyBackfill + rule, owner: hex.EncodeToString(b[:]), now: now}
}

func sv(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }
func nv(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func (c *DynamoCheckpoint) key(sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": sv(c.pk), "sk": sv(sk)}
}

func (c *DynamoCheckpoint) expires() types.AttributeValue {
	return nv(c.now().Add(CheckpointTTL).Unix())
}

// Load implements Checkpoint. It takes the lease of the run it returns.
func (c *DynamoCheckpoint) Load(ctx context.Context) (*State, error) {
	var st *State
	heartbeat, owner := "0", "" // the run item's, when there is one
	var keys []map[string]types.AttributeValue
	tasks := map[string]Progress{}
	runs := map[string]string{} // task: the run that saved it
	run := ""
	err := c.query(ctx, func(item map[string]types.AttributeValue) error {
		sk := str(item["sk"])
		if sk == skLast {
			c.readLast(item)
			return nil
		}
		keys = append(keys, c.key(sk))
		if sk == skRun {
			heartbeat, owner = num(item["heartbeat"]), str(item["owner"])
			hb, _ := strconv.ParseInt(heartbeat, 10, 64)
			if owner != c.owner && c.now().Sub(time.UnixMilli(hb)) < LeaseTTL {
				// Also while a completed run still removes its items:
				// a run started then would have its own removed.
				return fmt.Errorf("%w (checkpoint %s in %s, last seen %s)", ErrBusy, c.pk, c.table, time.UnixMilli(hb).UTC().Format(time.RFC3339))
			}
			if done, ok := item["complete"].(*types.AttributeValueMemberBOOL); ok && done.Value {
				return nil // nothing to resume
			}
			st = &State{}
			if err := json.Unmarshal([]byte(str(item["params"])), &st.Params); err != nil {
				return fmt.Errorf("checkpoint %s: params: %w", c.pk, err)
			}
			st.Started, _ = time.Parse(time.RFC3339Nano, str(item["started"]))
			run = str(item["run"])
			return nil
		}
		if name, ok := strings.CutPrefix(sk, skTask); ok {
			if t, ok := item["task"]; ok {
				name = str(t)
			}
			done, _ := item["done"].(*types.AttributeValueMemberBOOL)
			tasks[name] = Progress{After: str(item["after"]), Done: done != nil && done.Value}
			runs[name] = str(item["run"])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if st != nil {
		// Another run's items (one that lost its lease and saved on) are
		// not this run's progress, but such a save may have replaced this
		// run's own item of the task, whose parent may be past it: each
		// is listed again from its start.
		for name := range tasks {
			if runs[name] != run {
				tasks[name] = Progress{}
			}
		}
		c.run = run
	}
	if st != nil && c.now().Sub(st.Started) > CheckpointTTL-staleMargin {
		// Task items expire CheckpointTTL after their last write, each on
		// its own: the first ones may be gone already, and resuming
		// without them would skip their prefixes. Started afresh instead.
		st = nil
	}
	if st == nil {
		if len(tasks) == 0 {
			return nil, nil
		}
		// No run, or a complete one, and task items a cut-short Clear
		// left: they would be taken for the next run's. They are removed
		// under the lease, or a run started meanwhile could lose its own
		// items of the same prefixes.
		if err := c.take(ctx, owner, heartbeat, true); err != nil {
			return nil, err
		}
		if err := c.removeLeased(ctx, keys); errors.Is(err, ErrLeaseLost) {
			return nil, fmt.Errorf("%w: it took the checkpoint over while this one removed a finished run's items (%v)", ErrBusy, err)
		} else if err != nil {
			return nil, err
		}
		return nil, nil
	}
	st.Tasks = tasks
	if err := c.take(ctx, owner, heartbeat, false); err != nil {
		return nil, err
	}
	c.renew()
	return st, nil
}

// take takes the lease over from the run that left it (its owner and
// heartbeat as Load read them), unless another run did so since: ErrBusy.
// The owner too, as a run that started and gave its lease up since leaves
// the same heartbeat, 0. complete takes the item of a finished run, and
// makes one where there was none. Its own write passes too: an SDK retry
// of a take-over applied whose answer was lost finds it.
func (c *DynamoCheckpoint) take(ctx context.Context, owner, heartbeat string, complete bool) error {
	set, cond := "SET #o = :me, heartbeat = :now, expiresAt = :exp", "(#o = :owner AND heartbeat = :seen) OR (#o = :me AND heartbeat = :now)"
	values := map[string]types.AttributeValue{":me": sv(c.owner), ":now": c.stamp(), ":exp": c.expires(),
		":owner": sv(owner), ":seen": &types.AttributeValueMemberN{Value: heartbeat}}
	if complete {
		set += ", complete = :t"
		cond += " OR attribute_not_exists(pk)"
		values[":t"] = &types.AttributeValueMemberBOOL{Value: true}
	}
	_, err := c.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &c.table,
		Key:                       c.key(skRun),
		UpdateExpression:          &set,
		ConditionExpression:       &cond,
		ExpressionAttributeNames:  map[string]string{"#o": "owner"},
		ExpressionAttributeValues: values,
	})
	if awsapi.IsPreconditionFailed(err) {
		return fmt.Errorf("%w (checkpoint %s in %s)", ErrBusy, c.pk, c.table)
	}
	if err != nil {
		return fmt.Errorf("taking checkpoint %s in %s: %w", c.pk, c.table, err)
	}
	return nil
}

func (c *DynamoCheckpoint) query(ctx context.Context, each func(map[string]types.AttributeValue) error) error {
	p := dynamodb.NewQueryPaginator(c.api, &dynamodb.QueryInput{
		TableName:                 &c.table,
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(c.pk)},
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("reading checkpoint %s in %s: %w", c.pk, c.table, err)
		}
		for _, item := range page.Items {
			if err := each(item); err != nil {
				return err
			}
		}
	}
	return nil
}

func str(v types.AttributeValue) string {
	if s, ok := v.(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func num(v types.AttributeValue) string {
	if n, ok := v.(*types.AttributeValueMemberN); ok {
		return n.Value
	}
	return "0"
}

// Start implements Checkpoint: it records the run and takes its lease,
// unless another live run holds one.
func (c *DynamoCheckpoint) Start(ctx context.Context, st *State) error {
	params, err := json.Marshal(st.Params)
	if err != nil {
		return err
	}
	item := c.key(skRun)
	item["params"] = sv(string(params))
	item["started"] = sv(st.Started.UTC().Format(time.RFC3339Nano))
	item["run"] = sv(c.owner)
	item["owner"] = sv(c.owner)
	item["heartbeat"] = c.stamp()
	item["expiresAt"] = c.expires()
	_, err = c.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: &c.table,
		Item:      item,
		// Its own lease too: a giveUp that failed leaves it fresh.
		ConditionExpression:       aws.String("attribute_not_exists(pk) OR heartbeat < :stale OR #o = :me"),
		ExpressionAttributeNames:  map[string]string{"#o": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":stale": nv(c.now().Add(-LeaseTTL).UnixMilli()), ":me": sv(c.owner)},
	})
	if awsapi.IsPreconditionFailed(err) {
		return fmt.Errorf("%w (checkpoint %s in %s)", ErrBusy, c.pk, c.table)
	}
	if err != nil {
		return fmt.Errorf("starting checkpoint %s in %s: %w", c.pk, c.table, err)
	}
	c.run = c.owner
	c.renew()
	return nil
}

// renew keeps the lease until Flush or Clear.
func (c *DynamoCheckpoint) renew() {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.stopRenew, c.renewDone = cancel, make(chan struct{})
	done := c.renewDone
	c.mu.Unlock()
	every := cmp.Or(c.RenewEvery, leaseRenew)
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		// Stopped before another run may take the lease over: LeaseTTL
		// after the last renewal's stamp on a clock ClockSkew ahead, less
		// a renewal's period to spare.
		limit := LeaseTTL - awsapi.ClockSkew - leaseRenew
		c.mu.Lock()
		renewed := c.stamped // the heartbeat the lease was taken with
		c.mu.Unlock()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			stamp := c.now()
			// No call outlasts the limit (a stalled connection, the SDK's
			// retries): the check below must come in time.
			hctx, cancel := context.WithTimeout(ctx, max(renewed.Add(limit).Sub(stamp), time.Second))
			err := c.heartbeat(hctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				renewed = stamp
				continue
			}
			if !errors.Is(err, ErrLeaseLost) && c.now().Sub(renewed) < limit {
				// Try again at the next tick: the lease lasts several.
				continue
			}
			if !errors.Is(err, ErrLeaseLost) {
				// The lease may lapse before the next tick: another run
				// could take the checkpoint over and work beside this
				// one. Stopped here, saying why.
				err = fmt.Errorf("%w: the lease of checkpoint %s in %s was not renewed for %v: %w",
					ErrLeaseLost, c.pk, c.table, c.now().Sub(renewed).Round(time.Second), err)
			}
			c.mu.Lock()
			c.renewErr = err
			c.mu.Unlock()
			return
		}
	}()
}

func (c *DynamoCheckpoint) heartbeat(ctx context.Context) error {
	return c.updateRun(ctx, "heartbeat = :now, expiresAt = :exp", map[string]types.AttributeValue{":now": c.stamp(), ":exp": c.expires()})
}

// stamp is a heartbeat's value, now, remembered: the lease's renewals
// count from the last one written (renew).
func (c *DynamoCheckpoint) stamp() types.AttributeValue {
	now := c.now()
	c.mu.Lock()
	c.stamped = now
	c.mu.Unlock()
	return nv(now.UnixMilli())
}

// updateRun sets attributes of the run's item while this process holds its
// lease: ErrLeaseLost once another run took it over.
func (c *DynamoCheckpoint) updateRun(ctx context.Context, set string, values map[string]types.AttributeValue) error {
	values[":me"] = sv(c.owner)
	_, err := c.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &c.table,
		Key:                       c.key(skRun),
		UpdateExpression:          aws.String("SET " + set),
		ConditionExpression:       aws.String("#o = :me"),
		ExpressionAttributeNames:  map[string]string{"#o": "owner"},
		ExpressionAttributeValues: values,
	})
	if awsapi.IsPreconditionFailed(err) {
		return fmt.Errorf("%w (checkpoint %s in %s)", ErrLeaseLost, c.pk, c.table)
	}
	return err
}

func (c *DynamoCheckpoint) stop() {
	c.mu.Lock()
	cancel, done := c.stopRenew, c.renewDone
	c.stopRenew = nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Save implements Checkpoint: the task's item is written at once.
func (c *DynamoCheckpoint) Save(ctx context.Context, task string, p Progress) error {
	c.mu.Lock()
	lost := c.renewErr
	c.mu.Unlock()
	if lost != nil {
		return lost
	}
	item := c.key(taskSK(task))
	item["task"] = sv(task)
	item["after"] = sv(p.After)
	item["done"] = &types.AttributeValueMemberBOOL{Value: p.Done}
	item["run"] = sv(c.run)
	item["expiresAt"] = c.expires()
	if _, err := c.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: &c.table, Item: item}); err != nil {
		return fmt.Errorf("writing checkpoint %s in %s: %w", c.pk, c.table, err)
	}
	return nil
}

// taskSK is the sort key of a task's item: the task (a prefix, an
// inventory file's key) when it fits DynamoDB's 1,024 bytes, else its
// SHA-256; the item's "task" holds it whole.
func taskSK(task string) string {
	if len(skTask)+len(task) <= awsapi.MaxSortKey {
		return skTask + task
	}
	sum := sha256.Sum256([]byte(task))
	return skTask + "sha256:" + hex.EncodeToString(sum[:])
}

// readLast takes what Completed recorded (item sk "last").
func (c *DynamoCheckpoint) readLast(item map[string]types.AttributeValue) {
	c.last, _ = time.Parse(time.RFC3339Nano, str(item["started"]))
	c.lastRuns, _ = strconv.ParseInt(num(item["lateMultipartRuns"]), 10, 64)
}

// LoadCompleted reads what Completed recorded, and nothing else: no lease
// is taken and nothing written, for a dry run, which keeps no checkpoint
// and may go beside a live run.
func (c *DynamoCheckpoint) LoadCompleted(ctx context.Context) error {
	out, err := c.api.Query(ctx, &dynamodb.QueryInput{
		TableName:                 &c.table,
		KeyConditionExpression:    aws.String("pk = :pk AND sk = :sk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(c.pk), ":sk": sv(skLast)},
		ConsistentRead:            aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("reading the last complete run of checkpoint %s in %s: %w", c.pk, c.table, err)
	}
	for _, item := range out.Items {
		c.readLast(item)
	}
	return nil
}

// LastCompleted returns when the last run that completed started (zero if
// none did), as Load or LoadCompleted found it.
func (c *DynamoCheckpoint) LastCompleted() time.Time { return c.last }

// LastLateMultipartRuns returns the Counts.LateMultipartRuns of the last
// run that completed, as Load found it.
func (c *DynamoCheckpoint) LastLateMultipartRuns() int64 { return c.lastRuns }

// Flush implements Checkpoint: every Save is already durable; the lease is
// given up, so the next run need not wait for it to lapse.
func (c *DynamoCheckpoint) Flush(ctx context.Context) error {
	c.stop()
	err := c.giveUp(ctx)
	if err != nil && !errors.Is(err, ErrLeaseLost) {
		return fmt.Errorf("releasing checkpoint %s in %s: %w", c.pk, c.table, err)
	}
	return nil
}

// Clear implements Checkpoint. The run's item is first marked complete, in
// one write: removing thousands of task items takes many, and a Clear cut
// short must leave a finished run, never one to resume with some of its
// prefixes marked done (the next run would skip them). The lease holds
// until the removal of the tasks' items ends or fails; the next Load
// finishes a failed one, and the next Start replaces the run's item.
func (c *DynamoCheckpoint) Clear(ctx context.Context) error {
	c.stop()
	// A fresh heartbeat with it: the lease must outlast the removal.
	err := c.updateRun(ctx, "complete = :t, heartbeat = :now, expiresAt = :exp", map[string]types.AttributeValue{
		":t": &types.AttributeValueMemberBOOL{Value: true}, ":now": c.stamp(), ":exp": c.expires()})
	if err != nil && !errors.Is(err, ErrLeaseLost) {
		// The run ends here, its checkpoint kept: the next run need not
		// wait for the lease to lapse.
		_ = c.giveUp(ctx)
		return fmt.Errorf("completing checkpoint %s in %s: %w", c.pk, c.table, err)
	}
	if err != nil {
		return err
	}
	var keys []map[string]types.AttributeValue
	err = c.query(ctx, func(item map[string]types.AttributeValue) error {
		keys = append(keys, c.key(str(item["sk"])))
		return nil
	})
	if err != nil {
		_ = c.giveUp(ctx)
		return err
	}
	return c.removeLeased(ctx, keys)
}

// giveUp gives the lease up, even when ctx is what ran out.
func (c *DynamoCheckpoint) giveUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return c.updateRun(ctx, "heartbeat = :zero", map[string]types.AttributeValue{":zero": nv(0)})
}

// Completed records that the run started at started covered the whole rule
// and completed, and how many runs in a row, it included, found multipart
// uploads' writes late: LastCompleted and LastLateMultipartRuns read them
// back, for the next run's since and count.
func (c *DynamoCheckpoint) Completed(ctx context.Context, started time.Time, lateMultipartRuns int64) error {
	last := c.key(skLast)
	last["started"] = sv(started.UTC().Format(time.RFC3339Nano))
	last["lateMultipartRuns"] = nv(lateMultipartRuns)
	if _, err := c.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: &c.table, Item: last}); err != nil {
		return fmt.Errorf("recording the completed run of checkpoint %s in %s: %w", c.pk, c.table, err)
	}
	return nil
}

// maxTransact is the most items one TransactWriteItems takes.
const maxTransact = 100

// remove deletes the task items among keys, each transaction checking
// that this process still holds the lease: once another run took it over,
// nothing more is deleted, as that run's items may be of the same
// prefixes. The run's item stays, marked complete, until the next run's
// Start replaces it: deleted, a removal racing that Start could take the
// new run's item with it.
func (c *DynamoCheckpoint) remove(ctx context.Context, keys []map[string]types.AttributeValue) error {
	keys = slices.DeleteFunc(slices.Clone(keys), func(k map[string]types.AttributeValue) bool { return !strings.HasPrefix(str(k["sk"]), skTask) })
	for chunk := range slices.Chunk(keys, maxTransact-1) {
		items := make([]types.TransactWriteItem, 0, len(chunk)+1)
		items = append(items, types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{TableName: &c.table, Key: c.key(skRun),
			ConditionExpression: aws.String("#o = :me"), ExpressionAttributeNames: map[string]string{"#o": "owner"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":me": sv(c.owner)}}})
		for _, k := range chunk {
			items = append(items, types.TransactWriteItem{Delete: &types.Delete{TableName: &c.table, Key: k}})
		}
		for attempt := 0; ; attempt++ {
			_, err := c.api.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
			if err == nil {
				break
			}
			var canceled *types.TransactionCanceledException
			if errors.As(err, &canceled) {
				if r := canceled.CancellationReasons; len(r) > 0 && aws.ToString(r[0].Code) == "ConditionalCheckFailed" {
					return fmt.Errorf("%w (checkpoint %s in %s)", ErrLeaseLost, c.pk, c.table)
				}
				// A conflict, as with the lease's own renewal: again.
				if attempt < 8 {
					if err := sleep(ctx, backoff(attempt)); err != nil {
						return err
					}
					continue
				}
			}
			return fmt.Errorf("removing checkpoint %s in %s: %w", c.pk, c.table, err)
		}
	}
	return nil
}

// removeLeased removes the task items among keys, renewing the lease
// meanwhile (thousands of items can take longer than LeaseTTL), and gives
// the lease up after, even when ctx ran out: the next run finishes a
// removal cut short.
func (c *DynamoCheckpoint) removeLeased(ctx context.Context, keys []map[string]types.AttributeValue) error {
	c.renew()
	err := c.remove(ctx, keys)
	c.stop()
	if gerr := c.giveUp(ctx); err == nil && errors.Is(gerr, ErrLeaseLost) {
		err = gerr
	}
	return err
}

// backoff is the wait before retry attempt+1: 100 ms doubling to 5 s.
func backoff(attempt int) time.Duration {
	return min(100*time.Millisecond<<min(attempt, 6), 5*time.Second)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
