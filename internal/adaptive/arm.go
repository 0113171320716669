package adaptive

import (
	"slices"
	"strconv"

	"github.com/klauspost/compress/zstd"

	"github.com/xrc-dev/xrc/internal/archive"
	"github.com/xrc-dev/xrc/internal/manifest"
)

// Arm is one way of encoding an object: a zstd level, or Store. Its value
// is what archive.Writer.SetLevel takes.
type Arm int

// Store keeps an object's bytes as they are (archive.Store).
const Store Arm = archive.Store

func (a Arm) String() string {
	if a == Store {
		return "store"
	}
	return strconv.Itoa(int(a))
}

// ParseArm reads what String writes.
func ParseArm(s string) (Arm, bool) {
	if s == "store" {
		return Store, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || manifest.CheckLevel(n) != nil {
		return 0, false
	}
	return Arm(n), true
}

// pureGoLevels are zstd levels standing for the four settings of the
// pure-Go encoder (zstd.EncoderLevelFromZstd): more levels would be the
// same arm under other names.
var pureGoLevels = []Arm{1, 3, 7, 11}

// Arms lists the arms an encoder offers within [min, max], fastest first:
// Store, then every libzstd level (0 is none), or the pure-Go encoder's
// settings that the levels in range map to (a range of -7 to -1 is its
// fastest setting, level 1, not nothing: that would store everything).
func Arms(libzstd bool, min, max int) []Arm {
	arms := []Arm{Store}
	for l := min; l <= max; l++ {
		if l == 0 || manifest.CheckLevel(l) != nil {
			continue
		}
		if libzstd {
			arms = append(arms, Arm(l))
			continue
		}
		setting := zstd.EncoderLevelFromZstd(l)
		for _, p := range pureGoLevels {
			if zstd.EncoderLevelFromZstd(int(p)) == setting && !slices.Contains(arms, p) {
				arms = append(arms, p)
			}
		}
	}
	return arms
}
