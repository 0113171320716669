package manifest

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// StagingSuffix ends every staging key.
const StagingSuffix = ".tar.zst"

// StagingPrefix is the prefix of every staging key of a rule, "<rule>/".
// S3 Replication rules route archives to target regions on it, IAM grants
// the workers their rule's archives under it, and a target accepts a rule's
// archive only from under it.
func StagingPrefix(ruleID string) string { return ruleID + "/" }

// StagingKey is where the archive m describes is stored in a staging
// bucket: <rule>/<yyyy>/<mm>/<dd>/<archive-id>.tar.zst. The date (of
// m.CreatedAt, UTC) keeps listings navigable.
func StagingKey(m *Manifest) string {
	return StagingPrefix(m.RuleID) + path.Join(m.CreatedAt.UTC().Format("2006/01/02"), m.ArchiveID+StagingSuffix)
}

// ParseStagingKey returns the rule and archive id a staging key names, so
// a worker that finds the archive gone can still say which one it was.
func ParseStagingKey(key string) (ruleID, archiveID string, err error) {
	rule, rest, ok := strings.Cut(key, "/")
	name, isArchive := strings.CutSuffix(path.Base(rest), StagingSuffix)
	if !ok || rule == "" || !isArchive || checkArchiveID(name) != nil {
		return "", "", fmt.Errorf("staging key %s is not <rule>/<yyyy>/<mm>/<dd>/<archive-id>%s", quote(key), StagingSuffix)
	}
	return rule, name, nil
}

// Compression levels an archive may declare: zstd's, where negative levels
// are the fast ones ("zstd --fast=N") and 0 is not a level. Config, writer
// and encoders all check levels with CheckLevel.
const (
	MinLevel = -7
	MaxLevel = 22
)

// CheckLevel returns an error unless level is a zstd level xrc uses.
func CheckLevel(level int) error {
	if level == 0 {
		return errors.New("zstd level 0 is not a level here (zstd's default is 3)")
	}
	if level < MinLevel || level > MaxLevel {
		return fmt.Errorf("zstd level %d is not between %d and %d", level, MinLevel, MaxLevel)
	}
	return nil
}
